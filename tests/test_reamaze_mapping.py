"""Pure Re:amaze mapping: status codes, visibility, message identity, roles, wire leniency."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from connectors.reamaze.mapping import (
    code_for_state,
    comments_from_wire,
    fingerprint_id,
    role_from_hash,
    status_from_code,
    ticket_from_wire,
)
from connectors.reamaze.wire import WireConversation, WireMessage, parse_items, parse_one
from syncer.errors import BadPayloadError
from syncer.models import TicketState, Visibility


@pytest.mark.parametrize(("code", "name", "state"), [
    (0, "Open", TicketState.OPEN),
    (1, "Responded", TicketState.PENDING),
    (2, "Done", TicketState.CLOSED),
    (3, "Spam", TicketState.SPAM),
    (4, "Archived", TicketState.CLOSED),
    (5, "On Hold", TicketState.ON_HOLD),
    (6, "Auto-Done", TicketState.CLOSED),
    (7, "AI Agent Assigned", TicketState.OPEN),
    (8, "AI Agent Done", TicketState.CLOSED),
    (9, "Spam (AI)", TicketState.SPAM),
])
def test_every_status_code_maps_to_a_named_state(code: int, name: str,
                                                 state: TicketState) -> None:
    """Each documented status integer reads as its label and unified state."""
    status = status_from_code(code)
    assert (status.code, status.name, status.state) == (str(code), name, state)
    assert status_from_code(str(code)) == status


@pytest.mark.parametrize(("state", "code"), [
    (TicketState.OPEN, 0), (TicketState.PENDING, 1), (TicketState.CLOSED, 2),
    (TicketState.SPAM, 3), (TicketState.ON_HOLD, 5),
])
def test_each_state_writes_its_canonical_code(state: TicketState, code: int) -> None:
    """Writing a unified state uses one canonical code that reads back as the same state."""
    assert code_for_state(state) == code
    assert status_from_code(code).state is state


@pytest.mark.parametrize("raw", [10, -1, 42, "x", None, True, 2.5, {"a": 1}])
def test_unknown_status_is_open_and_logged(raw: object) -> None:
    """An unknown status code reads as OPEN 'Unknown (...)' with a warning, never a crash."""
    with capture_logs() as logs:
        status = status_from_code(raw, slug="s")
    assert status.state is TicketState.OPEN
    assert status.name.startswith("Unknown (")
    assert [e["event"] for e in logs] == ["reamaze_unknown_status"]


def _msg(**kw: object) -> WireMessage:
    base: dict[str, object] = {"body": "hello", "visibility": 0,
                               "created_at": "2026-01-05T10:00:00.123Z",
                               "user": {"name": "Cu", "email": "cu@x.example"}}
    base.update(kw)
    return WireMessage.model_validate(base)


def test_fingerprint_ignores_the_utc_offset_of_created_at() -> None:
    """The same instant written with another offset gives the same message id."""
    a = _msg(created_at="2026-01-05T10:00:00.123Z")
    b = _msg(created_at="2026-01-05T03:00:00.123-07:00")
    c = _msg(created_at="2026-01-05T10:00:00.124Z")
    assert fingerprint_id("s", a) == fingerprint_id("s", b)
    assert fingerprint_id("s", a) != fingerprint_id("s", c)
    assert fingerprint_id("s", a) != fingerprint_id("other", a)
    assert fingerprint_id("s", a).startswith("m-") and len(fingerprint_id("s", a)) == 22


@pytest.mark.parametrize(("visibility", "expected", "read_only"), [
    (0, Visibility.PUBLIC, False), (1, Visibility.INTERNAL, False),
    (2, Visibility.INTERNAL, True), (7, Visibility.INTERNAL, True),
    (None, Visibility.INTERNAL, True), ("0", Visibility.PUBLIC, False),
])
def test_message_visibility_defaults_to_private(visibility: object, expected: Visibility,
                                                read_only: bool) -> None:
    """0 is public, 1 internal, 2 a read-only collision notice, and anything odd private."""
    [comment] = comments_from_wire("s", [_msg(visibility=visibility)])
    assert comment.visibility is expected
    assert comment.read_only is read_only


def test_comments_are_oldest_first_deduplicated_and_uniquely_identified() -> None:
    """Newest-first pages become oldest-first, repeats vanish, a reused origin_id stays unique."""
    first = _msg(body="one", created_at="2026-01-05T10:00:00Z", origin_id="rs-a")
    second = _msg(body="two", created_at="2026-01-05T10:01:00Z", origin_id="rs-a")
    third = _msg(body="three", created_at="2026-01-05T10:02:00Z", origin_id=12345)
    comments = comments_from_wire("s", [third, second, second, first])
    assert [c.body for c in comments] == ["one", "two", "three"]
    assert comments[0].id == "rs-a" and comments[0].marker == "rs-a"
    assert comments[1].id == fingerprint_id("s", second)
    assert comments[2].id == "12345" and comments[2].marker is None  # not our marker
    assert len({c.id for c in comments}) == 3


def test_conversation_without_updated_at_uses_its_newest_known_time() -> None:
    """List items may omit updated_at; the last message time stands in for it."""
    conv = WireConversation.model_validate({
        "slug": "s", "created_at": "2026-01-05T10:00:00Z", "status": 0,
        "last_customer_message": {"body": "x", "created_at": "2026-01-06T10:00:00Z"}})
    ticket = ticket_from_wire(conv, url="u")
    assert ticket.updated_at == datetime(2026, 1, 6, 10, tzinfo=UTC)


def test_wire_models_tolerate_odd_optional_fields() -> None:
    """Wrong-typed optional fields become empty values instead of rejecting the object."""
    conv = WireConversation.model_validate({
        "slug": "s", "created_at": "2026-01-05T10:00:00Z", "updated_at": "yesterday",
        "tag_list": "bug", "author": "bob", "assignee": {"email": 5},
        "category": [], "data": {"n": 1, "none": None}, "surprise": {"kept": True}})
    ticket = ticket_from_wire(conv, url="u")
    assert ticket.tags == () and ticket.contact is None and ticket.assignee is None
    assert ticket.collection is None
    assert ticket.data == {"n": "1", "none": ""}
    assert ticket.updated_at == ticket.created_at
    assert ticket.raw is not None and ticket.raw["surprise"] == {"kept": True}


def test_list_items_that_do_not_validate_are_skipped_with_a_warning() -> None:
    """A broken list item is dropped and logged; the rest of the page survives."""
    items = [{"slug": "ok", "created_at": "2026-01-05T10:00:00Z"},
             {"slug": "naive", "created_at": "2026-01-05T10:00:00"},
             {"created_at": "2026-01-05T10:00:00Z"}, "junk"]
    with capture_logs() as logs:
        parsed = parse_items(WireConversation, items, kind="conversation")
    assert [c.slug for c in parsed] == ["ok"]
    assert [e["event"] for e in logs] == ["reamaze_item_skipped"] * 3


def test_single_object_that_does_not_validate_is_a_bad_payload() -> None:
    """A single conversation without a slug is a typed error naming the field."""
    with pytest.raises(BadPayloadError, match="slug"):
        parse_one(WireConversation, {"created_at": "2026-01-05T10:00:00Z"}, object_id="x")
    with pytest.raises(BadPayloadError, match="expected a JSON object"):
        parse_one(WireConversation, ["not", "an", "object"])


@pytest.mark.parametrize(("role", "rid", "name"), [
    ({"id": 3, "name": "Agent", "permissions": {"reply?": True}}, "3", "Agent"),
    ({"name": "Lead", "manage_staff?": True}, "Lead", "Lead"),
    ({"manage_staff?": False}, None, None),
])
def test_roles_come_from_the_staff_role_hash(role: dict[str, object], rid: str | None,
                                             name: str | None) -> None:
    """A role hash with or without id/name still yields a stable role id and permissions."""
    parsed = role_from_hash(role)
    assert parsed is not None
    if rid is None:
        assert parsed.id.startswith("role-") and parsed.id == role_from_hash(dict(role)).id
        assert parsed.permissions == {"manage_staff?": False}
    else:
        assert (parsed.id, parsed.name) == (rid, name)
    assert role_from_hash({}) is None
