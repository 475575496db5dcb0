"""Batches of notes on one Redmine issue: one read-back confirms them all, a private note is
verified alone until the server has shown it keeps notes private, and an error stops the
batch with an exact account of what certainly did not land."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from connectors.redmine.mapping import split_marker
from syncer.errors import RejectedError, TransientError
from syncer.models import NewComment, Visibility

if TYPE_CHECKING:
    from fakes import FakeClock

    from connectors.redmine.connector import RedmineConnector
    from connectors.redmine.simulator import RedmineSimulator

pytest_plugins = ["redmine_fixtures"]

PUBLIC, INTERNAL = Visibility.PUBLIC, Visibility.INTERNAL


def _notes(*specs: tuple[str, Visibility]) -> list[NewComment]:
    return [NewComment(body=f"note {name}", visibility=vis, marker=f"rs-{name}")
            for name, vis in specs]


def _issue(sim: RedmineSimulator) -> str:
    return str(sim.add_issue(sim.state.project_by_ref("sync"), "Broken").id)


def _count(sim: RedmineSimulator, method: str, path: str) -> int:
    return sum(1 for r in sim.requests if r.method == method and r.path == path)


def _journal_markers(sim: RedmineSimulator, issue_id: str) -> list[tuple[str, bool]]:
    """(marker, private) of the issue's notes, oldest first."""
    out = []
    for j in sorted(sim.state.journals.values(), key=lambda j: j.id):
        if j.issue_id == int(issue_id) and j.notes:
            out.append((str(split_marker(j.notes)[1]), j.private_notes))
    return out


def _developer(sim: RedmineSimulator, clock: FakeClock, **user: object) -> RedmineConnector:
    from test_redmine_connector import _as_user

    u = sim.add_user("dev", **user)
    sim.add_member(sim.state.project_by_ref("sync"), u, ("Manager",))
    return _as_user(sim, clock, u.api_key)


def test_one_read_back_confirms_a_whole_batch(redmine_sim: RedmineSimulator,
                                              redmine_conn: RedmineConnector) -> None:
    """Four public notes: four PUTs, one read of the issue, ids in order."""
    issue_id = _issue(redmine_sim)
    news = _notes(("a", PUBLIC), ("b", PUBLIC), ("c", PUBLIC), ("d", PUBLIC))
    batch = redmine_conn.create_comments(issue_id, news)
    assert batch.error is None and batch.not_written == []
    assert [c.marker for c in batch.created] == ["rs-a", "rs-b", "rs-c", "rs-d"]
    journal_ids = sorted(j.id for j in redmine_sim.state.journals.values())
    assert [int(c.id) for c in batch.created] == journal_ids
    assert _count(redmine_sim, "PUT", f"/issues/{issue_id}.json") == 4
    assert _count(redmine_sim, "GET", f"/issues/{issue_id}.json") == 1


def test_first_private_note_is_verified_alone_then_batches_are_trusted(
        redmine_sim: RedmineSimulator, redmine_clock: FakeClock) -> None:
    """Until a read-back has shown a private note staying private, a batch stops after its
    first internal note to check it; afterwards a batch is read back once."""
    conn = _developer(redmine_sim, redmine_clock)
    issue_id = _issue(redmine_sim)
    first = conn.create_comments(issue_id, _notes(("p1", PUBLIC), ("i1", INTERNAL),
                                                  ("i2", INTERNAL), ("p2", PUBLIC)))
    assert first.error is None and len(first.created) == 4
    assert _count(redmine_sim, "GET", f"/issues/{issue_id}.json") == 2
    assert conn.guard.proven
    second = conn.create_comments(issue_id, _notes(("i3", INTERNAL), ("i4", INTERNAL)))
    assert second.error is None and len(second.created) == 2
    assert _count(redmine_sim, "GET", f"/issues/{issue_id}.json") == 3
    assert [v for _, v in _journal_markers(redmine_sim, issue_id)] == [
        False, True, True, False, True, True]


def test_proof_lapses_with_the_permission_answer(redmine_sim: RedmineSimulator,
                                                 redmine_clock: FakeClock) -> None:
    """A fresh permission check (its cache expired) must be proven again."""
    conn = _developer(redmine_sim, redmine_clock)
    issue_id = _issue(redmine_sim)
    conn.create_comments(issue_id, _notes(("i1", INTERNAL)))
    assert conn.guard.proven
    redmine_clock.sleep(conn.guard.ttl + 1)
    conn.create_comments(issue_id, _notes(("i2", INTERNAL), ("i3", INTERNAL)))
    reads = _count(redmine_sim, "GET", f"/issues/{issue_id}.json")
    assert reads == 3  # one for i1, then i2 alone, then i3


def test_leak_in_a_batch_removes_the_note_and_sends_nothing_after_it(
        redmine_sim: RedmineSimulator, redmine_clock: FakeClock) -> None:
    """The server drops the private flag: the note is deleted, the batch stops there, and
    the public note before it is confirmed."""
    conn = _developer(redmine_sim, redmine_clock, drop_private_notes=True)
    issue_id = _issue(redmine_sim)
    batch = conn.create_comments(issue_id, _notes(("a", PUBLIC), ("leak", INTERNAL),
                                                  ("c", PUBLIC)))
    assert isinstance(batch.error, RejectedError) and "removed" in batch.error.message
    assert [c.marker for c in batch.created] == ["rs-a"]
    assert batch.not_written == ["rs-leak", "rs-c"]
    assert _journal_markers(redmine_sim, issue_id) == [("rs-a", False)]
    assert _count(redmine_sim, "PUT", f"/issues/{issue_id}.json") == 2
    assert not conn.guard.proven and not conn.guard.verdict().allowed


def test_refused_note_mid_batch_is_not_written_and_stops_the_rest(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """A 422 on the second note: the first is confirmed, the second and third are
    certainly not on Redmine."""
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(status=422, method="PUT", path=r"^/issues/\d+\.json$", skip=1)
    batch = redmine_conn.create_comments(issue_id, _notes(("a", PUBLIC), ("b", PUBLIC),
                                                          ("c", PUBLIC)))
    assert isinstance(batch.error, RejectedError)
    assert [c.marker for c in batch.created] == ["rs-a"]
    assert batch.not_written == ["rs-b", "rs-c"]
    assert _journal_markers(redmine_sim, issue_id) == [("rs-a", False)]


def test_note_that_may_have_landed_is_neither_created_nor_not_written(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """Every attempt at the second note fails with 502: it might be on Redmine (the caller
    keeps its intent pending for recovery), the third was never sent."""
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(status=502, times=100, method="PUT", skip=1)
    batch = redmine_conn.create_comments(issue_id, _notes(("a", PUBLIC), ("b", PUBLIC),
                                                          ("c", PUBLIC)))
    assert isinstance(batch.error, TransientError)
    assert [c.marker for c in batch.created] == ["rs-a"]
    assert batch.not_written == ["rs-c"]


def test_single_create_raises_what_the_batch_reports(redmine_sim: RedmineSimulator,
                                                     redmine_conn: RedmineConnector) -> None:
    """``create_comment`` is a batch of one: same checks, the error raised."""
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(status=422, method="PUT", path=r"^/issues/\d+\.json$")
    with pytest.raises(RejectedError):
        redmine_conn.create_comment(issue_id, _notes(("x", PUBLIC))[0])
    assert _journal_markers(redmine_sim, issue_id) == []
