"""Pure translation between Re:amaze wire models and the unified models.

Conversation status codes (shared/reamaze-api.md §3.1; labels were renamed over time but
the integers stayed):

    code  name                   state
    0     Open                   OPEN
    1     Responded              PENDING
    2     Done                   CLOSED
    3     Spam                   SPAM
    4     Archived               CLOSED
    5     On Hold                ON_HOLD   (writing it requires hold_until)
    6     Auto-Done              CLOSED
    7     AI Agent Assigned      OPEN
    8     AI Agent Done          CLOSED
    9     Spam (AI)              SPAM

Writing a state uses one canonical code: OPEN 0, PENDING 1, CLOSED 2, SPAM 3, ON_HOLD 5.
An unknown code reads as state OPEN named "Unknown (N)" with a warning: OPEN keeps the
conversation visible to people instead of silently closing anything.

Message identity. Re:amaze messages have no id. A comment's id is:

* its ``origin_id`` when present (we always set it to our marker when we write), except
  that only the oldest message of a conversation keeps a given origin_id as its id —
  Re:amaze does not document what a repeated origin_id does, so a later duplicate is
  identified like a message without one;
* otherwise ``"m-" + sha256(slug, created_at in UTC, author email, body)[:20]``, which
  does not change when the same message is re-read with another UTC offset.

Newest-first message pages shift when a message arrives mid-read, so a message can be
listed twice; repeats are dropped by (origin_id, fingerprint). The price: two messages
equal in millisecond, author, body and origin_id are indistinguishable and read as one.

Message visibility: 0 → PUBLIC, 1 → INTERNAL, 2 (collision notice) → INTERNAL and
read-only; any other value → INTERNAL and read-only with a warning (default-deny: an
unreadable flag must never make a note look public).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog

from connectors.reamaze.wire import (
    WireAttachment,
    WireCategory,
    WireChannel,
    WireContact,
    WireConversation,
    WireMessage,
    WireStaff,
    WireUser,
)
from syncer.models import (
    Attachment,
    Author,
    Collection,
    Comment,
    Contact,
    Role,
    Ticket,
    TicketState,
    TicketStatus,
    User,
    Visibility,
)
from syncer.plan import is_our_marker

log = structlog.get_logger("reamaze_sync.reamaze")

MARKER_DATA_KEY = "reamaze_sync_marker"

STATUSES: dict[int, tuple[str, TicketState]] = {
    0: ("Open", TicketState.OPEN),
    1: ("Responded", TicketState.PENDING),
    2: ("Done", TicketState.CLOSED),
    3: ("Spam", TicketState.SPAM),
    4: ("Archived", TicketState.CLOSED),
    5: ("On Hold", TicketState.ON_HOLD),
    6: ("Auto-Done", TicketState.CLOSED),
    7: ("AI Agent Assigned", TicketState.OPEN),
    8: ("AI Agent Done", TicketState.CLOSED),
    9: ("Spam (AI)", TicketState.SPAM),
}
STATE_TO_CODE: dict[TicketState, int] = {
    TicketState.OPEN: 0,
    TicketState.PENDING: 1,
    TicketState.CLOSED: 2,
    TicketState.SPAM: 3,
    TicketState.ON_HOLD: 5,
}
ON_HOLD_CODE = 5

CHANNEL_KINDS: dict[int, str] = {
    1: "email", 2: "twitter", 3: "facebook", 6: "chat", 8: "instagram", 9: "sms",
    10: "voice", 12: "facebook_messenger", 13: "facebook_lead", 14: "instagram_ad",
    15: "whatsapp", 16: "instagram_dm",
}

PUBLIC, INTERNAL, COLLISION = 0, 1, 2


def status_from_code(raw: Any, *, slug: str | None = None) -> TicketStatus:
    code = _as_int(raw)
    if code is not None and code in STATUSES:
        name, state = STATUSES[code]
        return TicketStatus(code=str(code), name=name, state=state)
    log.warning("reamaze_unknown_status", slug=slug, status=str(raw)[:40])
    shown = str(code) if code is not None else str(raw)[:40]
    return TicketStatus(code=shown, name=f"Unknown ({shown})", state=TicketState.OPEN)


def code_for_state(state: TicketState) -> int:
    return STATE_TO_CODE[state]


def _as_int(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        return int(raw.strip())
    return None


def utc_iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def conversation_updated_at(conv: WireConversation) -> datetime:
    """``updated_at``, or (list items may omit it) the newest time the payload shows."""
    if conv.updated_at is not None:
        return conv.updated_at
    times = [conv.created_at]
    for part in (conv.last_customer_message, conv.last_staff_message):
        if part is not None and part.created_at is not None:
            times.append(part.created_at)
    return max(times)


def user_from_wire(user: WireUser | None) -> User | None:
    if user is None or not user.email:
        return None
    return User(id=user.email, name=user.name or user.email, email=user.email)


def collection_from_category(cat: WireCategory | WireChannel | None) -> Collection | None:
    if cat is None or not cat.slug:
        return None
    kind = CHANNEL_KINDS.get(cat.channel) if cat.channel is not None else None
    return Collection(id=cat.slug, name=cat.name or cat.slug, kind=kind, email=cat.email)


def contact_from_author(user: WireUser | None) -> Contact | None:
    if user is None:
        return None
    ident = user.email or user.mobile or user.id
    if ident is None:
        return None
    return Contact(id=ident, name=user.name, email=user.email, mobile=user.mobile)


def _flat_data(data: dict[str, Any]) -> dict[str, str]:
    return {str(k): ("" if v is None else str(v)) for k, v in data.items()}


def ticket_from_wire(conv: WireConversation, *, url: str) -> Ticket:
    data = _flat_data(conv.data)
    marker = data.get(MARKER_DATA_KEY) or None
    return Ticket(
        id=conv.slug,
        subject=conv.subject or "",
        description=conv.message.body if conv.message is not None else None,
        status=status_from_code(conv.status, slug=conv.slug),
        tags=tuple(conv.tag_list),
        assignee=user_from_wire(conv.assignee),
        collection=collection_from_category(conv.category),
        contact=contact_from_author(conv.author),
        created_at=conv.created_at,
        updated_at=conversation_updated_at(conv),
        updated_at_exact=conv.updated_at is not None,
        listed_comments=conv.message_count if (conv.message_count or 0) >= 0 else None,
        last_customer_at=(conv.last_customer_message.created_at
                          if conv.last_customer_message is not None else None),
        url=url,
        data=data,
        marker=marker,
        raw=conv.model_dump(mode="json", by_alias=True),
    )


def fingerprint_id(slug: str, msg: WireMessage) -> str:
    email = (msg.user.email or "") if msg.user is not None else ""
    material = "\x1f".join((slug, utc_iso(msg.created_at), email.lower(), msg.body))
    return "m-" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:20]


def visibility_of(msg: WireMessage, *, slug: str) -> tuple[Visibility, bool]:
    """(visibility, read_only) for a message."""
    code = _as_int(msg.visibility)
    if code == PUBLIC:
        return Visibility.PUBLIC, False
    if code == INTERNAL:
        return Visibility.INTERNAL, False
    if code != COLLISION:
        log.warning("reamaze_unknown_visibility", slug=slug, visibility=str(msg.visibility)[:40])
    return Visibility.INTERNAL, True


def attachment_from_wire(att: WireAttachment) -> Attachment:
    name = att.file_file_name
    if not name and att.url:
        name = unquote(urlsplit(att.url).path.rsplit("/", 1)[-1])
    return Attachment(name=name or "attachment", content_type=att.file_content_type,
                      size=att.file_file_size, url=att.url)


def comment_from_wire(slug: str, msg: WireMessage, *, comment_id: str) -> Comment:
    visibility, read_only = visibility_of(msg, slug=slug)
    user = msg.user
    author = Author(
        name=user.name if user else None,
        email=user.email if user else None,
        is_staff=bool(user.staff) if user else False,
        id=user.email if user else None,
    )
    return Comment(
        id=comment_id,
        ticket_id=slug,
        body=msg.body,
        body_html=msg.original_body or None,
        visibility=visibility,
        author=author,
        created_at=msg.created_at,
        attachments=tuple(attachment_from_wire(a) for a in msg.attachments),
        marker=msg.origin_id if is_our_marker(msg.origin_id) else None,
        read_only=read_only,
        raw=msg.model_dump(mode="json", by_alias=True),
    )


def comments_from_wire(slug: str, messages: list[WireMessage]) -> list[Comment]:
    """Oldest first, duplicates from shifting pages dropped, ids assigned (see module doc)."""
    unique: dict[tuple[str | None, str], WireMessage] = {}
    for msg in messages:
        unique.setdefault((msg.origin_id, fingerprint_id(slug, msg)), msg)
    # Newest-first pages: reversing before the stable sort keeps equal timestamps in
    # creation order.
    ordered = sorted(reversed(list(unique.values())), key=lambda m: m.created_at)
    used: set[str] = set()
    out: list[Comment] = []
    for msg in ordered:
        cid = msg.origin_id if msg.origin_id and msg.origin_id not in used else None
        cid = cid or fingerprint_id(slug, msg)
        used.add(cid)
        out.append(comment_from_wire(slug, msg, comment_id=cid))
    return out


def contact_from_wire(c: WireContact) -> Contact | None:
    ident = c.email or c.mobile or c.id or c.internal_id
    if ident is None:
        return None
    return Contact(id=ident, name=c.name, email=c.email, mobile=c.mobile,
                   data=_flat_data(c.data), created_at=c.created_at, updated_at=c.updated_at)


def role_from_hash(role: dict[str, Any]) -> Role | None:
    """The staff ``role`` hash (not an API resource; keys "may change")."""
    if not role:
        return None
    name = role.get("name")
    rid = role.get("id")
    perms = role.get("permissions")
    permissions = dict(perms) if isinstance(perms, dict) else {
        k: v for k, v in role.items() if k not in ("id", "name", "description")}
    if rid is None or isinstance(rid, bool):
        digest = hashlib.sha256(repr(sorted(permissions.items())).encode()).hexdigest()[:12]
        rid = name if isinstance(name, str) and name else "role-" + digest
    return Role(id=str(rid), name=str(name) if name else str(rid), permissions=permissions)


def user_from_staff(s: WireStaff) -> User:
    return User(id=s.email, name=s.name or s.display_name or s.email, email=s.email,
                role=role_from_hash(s.role))
