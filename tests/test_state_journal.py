"""Intents (write-ahead journal), runs and the dead letter, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from state_support import *  # noqa: F403  (pytest fixtures)
from state_support import T0, FakeClock

from state import FailureRecord, StateStore
from syncer.plan import Side

H, T = Side.HELPDESK, Side.TRACKER


# --- intents ----------------------------------------------------------------------------

def test_begin_intent_records_a_pending_write(store: StateStore) -> None:
    """A new intent is pending, counts one attempt and keeps its payload as JSON."""
    payload = {"subject": "Printer on fire 🔥", "tags": ["a", "b"], "nested": {"n": 1},
               "at": datetime(2026, 1, 1, tzinfo=UTC)}
    intent = store.begin_intent("p", "rs-abc", "create_issue", "conv-1", T, payload)
    assert (intent.pair, intent.key, intent.kind, intent.conversation_id, intent.target) == (
        "p", "rs-abc", "create_issue", "conv-1", T)
    assert (intent.status, intent.attempts, intent.result_id, intent.error) == (
        "pending", 1, None, None)
    assert intent.payload == {"subject": "Printer on fire 🔥", "tags": ["a", "b"],
                              "nested": {"n": 1}, "at": "2026-01-01T00:00:00Z"}
    assert intent.created_at == T0 and intent.created_at.tzinfo is not None
    assert store.get_intent("p", "rs-abc") == intent


def test_begin_intent_is_idempotent_on_its_key(store: StateStore, clock: FakeClock) -> None:
    """Beginning the same key again returns the same intent, one more attempt, no duplicate."""
    first = store.begin_intent("p", "rs-abc", "add_comment", "conv-1", T, {"body": "one"})
    clock.advance(5)
    again = store.begin_intent("p", "rs-abc", "add_comment", "conv-1", T, {"body": "two"})
    assert again.id == first.id
    assert again.attempts == 2
    assert again.payload == {"body": "one"}  # the first journalled write is the truth
    assert again.created_at == first.created_at
    assert again.updated_at == first.updated_at + timedelta(seconds=5)
    assert [i.key for i in store.pending_intents("p")] == ["rs-abc"]


def test_a_failed_intent_begun_again_takes_the_new_payload(store: StateStore) -> None:
    """A failed write never landed, so the retry's payload (e.g. the messages a new issue's
    description now covers) is what recovery must go by; a pending one keeps its first."""
    store.begin_intent("p", "rs-abc", "create_issue", "conv-1", T, {"covered": ["m1"]})
    store.fail_intent("p", "rs-abc", "422 rejected")
    again = store.begin_intent("p", "rs-abc", "create_issue", "conv-1", T,
                               {"covered": ["m1", "m2"]})
    assert (again.status, again.attempts) == ("pending", 2)
    assert again.payload == {"covered": ["m1", "m2"]}
    third = store.begin_intent("p", "rs-abc", "create_issue", "conv-1", T, {"covered": []})
    assert third.payload == {"covered": ["m1", "m2"]}


def test_completed_intent_is_returned_as_done(store: StateStore) -> None:
    """After completion the intent leaves the pending list; beginning it again says done."""
    store.begin_intent("p", "rs-1", "create_issue", "conv-1", T, {})
    store.complete_intent("p", "rs-1", "4242")
    done = store.get_intent("p", "rs-1")
    assert done is not None and done.done and done.result_id == "4242"
    assert store.pending_intents("p") == []
    again = store.begin_intent("p", "rs-1", "create_issue", "conv-1", T, {})
    assert (again.status, again.result_id, again.attempts) == ("done", "4242", 1)


def test_failed_intent_stays_retryable(store: StateStore) -> None:
    """A failed intent is listed for retry; beginning it again makes it pending once more."""
    store.begin_intent("p", "rs-1", "update_ticket", "conv-1", H, {"state": "closed"})
    store.fail_intent("p", "rs-1", "503 from Re:amaze")
    failed = store.get_intent("p", "rs-1")
    assert failed is not None and (failed.status, failed.error) == ("failed", "503 from Re:amaze")
    assert [i.status for i in store.pending_intents("p")] == ["failed"]
    retry = store.begin_intent("p", "rs-1", "update_ticket", "conv-1", H, {"state": "closed"})
    assert (retry.status, retry.attempts, retry.error) == ("pending", 2, "503 from Re:amaze")
    store.complete_intent("p", "rs-1", "conv-1")
    done = store.get_intent("p", "rs-1")
    assert done is not None and (done.status, done.error) == ("done", None)


def test_pending_intents_are_per_pair_and_oldest_first(store: StateStore) -> None:
    """pending_intents lists one pair's unfinished writes in the order they were begun."""
    for key in ("rs-c", "rs-a", "rs-b"):
        store.begin_intent("p", key, "add_comment", "conv-1", T, {})
    store.begin_intent("q", "rs-a", "add_comment", "conv-1", T, {})  # same key, other pair
    store.complete_intent("p", "rs-a", "j1")
    assert [i.key for i in store.pending_intents("p")] == ["rs-c", "rs-b"]
    assert [i.pair for i in store.pending_intents("q")] == ["q"]
    assert store.get_intent("q", "rs-a") is not None and store.get_intent("r", "rs-a") is None


