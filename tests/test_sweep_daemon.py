"""The daemon's anti-entropy sweep: after each poll it verifies links within its share of
the request budgets, repairs what the feeds missed through the pass's own path (nothing
twice), and keeps its position in the state so a restart continues where it stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from e2e_support import (
    STAFF,
    CrashBefore,
    Engineer,
    Mark,
    crash_then_restart,
    is_write,
    issue_for,
    issue_ids,
    journals,
    run_pass,
    sandbox,
)
from listener_support import *  # noqa: F403  (pytest fixtures)
from listener_support import wait_until

from connectors.http import ApiClient
from syncer.app import Engine
from syncer.daemon import sweep_slice
from syncer.runner import PairRunner, PassResult
from syncer.sandbox import Sandbox
from syncer.status import pair_status, render_pair
from syncer.sweep import Checker, SweepBudget, SweepSlice, VerifyAll

INTERVAL = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _apis(engine: Engine) -> dict[str, ApiClient]:
    return {"reamaze": engine.helpdesk.api, "redmine": engine.trackers["redmine"].api}  # type: ignore[union-attr]


def _runner(engine: Engine, share: float, clock: Clock, recent_pages: int = 0
            ) -> tuple[PairRunner, SweepBudget]:
    runner = engine.runner(engine.config.pairs[0])
    assert isinstance(runner, PairRunner)
    budget = SweepBudget(_apis(engine), share, {}, INTERVAL, clock=clock)
    runner.after_feeds = SweepSlice(budget, recent_pages)
    return runner, budget


def _pass(runner: PairRunner) -> PassResult:
    result = runner.run_once(kind="poll")
    assert result.ok and not result.failed, (result.error, result.failed)
    return result


def _behind_the_feeds(sb: Sandbox, slug: str, change: str) -> None:
    """Change a conversation without moving its time or place in the change listing."""
    conv = sb.reamaze.conversations[slug]
    kept = (conv.updated_at, conv.change_seq)
    if change == "done":
        conv.status = 2
    elif change == "bug":
        conv.tags = [*conv.tags, "bug"]
    elif change == "note":
        sb.reamaze.add_staff_message(slug, "INTERNAL-SWEEP heap dump", email=STAFF,
                                     visibility=1)
    conv.updated_at, conv.change_seq = kept


def test_slices_stay_in_budget_and_a_restart_continues_where_it_stopped(
        tmp_path: Path) -> None:
    """With credit for a few links per interval, each pass verifies a few and spends at
    most its credit plus one link; passes by ever new processes (a restart each time)
    verify each of the 12 links exactly once in the round."""
    sb = sandbox(tmp_path)
    for n in range(12):
        sb.reamaze.add_conversation(f"Crash {n}", "It crashes.", f"c{n}@customer.example",
                                    tags=["bug"])
    engine = sb.engine()
    run_pass(engine)
    run_pass(engine)
    engine.close()
    # 9 requests per interval on each connection: a link costs 2 on Re:amaze, 1 on Redmine.
    share = 9 * 60 / (100_000 * INTERVAL)
    verified, passes = 0, 0
    while True:
        engine = sb.engine()
        try:
            runner, budget = _runner(engine, share, Clock())
            result = _pass(runner)
            position = engine.store.get_sweep("bugs")
        finally:
            engine.close()
        passes += 1
        assert budget.spent["reamaze"] <= 9 + 2, budget.spent
        assert budget.spent["redmine"] <= 9 + 1, budget.spent
        verified += result.counts["links_verified"]
        assert position is not None
        if position.rounds == 1:
            break
        assert 0 < result.counts["links_verified"] < 12
        assert passes < 20
    assert verified == 12
    assert passes >= 3
    engine = sb.engine()
    try:
        doc = pair_status(engine.config.pairs[0], engine.store, datetime.now(UTC))
        assert doc["sweep"]["rounds"] == 1
        assert any(line.startswith("  sweep: 1 round(s) done (the last took ")
                   for line in render_pair(doc, datetime.now(UTC)))
    finally:
        engine.close()


def test_credit_accrues_with_time_and_is_shared_between_pairs(tmp_path: Path) -> None:
    """A slice run again without time passing has no credit left; the daemon's budget is
    `sweep_share` of each connection's requests_per_minute, split among its pairs."""
    sb = sandbox(tmp_path)
    for n in range(6):
        sb.reamaze.add_conversation(f"Crash {n}", "It crashes.", f"c{n}@customer.example",
                                    tags=["bug"])
    engine = sb.engine()
    try:
        run_pass(engine)
        clock = Clock()
        runner, _ = _runner(engine, 5 * 60 / (100_000 * INTERVAL), clock)
        assert 0 < _pass(runner).counts["links_verified"] < 6
        assert _pass(runner).counts["links_verified"] == 0  # no time passed: no credit
        clock.now += INTERVAL
        assert _pass(runner).counts["links_verified"] > 0
        pair = engine.config.pairs[0]
        made = sweep_slice(engine, pair, [pair, pair])
        assert made is not None
        assert made.budget.per_second["reamaze"] == 0.25 * 100_000 / 60 / 2
    finally:
        engine.close()


