"""Unified, frozen models shared by every connector and the reconciler.

They mirror the unified ticketing resources (Ticket, Comment, Contact, User, Role,
Attachment, Collection, TicketStatus). Connectors translate their wire formats into these
and never leak vendor shapes past the boundary; ``raw`` keeps the payload for debugging.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Visibility(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"


class TicketState(StrEnum):
    """System-neutral lifecycle state; each connector maps its own codes onto these."""

    OPEN = "open"
    PENDING = "pending"  # waiting on the customer / responded
    ON_HOLD = "on_hold"
    CLOSED = "closed"
    SPAM = "spam"


class TicketStatus(Frozen):
    code: str  # the system's own id ("2", "5", "Closed")
    name: str
    state: TicketState


class Role(Frozen):
    id: str
    name: str
    permissions: dict[str, Any] = Field(default_factory=dict)


class User(Frozen):
    """A staff member / tracker user."""

    id: str
    name: str
    email: str | None = None
    role: Role | None = None


class Contact(Frozen):
    """A customer."""

    id: str
    name: str | None = None
    email: str | None = None
    mobile: str | None = None
    data: dict[str, str] = Field(default_factory=dict)
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None


class Collection(Frozen):
    """A channel (Re:amaze) or project (tracker)."""

    id: str
    name: str
    kind: str | None = None
    email: str | None = None


class Attachment(Frozen):
    name: str
    content_type: str | None = None
    size: int | None = None
    url: str | None = None


class Author(Frozen):
    name: str | None = None
    email: str | None = None
    is_staff: bool = False
    id: str | None = None


class Comment(Frozen):
    id: str  # stable identity within its ticket (see each connector for how it is made)
    ticket_id: str
    body: str
    # The same message as HTML when the source has it (Re:amaze's ``original_body``):
    # its structure (lists, links, code, quotes) is what a tracker copy is written from.
    body_html: str | None = None
    visibility: Visibility
    author: Author
    created_at: AwareDatetime
    attachments: tuple[Attachment, ...] = ()
    marker: str | None = None  # our idempotency key when we wrote this comment
    read_only: bool = False  # e.g. Re:amaze collision messages: read, never written or copied
    raw: dict[str, Any] | None = Field(default=None, repr=False, exclude=True)

    @property
    def fingerprint(self) -> str:
        return content_fingerprint(self.body)


class Ticket(Frozen):
    """A Re:amaze conversation or a tracker issue."""

    id: str
    subject: str
    description: str | None = None
    status: TicketStatus
    tags: tuple[str, ...] = ()
    assignee: User | None = None
    collection: Collection | None = None
    contact: Contact | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    # False when the source did not say when the ticket last changed (a Re:amaze list item
    # without ``updated_at``): ``updated_at`` is then its newest message's time, which a
    # status or tag change does not move.
    updated_at_exact: bool = True
    # How many messages the source says the ticket has (Re:amaze ``message_count``, not in
    # its documentation) and when its customer last wrote; None when it did not say.
    listed_comments: int | None = None
    last_customer_at: AwareDatetime | None = None
    url: str | None = None
    data: dict[str, str] = Field(default_factory=dict)
    marker: str | None = None  # our idempotency key when we created this ticket
    author_id: str | None = None  # who created it, as the connector names users
    raw: dict[str, Any] | None = Field(default=None, repr=False, exclude=True)


class FileData(Frozen):
    """A file's content, fetched to be uploaded with a copy."""

    name: str
    content_type: str | None = None
    data: bytes = Field(repr=False)


class NewComment(Frozen):
    body: str
    visibility: Visibility
    marker: str  # idempotency key; stored on the remote so a retry can find it
    author_name: str | None = None
    attachments: tuple[Attachment, ...] = ()
    notify_customer: bool = False
    # The attachments' contents, fetched by the applier just before the write for a tracker
    # that takes uploads; never journalled (intents keep the links, not the bytes).
    files: tuple[FileData, ...] = Field(default=(), exclude=True, repr=False)


class NewTicket(Frozen):
    subject: str
    description: str
    marker: str
    tags: tuple[str, ...] = ()
    assignee_id: str | None = None
    state: TicketState | None = None


class TicketUpdate(Frozen):
    """Fields left as None are not touched."""

    state: TicketState | None = None
    # The tracker's own status id to set (a [pairs.status] table entry); ``state`` still
    # says whether it is a closed one. None: the connector picks its close/reopen status.
    status_code: str | None = None
    tags: tuple[str, ...] | None = None
    assignee_id: str | None = None
    hold_until: AwareDatetime | None = None


class NewConversation(Frozen):
    """A conversation the sync opens for a tracker issue (reverse creation)."""

    issue_id: str  # the tracker issue it is opened for (kept with the marker)
    subject: str
    opening: str  # the first message; it may be public (see ``syncer.reconcile_reverse``)
    contact_email: str
    category: str | None = None  # channel slug; None: the connector's default channel
    tags: tuple[str, ...] = ()
    marker: str


class Cursor(Frozen):
    """A change-feed position: everything changed before ``watermark`` has been handled,
    and the ids in ``seen`` (changed exactly at the boundary) too."""

    watermark: AwareDatetime
    seen: tuple[str, ...] = ()
    # Where a second listing of the same feed stands (GitHub's repository-wide comment
    # listing: comment edits do not move their issue); its keys are in ``seen`` too.
    comments: AwareDatetime | None = None


class SweepPosition(Frozen):
    """Where a pair's anti-entropy sweep stands: it verifies links in id order, so a
    restart continues after the last one verified."""

    after_link: int = 0  # id of the last link verified in the current round
    rounds: int = 0  # rounds completed (every active link verified once)
    round_started_at: AwareDatetime | None = None
    last_round_seconds: float | None = None  # how long the last completed round took
    recent_page: int = 0  # the page of recently active conversations read last


class ChangePage(Frozen):
    tickets: tuple[Ticket, ...]
    # Safe to save once this page's work is durable; None while the feed cannot yet vouch
    # for anything (e.g. a newest-first walk that has not reached its end).
    checkpoint: Cursor | None = None
    # How many tickets the whole listing holds, when the feed's API says (Re:amaze's
    # ``total_count``): a backfill's progress shows it. The walk may stop earlier (at the
    # cursor or ``since``), so it is an upper bound on what this walk reads.
    total: int | None = None


# The ``data`` key of a conversation opened for a tracker issue that names the issue (its
# marker proves it): a conversation whose link the state lost is tied to it again.
REVERSE_ISSUE_DATA_KEY = "reamaze_sync_issue"


def custom_field_key(field_id: int) -> str:
    """Where a tracker custom field's value is kept in ``Ticket.data`` (single values)."""
    return f"custom_field:{field_id}"


def content_fingerprint(text: str) -> str:
    """Whitespace-insensitive hash used for echo detection and edit detection."""
    normal = " ".join(text.split())
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()[:32]
