"""The daemon prunes the state database after its passes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from e2e_support import sandbox
from listener_support import *  # noqa: F403  (pytest fixtures)
from listener_support import wait_until

from state import StateStore, utc_now
from syncer.app import Engine
from syncer.plan import Side
from syncer.sandbox import sandbox_config


def test_the_daemon_prunes_old_intents_and_runs_after_a_pass(
        tmp_path: Path, daemon_thread: Callable[[Engine], threading.Event]) -> None:
    """Completed intents older than keep_done_intents_days and runs beyond keep_runs are
    gone after the daemon's first pass; a failed intent and the last failed run stay."""
    data = sandbox_config(f"sqlite:///{tmp_path / 'state.db'}")
    data["state"].update(keep_done_intents_days=7, keep_runs=2)
    sb = sandbox(tmp_path, config=data)
    month_ago = utc_now() - timedelta(days=30)
    old = StateStore(sb.config.state.url, clock=lambda: month_ago)
    try:
        old.begin_intent("bugs", "done-long-ago", "add_comment", "c-1", Side.TRACKER, {})
        old.complete_intent("bugs", "done-long-ago", "9")
        old.begin_intent("bugs", "refused", "add_comment", "c-1", Side.TRACKER, {})
        old.fail_intent("bugs", "refused", "rejected")
        failed = old.start_run("bugs", "poll")
        old.finish_run(failed, {}, "server error")
        old_runs = [old.start_run("bugs", "poll") for _ in range(3)]
        for run in old_runs:
            old.finish_run(run, {}, None)
    finally:
        old.close()

    daemon_thread(sb.engine())
    store = StateStore(sb.config.state.url)
    try:
        wait_until(lambda: store.get_intent("bugs", "done-long-ago") is None, "pruning")
        assert store.get_intent("bugs", "refused") is not None
        last_error = store.last_error_run("bugs")
        assert last_error is not None and last_error.id == failed
        kept = set()
        for run in old_runs:
            try:
                store.finish_run(run, {}, None)
                kept.add(run)
            except KeyError:
                pass
        assert not kept & set(old_runs[:2]), "runs beyond keep_runs stayed"
    finally:
        store.close()