def test_sweep_repairs_what_the_feeds_missed_once(tmp_path: Path) -> None:
    """A status change and an internal note the feeds never show are repaired by the
    daemon's sweep (issue closed, note copied privately), a tag match the listing did not
    move gets its issue, and later passes write nothing more."""
    sb = sandbox(tmp_path, status={"on_conversation_closed": "close_issue"},
                 status_field={"direction": "both", "owner": "tracker"})
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.",
                                       "carol@customer.example", tags=["bug"])
    later = sb.reamaze.add_conversation("Slow", "Slow.", "dave@customer.example",
                                        tags=["question"])
    engine = sb.engine()
    try:
        run_pass(engine)
        run_pass(engine)
        issue = issue_for(engine, slug)
        _behind_the_feeds(sb, slug, "done")
        _behind_the_feeds(sb, slug, "note")
        _behind_the_feeds(sb, later, "bug")
        run_pass(engine)  # the feeds alone see nothing
        assert sb.redmine.state.issues[int(issue)].status_id != 5
        assert len(issue_ids(sb)) == 1
        runner, _ = _runner(engine, 0.25, Clock(), recent_pages=1)
        result = _pass(runner)
        assert result.counts["drift_repaired"] == 2
        assert sb.redmine.state.issues[int(issue)].status_id == 5
        assert [n.private for n in journals(sb, issue) if "INTERNAL-SWEEP" in n.text] == [True]
        assert len(issue_ids(sb)) == 2
        _pass(runner)
        mark = Mark.now(sb)
        for _ in range(3):
            assert _pass(runner).counts["drift_repaired"] == 0
        assert mark.writes() == []
    finally:
        engine.close()


def test_the_daemon_sweeps_after_its_polls(
        tmp_path: Path, daemon_thread: Callable[[Engine], threading.Event]) -> None:
    """`run_daemon` wires the sweep into every pair's polls: a status change the feeds
    never show closes the issue while the daemon runs, and its position is saved."""
    sb = sandbox(tmp_path, status={"on_conversation_closed": "close_issue"},
                 status_field={"direction": "both", "owner": "tracker"})
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.",
                                       "carol@customer.example", tags=["bug"])
    engine = sb.engine()
    try:
        run_pass(engine)
        run_pass(engine)
        issue = int(issue_for(engine, slug))
    finally:
        engine.close()
    _behind_the_feeds(sb, slug, "done")
    daemon = sb.engine()
    daemon_thread(daemon)
    wait_until(lambda: sb.redmine.state.issues[issue].status_id == 5, "the sweep's repair")

    def round_done() -> bool:
        position = daemon.store.get_sweep("bugs")
        return position is not None and position.rounds >= 1

    wait_until(round_done, "the sweep's first round")


def test_verify_leaves_writes_awaiting_recovery_out_of_the_drift(tmp_path: Path) -> None:
    """A note journalled but never confirmed (the process died before sending it) is in
    flight, not missing: a dry-run verify, which runs no recovery, does not list it."""
    sb = sandbox(tmp_path)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.",
                                       "carol@customer.example", tags=["bug"])
    engine = sb.engine()
    try:
        run_pass(engine)
        run_pass(engine)
    finally:
        engine.close()
    sb.reamaze.add_customer_message(slug, "MORE-DETAIL it also crashes on load")
    engine = crash_then_restart(sb, CrashBefore(is_write("PUT", r"^/issues/\d+\.json$")),
                                "redmine")
    try:
        assert [i.status for i in engine.store.pending_intents("bugs")] == ["pending"]
        runner = engine.runner(engine.config.pairs[0])
        assert isinstance(runner, PairRunner)
        checker = Checker(fix=False)
        runner.after_feeds = VerifyAll(checker, recent_pages=0)
        result = runner.run_once(kind="verify", dry_run=True, feeds=False)
        assert result.ok and result.counts["links_verified"] == 1
        assert checker.drift == []
    finally:
        engine.close()


def test_a_note_edited_after_it_was_copied_is_reported_but_not_drift(tmp_path: Path) -> None:
    """An engineer edits a note the sync already copied to Re:amaze, on a pair that does
    not tell edits: verify names it as a difference no pass repairs, and neither counts it
    as drift (exit 0) nor writes anything for it with --fix. (Told edits: test_e2e_edits.)"""
    from syncer.cli_verify import _report

    sb = sandbox(tmp_path, edits={"tracker_to_helpdesk": False})
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.",
                                       "carol@customer.example", tags=["bug"])
    dev = Engineer(sb)
    engine = sb.engine()
    try:
        run_pass(engine)
        issue = issue_for(engine, slug)
        dev.note(issue, "ENG-NOTE fixed in 4.2")
        run_pass(engine)
        run_pass(engine)
        note = next(n for n in journals(sb, issue) if "ENG-NOTE" in n.text)
        edited = dev.http.put(f"/journals/{note.id}.json",
                              json={"journal": {"notes": "ENG-NOTE fixed in 4.3"}})
        assert edited.status_code == 204, edited.text
        for fix in (False, True):
            runner = engine.runner(engine.config.pairs[0])
            assert isinstance(runner, PairRunner)
            checker = Checker(fix=fix)
            runner.after_feeds = VerifyAll(checker, recent_pages=0)
            mark = Mark.now(sb)
            result = runner.run_once(kind="verify", dry_run=not fix, feeds=False)
            assert mark.writes() == []
            [drift] = checker.drift
            assert drift.problems == ()
            assert drift.notes == (f"{note.id} was edited on the tracker after it was copied; "
                                   "not told to Re:amaze ([pairs.edits] "
                                   "tracker_to_helpdesk = false)",)
            assert _report(result, checker.drift, fix) is False
    finally:
        engine.close()
