"""Pair leases in the state store: one holder per pair across stores and processes, on
SQLite (flock, or the store object when in memory) and PostgreSQL (a lease row that
expires by the database clock, renewed by a heartbeat, fencing every write)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from sqlalchemy import text
from state_support import *  # noqa: F403  (pytest fixtures)

from state import LeaseLost, LinkConflict, PairBusy, StateStore
from state.locks import process_label
from syncer.models import Cursor
from syncer.plan import Side

Open = Callable[[], StateStore]
WATERMARK = datetime(2026, 3, 1, tzinfo=UTC)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30  # a bound against hanging, not a measurement
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_one_holder_per_pair_across_stores(open_store: Open) -> None:
    """A second store on the same database (another engine, here in the same process)
    cannot take a held pair and is told who holds it; other pairs stay free; after the
    release the pair is free again."""
    first, second = open_store(), open_store()
    lease = first.lease_pair("bugs")
    for other in (second, first):  # a second lease from the same store is refused too
        with pytest.raises(PairBusy) as busy:
            other.lease_pair("bugs")
        assert busy.value.holder is not None and busy.value.holder.label == process_label()
        assert str(busy.value).startswith("pair 'bugs' is busy: worked by ")
    holder = second.pair_holder("bugs")
    assert holder is not None and holder.label == process_label()
    with second.lease_pair("features") as other_pair:
        other_pair.check()
    lease.release()
    assert second.pair_holder("bugs") is None
    with second.lease_pair("bugs") as again:
        again.check()
    with pytest.raises(LeaseLost, match="released"):
        lease.check()


def test_in_memory_store_locks_its_own_pairs() -> None:
    """An in-memory database exists only in its store object: the store itself refuses a
    second lease on a held pair, and another in-memory store is another database."""
    store, elsewhere = StateStore.in_memory(), StateStore.in_memory()
    with store.lease_pair("bugs"):
        with pytest.raises(PairBusy):
            store.lease_pair("bugs")
        assert elsewhere.pair_holder("bugs") is None
        with elsewhere.lease_pair("bugs"):
            pass
    assert store.pair_holder("bugs") is None


def test_a_waiter_gets_the_pair_when_its_holder_releases(open_store: Open) -> None:
    """A lease asked for with a wait announces that it waits, and gets the pair as soon as
    the holder lets it go."""
    first, second = open_store(), open_store()
    lease = first.lease_pair("bugs")
    got = []
    with structlog.testing.capture_logs() as logs:
        waiter = threading.Thread(
            target=lambda: got.append(second.lease_pair("bugs", wait_seconds=60)))
        waiter.start()
        wait_until(lambda: any(e["event"] == "pair_waiting" for e in logs), "waiting")
        lease.release()
        waiter.join(60)
    assert len(got) == 1 and got[0].holder.label == process_label()
    got[0].release()


def test_a_run_records_its_holder(store: StateStore) -> None:
    """start_run writes host:pid of the process into the run."""
    run_id = store.start_run("bugs", "poll")
    run = store.last_run("bugs")
    assert run is not None and run.id == run_id and run.holder == process_label()


def test_link_conflicts_are_typed(store: StateStore) -> None:
    """A conversation or issue that is already linked is refused with LinkConflict (still
    a ValueError for callers that catch that)."""
    store.create_link("bugs", "c1", "10", Side.HELPDESK)
    with pytest.raises(LinkConflict, match="already linked"):
        store.create_link("bugs", "c1", None, Side.HELPDESK, pending_ok=True)
    with pytest.raises(LinkConflict, match="issue 10 is already linked"):
        store.create_link("bugs", "c2", "10", Side.HELPDESK)
    store.create_link("bugs", "c3", None, Side.HELPDESK)
    store.set_link_issue("bugs", "c3", "30")
    with pytest.raises(LinkConflict, match="not re-pointing"):
        store.set_link_issue("bugs", "c3", "31")
    assert issubclass(LinkConflict, ValueError)


# --- PostgreSQL leases -------------------------------------------------------------------------

def _sql(store: StateStore, statement: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement))


@pytest.mark.postgres
def test_lease_expiry_is_counted_by_the_database_clock(postgres_url: str) -> None:
    """A host whose clock is a day behind still holds the pair for the others: expiry
    comes from the database's now(), not from the holder's clock."""
    behind = StateStore(postgres_url, clock=lambda: datetime.now(UTC) - timedelta(days=1))
    other = StateStore(postgres_url)
    try:
        with behind.lease_pair("bugs"), pytest.raises(PairBusy):
            other.lease_pair("bugs")
    finally:
        behind.close()
        other.close()


@pytest.mark.postgres
def test_a_dead_holders_lease_blocks_until_it_expires(postgres_url: str) -> None:
    """The lease a dead process left (it stopped renewing) names that process and keeps
    the pair until its expiry; a waiter then takes it."""
    store = StateStore(postgres_url)
    try:
        _sql(store, "INSERT INTO leases (pair, holder, acquired_at, expires_at) VALUES "
                    "('bugs', 'gone-host:4242/0dead', now(), now() + interval '1 second')")
        with pytest.raises(PairBusy) as busy:
            store.lease_pair("bugs")
        assert str(busy.value.holder).startswith("gone-host pid 4242 since ")
        held = store.pair_holder("bugs")
        assert held is not None and held.label == "gone-host:4242"
        with store.lease_pair("bugs", wait_seconds=60) as lease:
            assert lease.holder.label == process_label()
            assert store.pair_holder("bugs") == lease.holder
    finally:
        store.close()


STEAL = {
    "taken": "UPDATE leases SET holder = 'thief:1/0', acquired_at = now(), "
             "expires_at = now() + interval '1 hour'",
    "expired": "UPDATE leases SET expires_at = now() - interval '1 second'",
}


@pytest.mark.postgres
@pytest.mark.parametrize("loss", sorted(STEAL))
def test_a_lost_lease_fences_the_next_write(postgres_url: str, loss: str) -> None:
    """Once the lease was taken or expired, a write in the holder's fence is refused by
    the database check and nothing of it is saved; check() and renew() raise from then
    on; the run row can still be closed."""
    store = StateStore(postgres_url)
    try:
        lease = store.lease_pair("bugs")
        run_id = store.start_run("bugs", "poll")
        lease.check()  # nothing local knows yet: the database is the judge
        _sql(store, STEAL[loss])
        with store.fenced(lease):
            with pytest.raises(LeaseLost, match="expired or taken"):
                store.save_cursor("bugs", Side.HELPDESK, Cursor(watermark=WATERMARK))
            store.finish_run(run_id, {}, "stopped")
        assert store.get_cursor("bugs", Side.HELPDESK) is None
        with pytest.raises(LeaseLost):
            lease.check()
        with pytest.raises(LeaseLost):
            lease.renew()
        lease.release()
        run = store.last_run("bugs")
        assert run is not None and run.finished
        if loss == "taken":  # releasing a lost lease leaves the new holder's row alone
            held = store.pair_holder("bugs")
            assert held is not None and held.label == "thief:1"
    finally:
        store.close()


@pytest.mark.postgres
def test_renew_notices_a_taken_lease(postgres_url: str) -> None:
    """renew() (what the heartbeat calls) finds the lease taken and marks it lost, so the
    runner's between-object check() stops without asking the database."""
    store = StateStore(postgres_url)
    try:
        with store.lease_pair("bugs") as lease:
            _sql(store, STEAL["taken"])
            with pytest.raises(LeaseLost):
                lease.renew()
            assert lease.lost == "expired or taken by another process"
            with pytest.raises(LeaseLost):
                lease.check()
    finally:
        store.close()


@pytest.mark.postgres
def test_the_heartbeat_keeps_a_lease_past_its_length(postgres_url: str) -> None:
    """Held longer than its length, a lease stays valid (the heartbeat renews it) and
    another store still cannot take the pair."""
    store = StateStore(postgres_url, lease_seconds=1)
    other = StateStore(postgres_url, lease_seconds=1)
    try:
        with store.lease_pair("bugs") as lease:
            time.sleep(1.6)  # past its length: only renewals can keep it
            lease.check()
            with pytest.raises(PairBusy):
                other.lease_pair("bugs")
    finally:
        store.close()
        other.close()
