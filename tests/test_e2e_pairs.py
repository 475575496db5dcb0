"""Several pairs and trackers in one engine: a broken tracker (missing key, 401, 403)
only stops its own pairs, and the daemon runs passes and stops cleanly."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from e2e_support import STAFF, Handler, Mark, sandbox

from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.redmine.sim.simulator import RedmineSimulator
from state import StateStore
from syncer.app import Engine, build_engine, run_all_once
from syncer.config import parse_config
from syncer.daemon import run_daemon
from syncer.plan import Side
from syncer.sandbox import BRAND, LOGIN, MARKER_KEY, REAMAZE_TOKEN, sandbox_config
from syncer.status import render_status

FAST_HTTP = {"requests_per_minute": 100_000, "burst": 1000, "max_attempts": 3}


class TwoTrackers:
    """Re:amaze plus two Redmines: pair "bugs" (tag bug) and pair "features" (tag feature)."""

    def __init__(self, tmp_path: Path) -> None:
        self.reamaze = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN)
        self.reamaze.add_staff(STAFF, "Jane Support")
        self.bugs = RedmineSimulator()
        self.bugs.add_project("support")
        self.features = RedmineSimulator()
        self.features.add_project("roadmap")
        data: dict[str, Any] = sandbox_config(f"sqlite:///{tmp_path / 'state.db'}")
        data["trackers"]["redmine"]["http"] = FAST_HTTP
        data["trackers"]["product"] = {
            "kind": "redmine", "base_url": "http://product.sandbox", "project": "roadmap",
            "api_key_env": "PRODUCT_REDMINE_KEY", "http": FAST_HTTP}
        data["pairs"].append({"name": "features", "tracker": "product",
                              "match": {"tags": ["feature"]}})
        self.config = parse_config(data)
        self.environ = {"REAMAZE_API_TOKEN": REAMAZE_TOKEN,
                        "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY,
                        "REDMINE_API_KEY": self.bugs.admin_key,
                        "PRODUCT_REDMINE_KEY": self.features.admin_key}
        self.bug = self.reamaze.add_conversation("Crash on save", "It crashes.",
                                                 "carol@customer.example", tags=["bug"])
        self.wish = self.reamaze.add_conversation("Dark mode please", "Would love dark mode.",
                                                  "dave@customer.example", tags=["feature"])

    def engine(self, handlers: dict[str, Handler] | None = None, **environ: str) -> Engine:
        env = {**self.environ, **environ}
        routes: dict[str, Handler] = {"reamaze": self.reamaze.handle,
                                      "redmine": self.bugs.handle,
                                      "product": self.features.handle, **(handlers or {})}
        return build_engine(self.config, environ={k: v for k, v in env.items() if v},
                            transports={k: httpx.MockTransport(h) for k, h in routes.items()})


def _by_pair(engine: Engine) -> dict[str, Any]:
    return {r.pair: r for r in run_all_once(engine)}


def test_missing_tracker_key_stops_only_its_pair(tmp_path: Path) -> None:
    """Without PRODUCT_REDMINE_KEY the "features" pair reports which variable is missing, on
    every pass and in `status`, while "bugs" keeps syncing."""
    env = TwoTrackers(tmp_path)
    engine = env.engine(PRODUCT_REDMINE_KEY="")
    results = _by_pair(engine)
    assert results["bugs"].ok and results["bugs"].counts["issues_created"] == 1
    assert results["features"].error == ("[trackers.product] api_key_env: environment "
                                         "variable PRODUCT_REDMINE_KEY is not set")
    assert len(env.bugs.state.issues) == 1 and not env.features.state.issues
    assert not env.features.requests  # nothing was sent without credentials
    status = render_status(env.config, engine.store, datetime.now(UTC))
    features = status[status.index("[features]"):]
    assert "last error" in features and "PRODUCT_REDMINE_KEY is not set" in features
    assert "last error" not in status[:status.index("[features]")]
    engine.close()

    fixed = env.engine()  # the operator sets the variable and restarts
    results = _by_pair(fixed)
    assert results["features"].ok and results["features"].counts["issues_created"] == 1
    assert len(env.bugs.state.issues) == 1  # the other pair did not redo anything
    fixed.close()


def test_tracker_rejecting_the_key_records_the_error_and_others_sync(tmp_path: Path) -> None:
    """A Redmine answering 401 fails its own pair's pass with an explanation, recorded in
    the run history; the other pair's conversation is synced in the same run."""
    env = TwoTrackers(tmp_path)
    engine = env.engine(PRODUCT_REDMINE_KEY="0" * 40)
    results = _by_pair(engine)
    assert results["bugs"].ok and results["bugs"].counts["issues_created"] == 1
    error = results["features"].error or ""
    assert "rejected the API key" in error and "0" * 40 not in error
    assert {r.status for r in env.features.requests} == {401}
    link = engine.store.get_link("features", env.wish)
    assert link is None or link.issue_id is None
    last = engine.store.last_run("features")
    assert last is not None and last.error == error
    status = render_status(env.config, engine.store, datetime.now(UTC))
    assert "rejected the API key" in status[status.index("[features]"):]
    # No cursor moved for the failed pair: the next good pass starts from the beginning.
    assert engine.store.get_cursor("features", Side.HELPDESK) is None
    engine.close()

    fixed = env.engine()
    results = _by_pair(fixed)
    assert results["features"].ok and len(env.features.state.issues) == 1
    assert [i.status for i in fixed.store.pending_intents("features")
            if i.status == "pending"] == []
    assert fixed.store.get_link("features", env.wish) is not None
    fixed.close()


