"""The engine under pair leases: a pass that lost its pair stops before its next write,
the daemon skips a busy pair, a plan takes nothing, status tells a live pass from a dead
one, and a link made elsewhere mid-pass is one object's failure, not a crash."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from click.testing import CliRunner
from e2e_support import STAFF, Mark, sandbox
from sqlalchemy import text
from state_support import *  # noqa: F403  (pytest fixtures)

from state import StateStore
from state.locks import process_label
from syncer.app import run_all_once
from syncer.cli import main
from syncer.config import parse_config
from syncer.daemon import run_daemon
from syncer.plan import Side
from syncer.sandbox import Sandbox, sandbox_config
from syncer.status import render_status


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30  # a bound against hanging, not a measurement
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def bugs(sb: Sandbox, count: int = 2) -> list[str]:
    slugs = []
    for n in range(count):
        slug = sb.reamaze.add_conversation(f"Crash {n}", f"It crashed ({n}).",
                                           f"c{n}@customer.example", tags=["bug"])
        sb.reamaze.add_staff_message(slug, f"Reproduced {n}.", email=STAFF, visibility=1)
        slugs.append(slug)
    return slugs


def pg_sandbox(tmp_path: Path, url: str, **state: Any) -> Sandbox:
    config = sandbox_config(url)
    config["state"].update(state)
    return sandbox(tmp_path, config=config)


def steal(url: str, statement: str) -> Callable[[httpx.Request], None]:
    """A fault action: another process's doing, on the lease row, mid-request."""
    def act(_request: httpx.Request) -> None:
        other = StateStore(url)
        try:
            with other.engine.begin() as conn:
                conn.execute(text(statement))
        finally:
            other.close()
    return act


TAKEN = ("UPDATE leases SET holder = 'thief:1/0', acquired_at = now(), "
         "expires_at = now() + interval '1 hour'")
EXPIRED = "UPDATE leases SET expires_at = now() - interval '1 second'"


@pytest.mark.postgres
@pytest.mark.parametrize("loss", [TAKEN, EXPIRED], ids=["taken", "expired"])
def test_a_pass_that_loses_its_lease_stops_before_its_next_write(
        tmp_path: Path, postgres_url: str, loss: str) -> None:
    """The lease is taken (or runs out) while the first issue create is on the wire: the
    create lands, nothing after it is written, the run is closed with the reason; once
    the pair is free again the next pass recovers that create instead of repeating it."""
    sb = pg_sandbox(tmp_path, postgres_url)
    slugs = bugs(sb)
    sb.redmine.faults.add(method="POST", path=r"^/issues\.json$",
                          action=steal(postgres_url, loss))
    engine = sb.engine()
    try:
        mark = Mark.now(sb)
        [result] = run_all_once(engine)
        assert result.error is not None and "lease lost" in result.error
        assert mark.writes() == ["redmine POST /issues.json"]
        run = engine.store.last_run("bugs")
        assert run is not None and run.finished and "lease lost" in (run.error or "")

        with engine.store.engine.begin() as conn:  # the thief is done with the pair
            conn.execute(text("DELETE FROM leases"))
        [again] = run_all_once(engine)
        assert again.ok, again.error
        assert again.counts["intents_recovered"] == 1
        assert sorted(i.subject for i in sb.redmine.state.issues.values()) == [
            "[Re:amaze] Crash 0", "[Re:amaze] Crash 1"]
        for slug in slugs:
            link = engine.store.get_link("bugs", slug)
            assert link is not None and link.issue_id is not None
    finally:
        engine.close()


@pytest.mark.postgres
def test_the_runner_checks_its_lease_between_objects(tmp_path: Path, postgres_url: str) -> None:
    """When the heartbeat has found the lease taken, the pass stops at the next object
    without reading or writing anything more."""
    sb = pg_sandbox(tmp_path, postgres_url, lease_seconds=1)
    bugs(sb)
    engine = sb.engine()
    runner = engine.runner(engine.config.pairs[0])
    assert not isinstance(runner, Exception)
    take = steal(postgres_url, TAKEN)

    def taken_and_noticed(request: httpx.Request) -> None:
        take(request)
        wait_until(lambda: runner.lease is not None and runner.lease.lost is not None,
                   "the heartbeat noticed")

    sb.reamaze.faults.add(method="GET", path=r"/conversations(\.json)?$",
                          action=taken_and_noticed)
    try:
        result = runner.run_once()
        assert result.error is not None and "lease lost" in result.error
        assert result.counts["conversations_seen"] == 0
        assert not [r for r in sb.reamaze.requests if "/messages" in r.path]
        assert not sb.redmine.requests or all(r.method == "GET" for r in sb.redmine.requests)
        assert not sb.redmine.state.issues
    finally:
        engine.close()