def test_intent_errors_and_validation(store: StateStore) -> None:
    """Unknown keys, kinds and non-object payloads are refused; long errors are trimmed."""
    with pytest.raises(KeyError):
        store.complete_intent("p", "rs-missing", "1")
    with pytest.raises(KeyError):
        store.fail_intent("p", "rs-missing", "x")
    with pytest.raises(ValueError, match="delete_issue"):
        store.begin_intent("p", "rs-1", "delete_issue", "conv-1", T, {})
    with pytest.raises(TypeError):
        store.begin_intent("p", "rs-1", "add_comment", "conv-1", T, ["not", "a", "dict"])  # type: ignore[arg-type]
    store.begin_intent("p", "rs-1", "add_comment", "conv-1", T, {})
    store.fail_intent("p", "rs-1", "x" * 10_000)
    failed = store.get_intent("p", "rs-1")
    assert failed is not None and failed.error is not None
    assert 2000 <= len(failed.error) < 2100


# --- runs -------------------------------------------------------------------------------

def test_run_round_trip(store: StateStore, clock: FakeClock) -> None:
    """A run records kind, start, finish, counts and error, stamped by the store's clock."""
    run_id = store.start_run("p", "backfill")
    running = store.last_run("p")
    assert running is not None and running.id == run_id and not running.finished
    clock.advance(90)
    store.finish_run(run_id, {"created": 3, "comments": 10}, None)
    run = store.last_run("p")
    assert run is not None
    assert (run.kind, run.counts, run.error, run.started_at) == (
        "backfill", {"created": 3, "comments": 10}, None, T0)
    assert run.finished_at == T0 + timedelta(seconds=90)


def test_last_run_and_last_error_run(store: StateStore, clock: FakeClock) -> None:
    """last_run is the latest (even unfinished); last_error_run the latest that failed."""
    assert store.last_run("p") is None and store.last_error_run("p") is None
    bad = store.start_run("p", "poll")
    store.finish_run(bad, {}, "AuthError: 401")
    clock.advance()
    good = store.start_run("p", "poll")
    store.finish_run(good, {"updated": 1}, None)
    clock.advance()
    current = store.start_run("p", "poll")
    store.start_run("other", "poll")
    last, last_error = store.last_run("p"), store.last_error_run("p")
    assert last is not None and last.id == current and last.finished_at is None
    assert last_error is not None and (last_error.id, last_error.error) == (bad, "AuthError: 401")


def test_run_validation(store: StateStore) -> None:
    """Unknown run kinds and run ids are refused."""
    with pytest.raises(ValueError, match="nightly"):
        store.start_run("p", "nightly")
    with pytest.raises(KeyError):
        store.finish_run(999_999, {}, None)


def test_prune_runs_keeps_the_latest(store: StateStore) -> None:
    """prune_runs deletes a pair's oldest runs beyond the number to keep."""
    ids = [store.start_run("p", "poll") for _ in range(5)]
    other = store.start_run("q", "poll")
    assert store.prune_runs("p", keep=2) == 3
    assert store.prune_runs("p", keep=2) == 0
    last = store.last_run("p")
    assert last is not None and last.id == ids[-1]
    store.finish_run(ids[-2], {}, "still here")
    with pytest.raises(KeyError):
        store.finish_run(ids[0], {}, None)
    last_q = store.last_run("q")
    assert last_q is not None and last_q.id == other


# --- failures (dead letter) -------------------------------------------------------------

def test_record_failure_counts_attempts(store: StateStore, clock: FakeClock) -> None:
    """Each failure of an object adds an attempt and keeps the latest error."""
    assert store.record_failure("p", H, "conv-9", "bad json") == 1
    clock.advance(60)
    assert store.record_failure("p", H, "conv-9", "still bad") == 2
    assert store.list_failures("p") == [FailureRecord(
        pair="p", side=H, object_id="conv-9", error="still bad", attempts=2,
        first_seen=T0, last_seen=T0 + timedelta(seconds=60), skipped=False)]


