"""The contract every tracker connector passes, against its simulator and, where one can
be started here, its real server (``conftest.HARNESSES``).

Only the connector's public interface (``connectors.base.Connector``) is exercised; the
harness plays the people on the tracker and the network between. A tracker is accepted
when this whole module passes for it.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from error_classes import ERROR_IDS, ERRORS
from tracker_harness import BAD_KEY, TrackerHarness

from connectors.base import Connector
from syncer.errors import (
    AuthError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    SyncError,
)
from syncer.models import (
    ChangePage,
    Cursor,
    NewComment,
    NewTicket,
    TicketState,
    TicketUpdate,
    Visibility,
)

pytest_plugins = ["redmine_fixtures"]

# Long enough for a tracker with second-precision timestamps to tell writes apart, and
# for the feed to settle the keys it read at its boundary.
SETTLE = 2.2


def mk() -> str:
    return f"rs-{uuid.uuid4().hex[:20]}"


def new_ticket(subject: str = "Printer on fire", marker: str | None = None) -> NewTicket:
    return NewTicket(subject=subject, description="It smokes.", marker=marker or mk())


def note(body: str, visibility: Visibility = Visibility.PUBLIC,
         marker: str | None = None) -> NewComment:
    return NewComment(body=body, visibility=visibility, marker=marker or mk())


def walk(conn: Connector, since: Cursor | None) -> tuple[list[ChangePage], Cursor | None]:
    pages = list(conn.iter_changes(since))
    checkpoints = [p.checkpoint for p in pages if p.checkpoint is not None]
    return pages, checkpoints[-1] if checkpoints else since


def ids(pages: list[ChangePage]) -> list[str]:
    return [t.id for p in pages for t in p.tickets]


# -- the change feed ---------------------------------------------------------------------

def test_listing_crosses_page_edges_without_losing_or_repeating(
        tracker: TrackerHarness) -> None:
    """A walk over several pages yields every ticket once, and an idle poll from its
    cursor (whose look-back re-reads the walk's last tickets) yields nothing."""
    conn = tracker.connector(page_size=3)
    made = [conn.create_ticket(new_ticket(f"Issue {n}")).id for n in range(7)]
    tracker.let_time_pass(SETTLE)
    pages, cursor = walk(conn, None)
    assert len([p for p in pages if p.tickets]) >= 3
    assert Counter(ids(pages)) == Counter(made)
    assert cursor is not None
    idle, after = walk(conn, cursor)
    assert ids(idle) == []
    assert after is not None and after.watermark >= cursor.watermark


def test_changes_made_right_after_a_walk_come_back_once(tracker: TrackerHarness) -> None:
    """What changes just after a walk (inside the cursor's look-back) is in the next poll,
    once, across page edges, and only it."""
    conn = tracker.connector(page_size=2)
    made = [conn.create_ticket(new_ticket(f"Issue {n}")).id for n in range(5)]
    tracker.let_time_pass(SETTLE)
    _, cursor = walk(conn, None)
    tracker.person_comment(made[0], "poke")
    conn.update_ticket(made[3], TicketUpdate(state=TicketState.CLOSED))
    tracker.person_comment(made[4], "poke too")
    tracker.let_time_pass(SETTLE)
    pages, cursor = walk(conn, cursor)
    assert Counter(ids(pages)) == Counter([made[0], made[3], made[4]])
    assert ids(walk(conn, cursor)[0]) == []


def test_closed_and_reopened_tickets_are_listed_with_their_state(
        tracker: TrackerHarness) -> None:
    """Closing and reopening are changes like any other: the feed never filters closed
    tickets out, and each comes with its new state. An idle poll then costs what the
    harness declares (one listing; GitHub adds its comment listing)."""
    conn = tracker.connector()
    to_close = conn.create_ticket(new_ticket("close me")).id
    to_reopen = conn.create_ticket(new_ticket("reopen me")).id
    conn.update_ticket(to_reopen, TicketUpdate(state=TicketState.CLOSED))
    tracker.let_time_pass(SETTLE)
    first, cursor = walk(conn, None)
    assert sorted(ids(first)) == sorted([to_close, to_reopen])
    tracker.person_sets_state(to_close, TicketState.CLOSED)
    tracker.person_sets_state(to_reopen, TicketState.OPEN)
    tracker.let_time_pass(SETTLE)
    pages, cursor = walk(conn, cursor)
    states = {t.id: t.status.state for p in pages for t in p.tickets}
    assert states == {to_close: TicketState.CLOSED, to_reopen: TicketState.OPEN}
    before = tracker.requests()
    assert ids(walk(conn, cursor)[0]) == []
    assert tracker.requests() - before == tracker.idle_poll_requests


# -- create / update / comment ---------------------------------------------------------------

def test_create_update_and_comment_round_trip(tracker: TrackerHarness) -> None:
    """A created ticket reads back with its text and marker, changes state, and lists our
    comment (ours, with its marker) and a person's (not ours, no marker) in order."""
    conn = tracker.connector()
    assert isinstance(conn, Connector) and conn.name == tracker.kind
    marker = mk()
    created = conn.create_ticket(NewTicket(subject="Crash on save",
                                           description="Line one\nLine two", marker=marker))
    got = conn.get_ticket(created.id)
    assert (got.subject, got.description, got.marker) == (
        "Crash on save", "Line one\nLine two", marker)
    assert got.status.state is TicketState.OPEN and got.url == conn.ticket_url(created.id)
    closed = conn.update_ticket(created.id, TicketUpdate(state=TicketState.CLOSED))
    assert closed.status.state is TicketState.CLOSED
    reopened = conn.update_ticket(created.id, TicketUpdate(state=TicketState.OPEN))
    assert reopened.status.state is TicketState.OPEN
    ours = conn.create_comment(created.id, note("from the helpdesk", marker=marker + "c"))
    tracker.person_comment(created.id, "from a developer")
    ticket, comments = conn.read_ticket(created.id)
    assert ticket.id == created.id
    assert [(c.body, c.marker, c.author.id == conn.whoami()) for c in comments] == [
        ("from the helpdesk", marker + "c", True), ("from a developer", None, False)]
    assert comments[0].id == ours.id and comments == conn.list_comments(created.id)


def test_a_batch_of_comments_lands_in_order(tracker: TrackerHarness) -> None:
    """``create_comments`` writes every comment, in order, and reports each created."""
    conn = tracker.connector()
    created = conn.create_ticket(new_ticket())
    news = [note(f"part {n}") for n in range(3)]
    batch = conn.create_comments(created.id, news)
    assert batch.error is None and batch.not_written == []
    assert [c.marker for c in batch.created] == [n.marker for n in news]
    assert [c.body for c in conn.list_comments(created.id)] == ["part 0", "part 1", "part 2"]


# -- finding our own writes again (crash recovery, re-adoption) ------------------------------

def test_own_ticket_is_found_by_its_exact_marker_even_closed(tracker: TrackerHarness) -> None:
    """After a crash the engine finds the ticket it created by marker, closed or not; a
    person's ticket carrying the same marker, or a longer one, is never taken for it."""
    conn = tracker.connector()
    marker = mk()
    forged = tracker.person_ticket("copied", marker)
    assert conn.find_ticket_by_marker(marker) is None
    longer = conn.create_ticket(new_ticket("longer", marker + "ff"))
    ours = conn.create_ticket(new_ticket("ours", marker))
    conn.update_ticket(ours.id, TicketUpdate(state=TicketState.CLOSED))
    found = conn.find_ticket_by_marker(marker)
    assert found is not None and found.id == ours.id
    assert found.id not in (forged, longer.id) and found.author_id == conn.whoami()
    assert conn.find_ticket_by_marker(mk()) is None


def test_own_comment_is_found_by_marker_not_a_copy(tracker: TrackerHarness) -> None:
    """The engine finds the comment it wrote by marker; a person's copy is not it."""
    conn = tracker.connector()
    created = conn.create_ticket(new_ticket())
    marker = mk()
    tracker.person_comment_with_marker(created.id, marker)
    assert conn.find_comment_by_marker(created.id, marker) is None
    mine = conn.create_comment(created.id, note("ours", marker=marker))
    found = conn.find_comment_by_marker(created.id, marker)
    assert found is not None and found.id == mine.id
    assert conn.find_comment_by_marker(created.id, mk()) is None


# -- visibility ------------------------------------------------------------------------------

def test_declared_visibility_is_what_the_api_does(tracker: TrackerHarness) -> None:
    """A tracker declaring private comments hides an internal one from someone without
    staff rights; one declaring none refuses an internal comment and writes nothing."""
    conn = tracker.connector()
    created = conn.create_ticket(new_ticket())
    conn.create_comment(created.id, note("for everyone"))
    if conn.capabilities.private_comments:
        internal = conn.create_comment(created.id, note("card ends 4242", Visibility.INTERNAL))
        assert internal.visibility is Visibility.INTERNAL
        assert [c.visibility for c in conn.list_comments(created.id)] == [
            Visibility.PUBLIC, Visibility.INTERNAL]
        assert tracker.public_view(created.id) == ["for everyone"]
    else:
        with pytest.raises(RejectedError):
            conn.create_comment(created.id, note("card ends 4242", Visibility.INTERNAL))
        assert [c.body for c in conn.list_comments(created.id)] == ["for everyone"]


def test_an_edited_copy_keeps_its_marker_and_its_visibility(tracker: TrackerHarness) -> None:
    """A tracker declaring comment edits rewrites the engine's comment in place: the same
    id, the new text, found by its marker still, and as private as it was; one declaring
    none refuses."""
    conn = tracker.connector()
    created = conn.create_ticket(new_ticket())
    private = conn.capabilities.private_comments
    visibility = Visibility.INTERNAL if private else Visibility.PUBLIC
    mine = conn.create_comment(created.id, note("first text", visibility))
    if not conn.capabilities.edit_comments:
        with pytest.raises(RejectedError):
            conn.update_comment(created.id, mine.id, "second text")
        return
    edited = conn.update_comment(created.id, mine.id, "second text")
    assert (edited.id, edited.visibility, edited.marker) == (mine.id, visibility, mine.marker)
    assert "second text" in edited.body and "first text" not in edited.body
    found = conn.find_comment_by_marker(created.id, mine.marker or "")
    assert found is not None and found.id == mine.id and "second text" in found.body
    if private:
        assert tracker.public_view(created.id) == []


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "error"), ERRORS, ids=ERROR_IDS)
def test_error_status_maps_to_its_recovery_class(tracker: TrackerHarness, status: int,
                                                 error: type[SyncError]) -> None:
    """Each HTTP error is raised as the class saying what to do next, with its status."""
    conn = tracker.connector()
    created = conn.create_ticket(new_ticket())
    tracker.faults.add(status=status, times=None, method="GET")
    with pytest.raises(error) as raised:
        conn.get_ticket(created.id)
    assert raised.value.status == status and raised.value.connector