def test_the_daemon_skips_a_busy_pair(tmp_path: Path) -> None:
    """While another process works the pair, the daemon's pass logs pair_busy naming the
    holder, writes nothing and records no run; the pair syncs once it is free."""
    sb = sandbox(tmp_path)
    bugs(sb, 1)
    engine = sb.engine()
    other = StateStore(engine.config.state.url)
    lease = other.lease_pair("bugs")
    stop = threading.Event()
    try:
        with structlog.testing.capture_logs() as logs:
            daemon = threading.Thread(target=run_daemon, args=(engine,), kwargs={
                "stop_event": stop, "install_signals": False}, daemon=True)
            daemon.start()
            wait_until(lambda: any(e["event"] == "pair_busy" for e in logs), "pair_busy")
            stop.set()
            daemon.join(30)
        busy = next(e for e in logs if e["event"] == "pair_busy")
        assert busy["pair"] == "bugs" and busy["holder"].startswith(
            f"{process_label().rsplit(':', 1)[0]} pid ")
        assert not sb.redmine.state.issues and engine.store.last_run("bugs") is None
        lease.release()
        [result] = run_all_once(engine)
        assert result.ok and result.counts["issues_created"] == 1
    finally:
        lease.release()
        other.close()
        engine.close()


def test_plan_neither_waits_for_nor_takes_the_pair(tmp_path: Path) -> None:
    """A dry run reads while another process holds the pair, and leaves it held."""
    sb = sandbox(tmp_path)
    bugs(sb, 1)
    engine = sb.engine()
    other = StateStore(engine.config.state.url)
    try:
        with other.lease_pair("bugs") as lease:
            [result] = run_all_once(engine, dry_run=True, lock_wait=0)
            assert result.ok and result.counts["planned_writes"] > 0
            assert engine.store.pair_holder("bugs") == lease.holder
        assert not sb.redmine.state.issues
    finally:
        other.close()
        engine.close()


def test_status_tells_a_running_pass_from_an_interrupted_one(db_url: str) -> None:
    """An unfinished run is "running" while its process holds the pair, "interrupted" when
    nobody holds it (its process died) or someone else does."""
    config = parse_config(sandbox_config(db_url))
    store = StateStore(db_url)

    def last_run_line() -> str:
        status = render_status(config, store, datetime.now(UTC))
        return next(line for line in status.splitlines() if "last run:" in line)

    try:
        store.start_run("bugs", "poll")
        assert " interrupted;" in last_run_line()
        with store.lease_pair("bugs"):
            assert " running;" in last_run_line()
            assert f"worked by {process_label().rsplit(':', 1)[0]} pid " in render_status(
                config, store, datetime.now(UTC))
            with store.engine.begin() as conn:  # the run was a dead process's
                conn.execute(text("UPDATE runs SET holder = 'gone-host:4242'"))
            assert " interrupted;" in last_run_line()
    finally:
        store.close()


def test_a_link_made_elsewhere_mid_pass_fails_only_that_conversation(tmp_path: Path) -> None:
    """A conversation linked by someone else (here the `link` command's store call) after
    the pass read it as unlinked is recorded as that object's failure; the pass goes on
    and syncs the other conversation."""
    sb = sandbox(tmp_path)
    first, second = bugs(sb)
    engine = sb.engine()

    linked: list[bool] = []

    def link_elsewhere(_request: httpx.Request) -> None:
        if not linked:
            linked.append(True)
            engine.store.create_link("bugs", first, "999", Side.HELPDESK)

    # Its messages are read on their own, or (once the first conversation showed how
    # Re:amaze counts) with the backfill's read-ahead across conversations.
    sb.reamaze.faults.add(method="GET", path=rf"/conversations/{first}/messages",
                          action=link_elsewhere)
    sb.reamaze.faults.add(method="GET", path=r"/api/v1/messages$", action=link_elsewhere)
    try:
        [result] = run_all_once(engine)
        assert result.error is None, result.error
        assert "already linked" in result.failed[first]
        assert [i.subject for i in sb.redmine.state.issues.values()] == ["[Re:amaze] Crash 1"]
        link = engine.store.get_link("bugs", second)
        assert link is not None and link.issue_id is not None
        assert [f.object_id for f in engine.store.list_failures("bugs")] == [first]
    finally:
        engine.close()


def test_wait_option_needs_once(tmp_path: Path) -> None:
    """`run --wait` without --once is a usage error: the daemon never waits."""
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "none.toml"), "run",
                                       "--wait", "5"])
    assert result.exit_code == 2 and "--wait needs --once" in result.output
