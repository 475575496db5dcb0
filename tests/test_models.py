"""The unified models: frozen, strict, timezone-aware, and the content fingerprint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from syncer.models import (
    Author,
    ChangePage,
    Comment,
    Cursor,
    NewComment,
    Ticket,
    TicketState,
    TicketStatus,
    TicketUpdate,
    Visibility,
    content_fingerprint,
)

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
OPEN = TicketStatus(code="1", name="New", state=TicketState.OPEN)


def ticket(**over: Any) -> Ticket:
    fields: dict[str, Any] = {"id": "42", "subject": "Login broken", "status": OPEN,
                              "created_at": T0, "updated_at": T0}
    fields.update(over)
    return Ticket(**fields)


def comment(**over: Any) -> Comment:
    fields: dict[str, Any] = {"id": "c1", "ticket_id": "42", "body": "hello",
                              "visibility": Visibility.INTERNAL, "author": Author(name="Ann"),
                              "created_at": T0}
    fields.update(over)
    return Comment(**fields)


def test_models_are_frozen() -> None:
    """Assigning to a field of a unified model raises instead of mutating shared data."""
    t = ticket()
    with pytest.raises(ValidationError, match="frozen"):
        t.subject = "changed"  # type: ignore[misc]
    c = comment()
    with pytest.raises(ValidationError, match="frozen"):
        c.visibility = Visibility.PUBLIC  # type: ignore[misc]
    assert t.subject == "Login broken" and c.visibility is Visibility.INTERNAL


def test_model_copy_leaves_original_untouched() -> None:
    """Changes are made on copies; the original keeps its values."""
    t = ticket(tags=("bug",))
    t2 = t.model_copy(update={"tags": ("bug", "urgent")})
    assert t.tags == ("bug",) and t2.tags == ("bug", "urgent")


@pytest.mark.parametrize("model,fields", [
    (Ticket, {"id": "1", "subject": "s", "status": OPEN, "created_at": T0, "updated_at": T0}),
    (Author, {"name": "Ann"}),
    (NewComment, {"body": "x", "visibility": "public", "marker": "rs-1"}),
    (TicketUpdate, {}),
    (Cursor, {"watermark": T0}),
])
def test_extra_fields_are_forbidden(model: Any, fields: dict[str, Any]) -> None:
    """An unknown field is rejected, so a typo or a vendor field cannot slip through."""
    model(**fields)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model(**fields, vendor_field="x")


@pytest.mark.parametrize("model,fields,key", [
    (Ticket, {"id": "1", "subject": "s", "status": OPEN, "updated_at": T0}, "created_at"),
    (Ticket, {"id": "1", "subject": "s", "status": OPEN, "created_at": T0}, "updated_at"),
    (Comment, {"id": "c", "ticket_id": "1", "body": "b", "visibility": "public",
               "author": Author()}, "created_at"),
    (Cursor, {}, "watermark"),
    (TicketUpdate, {}, "hold_until"),
])
def test_naive_datetimes_are_rejected(model: Any, fields: dict[str, Any], key: str) -> None:
    """Every datetime field refuses a naive datetime (no implicit local time)."""
    with pytest.raises(ValidationError, match="timezone"):
        model(**fields, **{key: datetime(2026, 3, 1, 9, 30)})
    model(**fields, **{key: datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))})


def test_aware_strings_parse_and_naive_strings_do_not() -> None:
    """ISO strings with an offset parse; ones without are rejected like naive datetimes."""
    assert Cursor(watermark="2026-03-01T09:30:00Z").watermark == T0
    with pytest.raises(ValidationError):
        Cursor(watermark="2026-03-01T09:30:00")


def test_visibility_is_required_on_comments() -> None:
    """A comment cannot be built without stating its visibility."""
    with pytest.raises(ValidationError, match="visibility"):
        Comment(id="c", ticket_id="1", body="b", author=Author(),  # type: ignore[call-arg]
                created_at=T0)
    with pytest.raises(ValidationError):
        comment(visibility="private")


def test_raw_payload_is_kept_but_not_dumped_or_shown() -> None:
    """raw keeps the wire payload for debugging but is excluded from dumps and repr."""
    c = comment(raw={"body": "hello", "secret_field": "zzz"})
    assert c.raw == {"body": "hello", "secret_field": "zzz"}
    assert "raw" not in c.model_dump()
    assert "secret_field" not in repr(c)


def test_change_page_holds_tickets_and_optional_checkpoint() -> None:
    """A ChangePage may carry no checkpoint while the feed cannot vouch for anything yet."""
    page = ChangePage(tickets=(ticket(),))
    assert page.checkpoint is None
    page2 = ChangePage(tickets=(), checkpoint=Cursor(watermark=T0, seen=("1", "2")))
    assert page2.checkpoint is not None and page2.checkpoint.seen == ("1", "2")


def test_fingerprint_ignores_whitespace_differences() -> None:
    """Re-wrapped, re-indented or trailing-space variants of a text share one fingerprint."""
    base = content_fingerprint("Steps:\n1. log in\n2. click save")
    assert content_fingerprint("Steps: 1. log in 2. click save") == base
    assert content_fingerprint("  Steps:\r\n\t1. log in\n\n2.   click save  \n") == base
    assert len(base) == 32 and all(ch in "0123456789abcdef" for ch in base)


def test_fingerprint_sees_real_changes() -> None:
    """Different words, case or punctuation give a different fingerprint."""
    base = content_fingerprint("click save")
    assert content_fingerprint("click Save") != base
    assert content_fingerprint("click save.") != base
    assert content_fingerprint("clicksave") != base
    assert content_fingerprint("") == content_fingerprint(" \n\t ")


def test_fingerprint_handles_non_ascii() -> None:
    """Non-ASCII text is fingerprinted as-is, never scrubbed to ASCII."""
    assert content_fingerprint("café ☕") != content_fingerprint("cafe ☕")
    assert content_fingerprint("日本語  テキスト") == content_fingerprint("日本語 テキスト")


def test_comment_fingerprint_property_matches_function() -> None:
    """Comment.fingerprint is the content fingerprint of its body."""
    c = comment(body="hello   world\n")
    assert c.fingerprint == content_fingerprint("hello world")


def test_enums_are_strings() -> None:
    """States and visibilities compare equal to their wire strings (for storage and config)."""
    assert TicketState("on_hold") is TicketState.ON_HOLD
    assert str(Visibility.INTERNAL) == "internal" and isinstance(Visibility.INTERNAL, str)
    assert comment(visibility="public").visibility is Visibility.PUBLIC
