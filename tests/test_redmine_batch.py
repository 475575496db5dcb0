"""Batches of notes on one Redmine issue: one read-back confirms the public ones, every
private note is read back before anything after it is sent, and an error stops the batch
with an exact account of what certainly did not land."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from connectors.redmine.mapping import split_marker
from syncer.errors import LeakError, OutcomeUnknownError, RejectedError
from syncer.models import NewComment, Visibility

if TYPE_CHECKING:
    from fakes import FakeClock

    from connectors.redmine.connector import RedmineConnector
    from connectors.redmine.sim.simulator import RedmineSimulator

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


def test_every_internal_note_is_checked_before_the_next_note_goes_out(
        redmine_sim: RedmineSimulator, redmine_clock: FakeClock) -> None:
    """A batch never goes past an internal note unchecked: the issue is read back after
    each one, however many private notes already stayed private."""
    conn = _developer(redmine_sim, redmine_clock)
    issue_id = _issue(redmine_sim)
    first = conn.create_comments(issue_id, _notes(("p1", PUBLIC), ("i1", INTERNAL),
                                                  ("i2", INTERNAL), ("p2", PUBLIC)))
    assert first.error is None and len(first.created) == 4
    assert _count(redmine_sim, "GET", f"/issues/{issue_id}.json") == 3
    second = conn.create_comments(issue_id, _notes(("i3", INTERNAL), ("i4", INTERNAL)))
    assert second.error is None and len(second.created) == 2
    assert _count(redmine_sim, "GET", f"/issues/{issue_id}.json") == 5
    assert [v for _, v in _journal_markers(redmine_sim, issue_id)] == [
        False, True, True, False, True, True]


@pytest.mark.parametrize("how", ["flag-dropped", "role-lost-permission"])
def test_permission_lost_mid_run_leaks_at_most_one_note_removed_at_once(
        redmine_sim: RedmineSimulator, redmine_clock: FakeClock, how: str) -> None:
    """Private notes worked, then the server stops keeping them private while the cached
    permission answer still says yes: the first internal note after that is found public,
    removed at once, and nothing after it is sent."""
    conn = _developer(redmine_sim, redmine_clock)
    issue_id = _issue(redmine_sim)
    assert conn.create_comments(issue_id, _notes(("i1", INTERNAL))).error is None
    user = next(u for u in redmine_sim.state.users.values() if u.login == "dev")
    if how == "flag-dropped":
        user.drop_private_notes = True
    else:
        manager = next(r for r in redmine_sim.state.roles.values() if r.name == "Manager")
        manager.permissions = tuple(p for p in manager.permissions
                                    if p != "set_notes_private")
    assert conn.guard.verdict().allowed  # still cached: only the read-back can tell
    batch = conn.create_comments(issue_id, _notes(("i2", INTERNAL), ("i3", INTERNAL),
                                                  ("p3", PUBLIC)))
    assert isinstance(batch.error, LeakError) and batch.error.removed
    assert batch.created == [] and batch.not_written == ["rs-i2", "rs-i3", "rs-p3"]
    assert _journal_markers(redmine_sim, issue_id) == [("rs-i1", True)]
    assert _count(redmine_sim, "PUT", f"/issues/{issue_id}.json") == 2
    assert not conn.guard.verdict().allowed


def test_leak_in_a_batch_removes_the_note_and_sends_nothing_after_it(
        redmine_sim: RedmineSimulator, redmine_clock: FakeClock) -> None:
    """The server drops the private flag: the note is deleted, the batch stops there, and
    the public note before it is confirmed."""
    conn = _developer(redmine_sim, redmine_clock, drop_private_notes=True)
    issue_id = _issue(redmine_sim)
    batch = conn.create_comments(issue_id, _notes(("a", PUBLIC), ("leak", INTERNAL),
                                                  ("c", PUBLIC)))
    assert isinstance(batch.error, LeakError) and batch.error.removed
    assert "removed" in batch.error.message
    assert [c.marker for c in batch.created] == ["rs-a"]
    assert batch.not_written == ["rs-leak", "rs-c"]
    assert _journal_markers(redmine_sim, issue_id) == [("rs-a", False)]
    assert _count(redmine_sim, "PUT", f"/issues/{issue_id}.json") == 2
    assert not conn.guard.verdict().allowed


def test_leak_that_cannot_be_removed_is_reported_as_such(
        redmine_sim: RedmineSimulator, redmine_clock: FakeClock) -> None:
    """The leaked note cannot be deleted (the delete is refused): the batch reports a leak
    that was NOT removed, so the engine can stop sending internal content."""
    conn = _developer(redmine_sim, redmine_clock, drop_private_notes=True)
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(status=403, method="PUT", path=r"^/journals/\d+\.json$", times=9)
    batch = conn.create_comments(issue_id, _notes(("leak", INTERNAL), ("c", PUBLIC)))
    assert isinstance(batch.error, LeakError) and not batch.error.removed
    assert batch.error.ticket_id == issue_id
    assert batch.not_written == ["rs-c"] and batch.created == []


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
    assert isinstance(batch.error, OutcomeUnknownError)
    assert [c.marker for c in batch.created] == ["rs-a"]
    assert batch.not_written == ["rs-c"]
    assert _count(redmine_sim, "PUT", f"/issues/{issue_id}.json") == 2  # never re-sent


def test_single_create_raises_what_the_batch_reports(redmine_sim: RedmineSimulator,
                                                     redmine_conn: RedmineConnector) -> None:
    """``create_comment`` is a batch of one: same checks, the error raised."""
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(status=422, method="PUT", path=r"^/issues/\d+\.json$")
    with pytest.raises(RejectedError):
        redmine_conn.create_comment(issue_id, _notes(("x", PUBLIC))[0])
    assert _journal_markers(redmine_sim, issue_id) == []
