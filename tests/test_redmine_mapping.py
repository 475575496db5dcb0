"""Pure Redmine mapping: markers, statuses, journals and issues to unified models."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.redmine.mapping import (
    check_marker,
    embed_marker,
    issue_comments,
    issue_to_ticket,
    journal_to_comment,
    split_marker,
    ticket_state,
)
from connectors.redmine.wire import Issue, Journal, StatusRef
from syncer.models import TicketState, Visibility

WHEN = "2026-11-24T18:26:57Z"


def _issue(**over: object) -> Issue:
    data: dict[str, object] = {
        "id": 7, "project": {"id": 1, "name": "Sync"}, "tracker": {"id": 1, "name": "Bug"},
        "status": {"id": 1, "name": "New", "is_closed": False},
        "priority": {"id": 2, "name": "Normal"}, "author": {"id": 1, "name": "Admin"},
        "subject": "S", "description": None, "created_on": WHEN, "updated_on": WHEN}
    data.update(over)
    return Issue.model_validate(data)


def _journal(notes: object, private: bool = False, details: object = ()) -> Journal:
    return Journal.model_validate({"id": 3, "user": {"id": 5, "name": "John Doe"},
                                   "notes": notes, "created_on": WHEN, "private_notes": private,
                                   "details": list(details)})  # type: ignore[call-overload]


@given(st.text(max_size=200),
       st.from_regex(r"rs-[0-9a-f]{8,20}", fullmatch=True))
def test_marker_round_trips_through_any_text(text: str, marker: str) -> None:
    """split(embed(text)) gives back the text (newlines normalised, trailing space trimmed)."""
    body, found = split_marker(embed_marker(text, marker))
    normal = text.replace("\r\n", "\n").replace("\r", "\n").rstrip()
    assert (body, found) == (normal, marker)


def test_marker_survives_redmine_crlf_storage() -> None:
    """Redmine stores descriptions with CRLF; the marker and text still come back clean."""
    stored = embed_marker("a\nb", "rs-abc").replace("\n", "\r\n")
    assert split_marker(stored) == ("a\nb", "rs-abc")


@pytest.mark.parametrize("text", [
    "> <!-- reamaze-sync:rs-abc -->",                       # quoted by Redmine's Quote button
    "<!-- reamaze-sync:rs-abc -->\nand a human reply",      # not on the last line
    "text <!-- reamaze-sync:rs-abc -->",                    # not on its own line
    "<!-- reamaze-sync:other -->",                          # not our token
    "<!-- something else -->",
])
def test_only_a_trailing_marker_line_counts(text: str) -> None:
    """A marker quoted, inline or followed by human text does not make a note ours."""
    assert split_marker(text) == (text, None)


@pytest.mark.parametrize("bad", ["", "abc", "rs-", "rs-a b", "rs-x-->", "rs-" + "a" * 101])
def test_marker_shape_is_checked(bad: str) -> None:
    """Only rs-<token> markers may be embedded in text Redmine renders."""
    with pytest.raises(ValueError):
        check_marker(bad)


def test_status_maps_on_is_closed() -> None:
    """is_closed statuses are CLOSED, every other status is OPEN."""
    assert ticket_state(StatusRef(id=6, name="Rejected", is_closed=True)) is TicketState.CLOSED
    assert ticket_state(StatusRef(id=4, name="Feedback")) is TicketState.OPEN


@pytest.mark.parametrize("notes", ["", None, "  \n "])
def test_journals_without_a_note_are_not_comments(notes: object) -> None:
    """Empty, null and blank notes (pure field changes) map to no comment."""
    details = [{"property": "attr", "name": "status_id", "old_value": "1", "new_value": "5"}]
    assert journal_to_comment(_journal(notes, details=details), "7") is None


def test_private_journal_with_attachment_maps_to_internal_comment() -> None:
    """private_notes is INTERNAL; attachment details resolve to the issue's attachments."""
    issue = _issue(attachments=[{"id": 9, "filename": "log.txt", "filesize": 12,
                                 "content_type": "text/plain",
                                 "content_url": "http://r/attachments/download/9/log.txt"}],
                   journals=[{"id": 4, "user": {"id": 5, "name": "John Doe"}, "created_on": WHEN,
                              "notes": "see log\n\n<!-- reamaze-sync:rs-j4 -->",
                              "private_notes": True,
                              "details": [{"property": "attachment", "name": "9",
                                           "old_value": None, "new_value": "log.txt"}]},
                             {"id": 2, "created_on": WHEN, "notes": "older"}])
    older, comment = issue_comments(issue)
    assert older.body == "older" and older.author.name is None
    assert (comment.id, comment.ticket_id, comment.body, comment.marker, comment.visibility) == (
        "4", "7", "see log", "rs-j4", Visibility.INTERNAL)
    assert [(a.name, a.size) for a in comment.attachments] == [("log.txt", 12)]
    assert comment.created_at == datetime(2026, 11, 24, 18, 26, 57, tzinfo=UTC)


def test_issue_maps_to_ticket() -> None:
    """Subject, marker-free description, status, assignee, project and URL are mapped."""
    ticket = issue_to_ticket(_issue(description="Body\r\n\r\n<!-- reamaze-sync:rs-t1 -->",
                                    assigned_to={"id": 5, "name": "John Doe"},
                                    status={"id": 5, "name": "Closed", "is_closed": True}),
                             base_url="http://r.example/redmine/")
    assert (ticket.id, ticket.description, ticket.marker) == ("7", "Body", "rs-t1")
    assert (ticket.status.code, ticket.status.state) == ("5", TicketState.CLOSED)
    assert ticket.assignee is not None and ticket.assignee.id == "5"
    assert ticket.collection is not None and ticket.collection.id == "1"
    assert ticket.url == "http://r.example/redmine/issues/7"
    assert ticket.data["tracker"] == "Bug"
    assert issue_to_ticket(_issue(), base_url="http://r").description is None