@pytest.mark.parametrize("status", [403, 409, 422])
def test_a_refused_create_writes_nothing(tracker: TrackerHarness, status: int) -> None:
    """A create refused with a 4xx raises a fatal error and leaves no ticket behind."""
    conn = tracker.connector()
    tracker.faults.add(status=status, times=None, method="POST")
    with pytest.raises(AuthError if status == 403 else RejectedError):
        conn.create_ticket(new_ticket())
    assert tracker.ticket_count() == 0


def test_the_servers_own_refusals_map_like_injected_ones(tracker: TrackerHarness) -> None:
    """The tracker's real 401 (bad credentials) and 404 (unknown ticket, read or written)
    map as above, and the credentials never appear in the error."""
    bad = tracker.connector(bad_credentials=True)
    with pytest.raises(AuthError) as denied:
        bad.check()
    assert denied.value.status == 401
    assert BAD_KEY not in str(denied.value)
    conn = tracker.connector()
    with pytest.raises(NotFoundError):
        conn.get_ticket("987654")
    with pytest.raises(NotFoundError):
        conn.list_comments("987654")
    with pytest.raises(NotFoundError):
        conn.create_comment("987654", note("hello"))


# -- pacing ----------------------------------------------------------------------------------

def test_a_throttled_write_waits_as_told_and_lands_once(tracker: TrackerHarness) -> None:
    """When the tracker says to slow down, the connector waits the time it names, then
    sends again; the ticket exists once."""
    conn = tracker.connector()
    tracker.faults.add(method="POST", times=2, **tracker.throttle(retry_after=7))
    created = conn.create_ticket(new_ticket())
    assert tracker.clock.sleeps.count(7.0) == 2
    assert tracker.ticket_count() == 1 and conn.get_ticket(created.id).id == created.id


def test_throttling_that_does_not_end_gives_up_without_writing(
        tracker: TrackerHarness) -> None:
    """A tracker that keeps throttling ends in RateLimitedError, nothing written."""
    conn = tracker.connector()
    tracker.faults.add(method="POST", times=None, **tracker.throttle(retry_after=3))
    with pytest.raises(RateLimitedError) as raised:
        conn.create_ticket(new_ticket())
    assert raised.value.retry_after == 3.0
    assert tracker.ticket_count() == 0


def test_requests_are_paced_to_the_configured_budget(tracker: TrackerHarness) -> None:
    """At 60 requests a minute the connector spaces its requests a second apart by
    itself, instead of running into the tracker's limit."""
    conn = tracker.connector(requests_per_minute=60)
    created = conn.create_ticket(new_ticket())
    before = (tracker.requests(), tracker.clock.now)
    for _ in range(4):
        conn.get_ticket(created.id)
    sent = tracker.requests() - before[0]
    assert sent >= 4
    assert tracker.clock.now - before[1] >= (sent - 1) * 0.99

