"""The sweep against a real Redmine: a settled link with public and private notes shows no
drift (Redmine's own reading of private notes and whole-second times raise no false
alarm), and an issue deleted on Redmine, which its change feed never shows, is found and
its link marked orphaned only when asked to fix."""

from __future__ import annotations

import time

from e2e_support import STAFF
from test_e2e_redmine_real import Rig, _run, rig  # noqa: F401 - the fixture

from syncer.runner import PairRunner, PassResult
from syncer.sweep import Checker, Drift, VerifyAll

pytest_plugins = ["redmine_fixtures"]


def _verify(rig: Rig, fix: bool) -> tuple[PassResult, list[Drift]]:  # noqa: F811
    engine = rig.engine()
    try:
        runner = engine.runner(engine.config.pairs[0])
        assert isinstance(runner, PairRunner)
        checker = Checker(fix=fix)
        runner.after_feeds = VerifyAll(checker, recent_pages=1)
        result = runner.run_once(kind="verify", dry_run=not fix, feeds=False)
        assert result.ok and not result.failed, (result.error, result.failed)
        return result, checker.drift
    finally:
        engine.close()


def test_real_redmine_clean_links_show_no_drift_and_a_deleted_issue_is_found(
        rig: Rig) -> None:  # noqa: F811
    rz = rig.reamaze
    kept = rz.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                               tags=["bug"])
    rz.add_staff_message(kept, "INTERNAL reproduced", email=STAFF, visibility=1)
    doomed = rz.add_conversation("Sync stalls", "Stalls.", "dave@customer.example",
                                 tags=["bug"])
    engine = rig.engine()
    try:
        _run(engine)
        time.sleep(1.1)  # Redmine's whole seconds: the next read sees the writes settled
        _run(engine)
        link = engine.store.get_link("bugs", doomed)
        assert link is not None and link.issue_id is not None
        doomed_issue = link.issue_id
    finally:
        engine.close()
    result, drift = _verify(rig, fix=False)
    assert drift == [] and result.counts["links_verified"] == 2

    gone = rig.admin.http.delete(f"/issues/{doomed_issue}.json")
    assert gone.status_code in (200, 204), gone.text
    engine = rig.engine()
    try:
        _run(engine)  # the feed does not show a deleted issue
        link = engine.store.get_link("bugs", doomed)
        assert link is not None and link.status == "active"
    finally:
        engine.close()
    result, drift = _verify(rig, fix=False)
    assert [d.conversation_id for d in drift] == [doomed]
    assert f"issue {doomed_issue} is gone: the link is orphaned" in drift[0].problems
    result, drift = _verify(rig, fix=True)
    assert [d.conversation_id for d in drift] == [doomed]
    engine = rig.engine()
    try:
        link = engine.store.get_link("bugs", doomed)
        assert link is not None and link.status == "orphaned"
        assert len(rig.issues()) == 1
    finally:
        engine.close()
    result, drift = _verify(rig, fix=False)
    assert drift == [] and result.counts["links_verified"] == 1
