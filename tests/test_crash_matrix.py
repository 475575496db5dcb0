"""The crash matrix (trust hardening): the whole story of a pair, killed or failed at every
remote write and every state commit it makes, restarted, and checked on both sides.

The harness is in ``crash_matrix``, the story and its checks in ``crash_story``; the
number of points covered is printed in the terminal summary (``tests/conftest.py``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from crash_matrix import (
    SUMMARY,
    Injector,
    describe,
    faults_of,
    points_of,
    quiet_logs,
    run_matrix,
    run_story,
    summary,
    workers,
)
from crash_story import Story, check

from syncer.sandbox import LOGIN


def test_the_story_without_faults_is_right_and_always_the_same(tmp_path: Path) -> None:
    """Without faults both sides end as the story says, and two runs reach the same
    writes and commits in the same order (the matrix arms its faults by position)."""
    first, second = run_story(tmp_path / "first"), run_story(tmp_path / "second")
    assert first.problems == []
    assert (first.writes, first.commits) == (second.writes, second.commits)
    assert len(first.writes) >= 15 and len(first.commits) >= 30


def test_the_checks_see_duplicates_losses_leaks_and_stray_emails(tmp_path: Path) -> None:
    """The checks are not vacuous: a duplicated note, a private note made public, a lost
    copy and an email the policy does not allow are each reported."""
    story = Story(tmp_path / "world", Injector())
    with quiet_logs():
        story.run()
    try:
        rm, rz = story.sb.redmine, story.sb.reamaze
        note = next(j for j in rm.state.journals.values() if j.notes and "HD-A-PUB-3" in j.notes)
        rm.add_note(note.issue_id, note.notes or "", user=rm.admin)
        next(j for j in rm.state.journals.values()
             if j.notes and "HD-C-INT-1" in j.notes).private_notes = False
        conv = rz.conversations[story.slugs[0]]
        conv.messages = [m for m in conv.messages if "TR-A-PRIV-1" not in m.body]
        next(m for m in conv.messages
             if m.author.email == LOGIN and m.body.startswith("Linked")).notified = True
        problems = "\n".join(check(story))
    finally:
        story.engine.close()
    assert "HD-A-PUB-3: copies [('public note', 2), ('public note', 2)]" in problems
    assert "internal content in public journal" in problems
    assert "TR-A-PRIV-1: copies []" in problems
    assert "link notes (visibility, emailed, issue) [(1, True, True)]" in problems


def test_every_write_and_commit_of_the_story_survives_a_crash_there(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """For each point (every write to either side, every state commit) and each of kill
    before, kill after, raise before, raise after: the story played with that one fault,
    the engine restarted (kill) or going on (raise), both sides end with exactly one issue
    per conversation, every message copied once with its visibility, no internal content
    public, one link note each, the customer mailed once per reply the policy allows,
    nothing pending, and a last pass that writes nothing."""
    baseline = run_story(tmp_path / "baseline")
    assert baseline.problems == []
    points = points_of(baseline)
    processes = workers()
    started = time.perf_counter()
    outcomes = run_matrix(tmp_path, points, processes)
    request.config.stash[SUMMARY] = summary(baseline, outcomes, time.perf_counter() - started,
                                            processes)
    assert len(outcomes) == len(points)
    failed = [f"{describe(baseline, o.point)}: {'; '.join(faults)}" for o in outcomes
              if o.point is not None and (faults := faults_of(baseline, o))]
    assert not failed, f"{len(failed)} of {len(points)} points:\n" + "\n".join(failed)