def test_tracker_answering_403_fails_its_pair_and_recovers_later(tmp_path: Path) -> None:
    """Access denied (403) on one tracker is an error for that pair only; once access is
    back the next pass creates its issue, exactly once."""
    env = TwoTrackers(tmp_path)
    env.features.faults.add(status=403, times=1_000_000)
    engine = env.engine()
    results = _by_pair(engine)
    assert results["bugs"].ok
    assert results["features"].error is not None and "403" in results["features"].error
    assert not env.features.state.issues
    env.features.faults.clear()
    results = _by_pair(engine)
    assert results["features"].ok and results["features"].counts["issues_created"] == 1
    assert len(env.features.state.issues) == 1
    mark_bugs, mark_features = len(env.bugs.requests), len(env.features.requests)
    _by_pair(engine)
    assert not [r for r in env.bugs.requests[mark_bugs:] if r.method != "GET"]
    assert not [r for r in env.features.requests[mark_features:] if r.method != "GET"]
    engine.close()


def test_bad_reamaze_token_fails_every_pair_without_writing(tmp_path: Path) -> None:
    """Re:amaze refusing the token (403) fails each pair's pass and nothing is written to
    any tracker."""
    env = TwoTrackers(tmp_path)
    engine = env.engine(REAMAZE_API_TOKEN="wrong-token-value")
    results = _by_pair(engine)
    for pair in ("bugs", "features"):
        assert results[pair].error is not None and "refused login" in results[pair].error
    assert not env.bugs.state.issues and not env.features.state.issues
    engine.close()


# --- the daemon ----------------------------------------------------------------------------

def _wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _start_daemon(engine: Engine, stop: threading.Event) -> tuple[threading.Thread, list[int]]:
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(
        run_daemon(engine, stop_event=stop, install_signals=False)), daemon=True)
    thread.start()
    return thread, code


def _one_daemon_pass(engine: Engine) -> tuple[threading.Thread, list[int]]:
    """Run the daemon until the first pass of the pair ``bugs`` has finished, then stop it."""
    stop = threading.Event()
    thread, code = _start_daemon(engine, stop)
    _wait_for(lambda: (run := engine.store.last_run("bugs")) is not None
              and run.finished_at is not None)
    stop.set()
    thread.join(timeout=15)
    return thread, code


def test_daemon_runs_a_pass_and_stops_cleanly(tmp_path: Path) -> None:
    """The daemon runs the first pass at once; after the stop event it returns 0 and the
    pass's work (link, cursors, run record) is in the state file for the next process."""
    sb = sandbox(tmp_path)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                       tags=["bug"])
    engine = sb.engine()
    thread, code = _one_daemon_pass(engine)
    assert not thread.is_alive() and code == [0]
    engine.close()

    store = StateStore(sb.config.state.url)
    link = store.get_link("bugs", slug)
    assert link is not None and link.issue_id == "1"
    assert store.get_cursor("bugs", Side.HELPDESK) is not None
    assert store.get_cursor("bugs", Side.TRACKER) is not None
    run = store.last_run("bugs")
    assert run is not None and run.error is None and run.counts["issues_created"] == 1
    store.close()
    again = sb.engine()
    mark = Mark.now(sb)
    assert run_all_once(again)[0].ok
    assert mark.writes() == []
    again.close()