def test_a_wait_is_recorded_without_counting_an_attempt(store: StateStore) -> None:
    """An object waiting for recovery is listed with why, but its attempts stay as they
    were: waiting is not failing, and must never use up its automatic retries."""
    assert store.record_failure("p", H, "conv-9", "waits", attempt=False) == 0
    assert store.record_failure("p", H, "conv-9", "bad json") == 1
    assert store.record_failure("p", H, "conv-9", "waits again", attempt=False) == 1
    assert [(f.error, f.attempts) for f in store.list_failures("p")] == [("waits again", 1)]


def test_failures_are_per_pair_and_side(store: StateStore, clock: FakeClock) -> None:
    """The same object id on another side or pair is a separate entry; newest first."""
    store.record_failure("p", H, "7", "a")
    clock.advance()
    store.record_failure("p", T, "7", "b")
    clock.advance()
    store.record_failure("q", H, "7", "c")
    assert [(f.pair, f.side, f.error) for f in store.list_failures()] == [
        ("q", H, "c"), ("p", T, "b"), ("p", H, "a")]
    assert [f.error for f in store.list_failures("p")] == ["b", "a"]


def test_clear_failure(store: StateStore) -> None:
    """Clearing forgets the object's failures; the count starts over afterwards."""
    store.record_failure("p", H, "conv-9", "x")
    store.record_failure("p", H, "conv-9", "x")
    store.clear_failure("p", H, "conv-9")
    store.clear_failure("p", H, "never-failed")
    assert store.list_failures() == []
    assert store.record_failure("p", H, "conv-9", "x") == 1


def test_skip_and_unskip(store: StateStore) -> None:
    """A skipped object stays skipped through new failures until an operator unskips it."""
    store.record_failure("p", H, "conv-9", "poison")
    assert not store.is_skipped("p", H, "conv-9")
    store.set_failure_skipped("p", H, "conv-9", True)
    assert store.is_skipped("p", H, "conv-9")
    assert not store.is_skipped("p", T, "conv-9")
    assert store.record_failure("p", H, "conv-9", "poison again") == 2
    assert store.is_skipped("p", H, "conv-9")
    store.set_failure_skipped("p", H, "conv-9", False)
    assert not store.is_skipped("p", H, "conv-9")
    assert store.list_failures()[0].error == "poison again"


def test_skip_before_any_failure(store: StateStore) -> None:
    """Skipping an object that never failed creates a skipped entry with zero attempts."""
    store.set_failure_skipped("p", T, "issue-1", True)
    [entry] = store.list_failures("p")
    assert (entry.object_id, entry.skipped, entry.attempts) == ("issue-1", True, 0)
    assert store.is_skipped("p", T, "issue-1")
    assert not store.is_skipped("p", T, "issue-2")


def test_timestamps_come_back_in_utc(db_url: str) -> None:
    """A clock in another zone is stored as the same instant and read back as UTC."""
    local = datetime(2026, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    s = StateStore(db_url, clock=lambda: local)
    try:
        s.record_failure("p", H, "x", "e")
        [entry] = s.list_failures()
        assert entry.first_seen == local
        assert entry.first_seen.utcoffset() == timedelta(0)
        assert entry.first_seen.hour == 12
    finally:
        s.close()


def test_naive_clock_is_refused(db_url: str) -> None:
    """A clock without a timezone is an error rather than a silent local-time guess."""
    naive = StateStore(db_url, clock=lambda: datetime(2026, 1, 1))
    try:
        with pytest.raises(ValueError, match="naive"):
            naive.start_run("p", "poll")
        assert naive.last_run("p") is None
    finally:
        naive.close()


def test_credentials_are_never_journalled(store: StateStore) -> None:
    """A payload carrying a credential-like key, however nested, is refused and not stored."""
    for payload in ({"api_key": "k"}, {"ticket": {"Authorization": "Basic x"}},
                    {"items": [{"body": "ok"}, {"password": "p"}]}):
        with pytest.raises(ValueError, match="credential"):
            store.begin_intent("p", "rs-1", "add_comment", "conv-1", T, payload)
    assert store.get_intent("p", "rs-1") is None


def test_webhook_runs_do_not_stand_for_the_pairs_passes(store: StateStore) -> None:
    """A webhook's targeted pass polls no feed: `status` and /readyz judge the pair by its
    polls and backfills, so a successful webhook run after a failed poll hides nothing."""
    poll = store.start_run("p", "poll")
    store.finish_run(poll, {}, "server error")
    hook = store.start_run("p", "webhook")
    store.finish_run(hook, {"issues_seen": 1}, None)
    last, ok, error = store.last_run("p"), store.last_ok_run("p"), store.last_error_run("p")
    assert last is not None and last.id == poll
    assert ok is None
    assert error is not None and error.id == poll
    failed_hook = store.start_run("p", "webhook")
    store.finish_run(failed_hook, {}, "busy")
    error = store.last_error_run("p")
    assert error is not None and error.id == poll