def test_stop_during_a_pass_keeps_finished_work_and_duplicates_nothing(tmp_path: Path) -> None:
    """A stop request arriving while the daemon works stops the pass after the current
    conversation; what it finished is saved and the next process completes the rest once."""
    sb = sandbox(tmp_path)
    slugs = [sb.reamaze.add_conversation(f"Bug {n}", f"Problem {n}.", f"c{n}@customer.example",
                                         tags=["bug"]) for n in range(5)]
    stop = threading.Event()
    sb.reamaze.before_request.append(
        lambda r: stop.set() if r.method == "POST" and "/messages" in r.url.path else None)
    engine = sb.engine()
    thread, code = _start_daemon(engine, stop)
    thread.join(timeout=15)
    assert not thread.is_alive() and code == [0]
    run = engine.store.last_run("bugs")
    assert run is not None and run.error == "stopped before the pass finished"
    done = [s for s in slugs if engine.store.get_link("bugs", s) is not None]
    assert len(done) == 1 and len(sb.redmine.state.issues) == 1
    assert engine.store.get_cursor("bugs", Side.HELPDESK) is None  # the walk did not finish
    engine.close()
    sb.reamaze.before_request.clear()

    again = sb.engine()
    assert run_all_once(again)[0].ok
    assert len(sb.redmine.state.issues) == 5
    assert all(again.store.get_link("bugs", s) is not None for s in slugs)
    again.close()


def test_daemon_with_a_broken_pair_runs_the_others(tmp_path: Path) -> None:
    """A pair whose tracker has no credentials is recorded as failed at start; the daemon
    still runs the healthy pair and exits 0 when stopped."""
    env = TwoTrackers(tmp_path)
    engine = env.engine(PRODUCT_REDMINE_KEY="")
    _, code = _one_daemon_pass(engine)
    assert code == [0]
    failed = engine.store.last_run("features")
    assert failed is not None and "PRODUCT_REDMINE_KEY" in (failed.error or "")
    assert len(env.bugs.state.issues) == 1
    engine.close()


def test_conversation_in_two_pairs_gets_two_issues_and_no_echo_between_them(
        tmp_path: Path) -> None:
    """A conversation tagged both bug and feature gets one issue in each tracker; a note on
    one issue arrives in Re:amaze once and is not relayed to the other tracker; a second
    run writes nothing anywhere."""
    env = TwoTrackers(tmp_path)
    both = env.reamaze.add_conversation("Export crashes and needs CSV", "Export crashes.",
                                        "erin@customer.example", tags=["bug", "feature"])
    engine = env.engine()
    assert all(r.ok for r in _by_pair(engine).values())
    bug_link = engine.store.get_link("bugs", both)
    feature_link = engine.store.get_link("features", both)
    assert bug_link is not None and feature_link is not None
    assert len(env.bugs.state.issues) == 2 and len(env.features.state.issues) == 2
    link_notes = [m for m in env.reamaze.conversations[both].messages
                  if m.body.startswith("Linked to Redmine issue")]
    assert len(link_notes) == 2 and all(m.visibility == 1 for m in link_notes)

    env.bugs.clock.advance(2)
    env.bugs.add_note(int(bug_link.issue_id or 0), "ENGINEERING-ONLY stack trace attached")
    assert all(r.ok for r in _by_pair(engine).values())
    copies = [m for m in env.reamaze.conversations[both].messages
              if "ENGINEERING-ONLY" in m.body]
    assert [m.visibility for m in copies] == [1]
    feature_notes = [j.notes for j in env.features.state.journals.values()
                     if j.issue_id == int(feature_link.issue_id or 0) and j.notes]
    assert not any("ENGINEERING-ONLY" in n for n in feature_notes)
    marks = len(env.reamaze.requests), len(env.bugs.requests), len(env.features.requests)
    assert all(r.ok for r in _by_pair(engine).values())
    writes = [r.method for r in env.reamaze.requests[marks[0]:] + env.bugs.requests[marks[1]:]
              + env.features.requests[marks[2]:] if r.method != "GET"]
    assert writes == []
    engine.close()


def test_unexpected_crash_in_one_pair_is_recorded_and_others_sync(tmp_path: Path) -> None:
    """An unexpected exception inside one pair's pass (a bug, not an API error) is reported
    for that pair, recorded as its failed run in `status`, and the other pair syncs."""
    env = TwoTrackers(tmp_path)

    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("simulated bug in a connector")

    engine = env.engine({"redmine": explode})
    results = _by_pair(engine)
    assert results["bugs"].error == "internal error: RuntimeError('simulated bug in a connector')"
    assert results["features"].ok and len(env.features.state.issues) == 1
    last = engine.store.last_run("bugs")
    assert last is not None and last.finished_at is not None
    assert last.error == results["bugs"].error
    status = render_status(env.config, engine.store, datetime.now(UTC))
    bugs = status[:status.index("[features]")]
    assert "failed" in bugs and "simulated bug in a connector" in bugs
    engine.close()
