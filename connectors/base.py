"""The connector contract: what the sync engine needs from each side.

Connectors speak one outside API and translate to ``syncer.models``; they hold no sync
logic. Capabilities are declared, so the reconciler can decide (e.g. never send internal
content to a tracker that cannot keep a comment private) without knowing the vendor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from syncer.errors import FatalError, RateLimitedError, SyncError, TransientError
from syncer.markup import Markup
from syncer.models import (
    Attachment,
    ChangePage,
    Comment,
    Cursor,
    NewComment,
    NewConversation,
    NewTicket,
    Ticket,
    TicketStatus,
    TicketUpdate,
)


@dataclass(frozen=True)
class Capabilities:
    private_comments: bool  # can hold a comment invisible to the public/customers
    edit_comments: bool = False
    labels: bool = True
    assignee: bool = True
    attachments_upload: bool = False
    markdown_markers: bool = False  # hidden HTML comments survive rendering
    delete_comments: bool = False  # a leaked copy can be removed through the API
    # The file URLs it reports download without a login, so Re:amaze (which attaches a
    # file only by fetching its URL) can take them. False: a copy names each file instead.
    fetchable_attachment_urls: bool = False
    # How the tracker renders what we write: text from outside is escaped for it.
    markup: Markup = "plain"


@dataclass
class CommentBatch:
    """What a batch of comment writes to one ticket did.

    ``created``: written and confirmed, in order. ``not_written``: markers of comments
    that certainly are not on the remote (never sent, refused, or removed again). Any other
    comment of the batch may or may not have landed (the error came in between); the
    caller keeps its intent pending so recovery looks for its marker. ``error`` is what
    stopped the batch.

    ``ticket`` and ``comments``: the ticket and all its comments as the connector read
    them back after its last write, when it does (Redmine must, to learn the note ids);
    None when it did not or the read failed. They tell the engine which version of the
    ticket its writes left, and whether someone else wrote there meanwhile.
    """

    created: list[Comment] = field(default_factory=list)
    not_written: list[str] = field(default_factory=list)
    error: SyncError | None = None
    ticket: Ticket | None = None
    comments: tuple[Comment, ...] = ()


def never_reached(exc: SyncError) -> bool:
    """The write that raised ``exc`` certainly did not take effect: the server answered
    that it refused or did not process it, or no connection was ever made. Anything else
    (a timeout, a 5xx, an unreadable answer) may have landed."""
    return isinstance(exc, FatalError | RateLimitedError) or (
        isinstance(exc, TransientError) and not exc.maybe_sent)


def create_one_by_one(create: Callable[[str, NewComment], Comment], ticket_id: str,
                      news: Sequence[NewComment]) -> CommentBatch:
    """``create_comments`` for an API with nothing better than one request per comment."""
    batch = CommentBatch()
    for n, new in enumerate(news):
        try:
            batch.created.append(create(ticket_id, new))
        except SyncError as exc:
            batch.not_written += [c.marker for c in news[n if never_reached(exc) else n + 1:]]
            batch.error = exc
            break
    return batch


@runtime_checkable
class Connector(Protocol):
    """Both sides: Re:amaze (helpdesk) and every tracker."""

    name: str
    capabilities: Capabilities

    def iter_changes(self, since: Cursor | None) -> Iterator[ChangePage]:
        """Tickets changed at or after ``since`` (overlap included, boundary de-duplicated).

        The last page's checkpoint is the new cursor; it never points past what was read.
        """
        ...

    def get_ticket(self, ticket_id: str) -> Ticket: ...

    def read_ticket(self, ticket_id: str) -> tuple[Ticket, list[Comment]]:
        """The ticket and its comments, in as few requests as the API allows."""
        ...

    def create_ticket(self, new: NewTicket) -> Ticket: ...

    def update_ticket(self, ticket_id: str, update: TicketUpdate) -> Ticket: ...

    def list_comments(self, ticket_id: str) -> list[Comment]: ...

    def create_comment(self, ticket_id: str, new: NewComment) -> Comment: ...

    def create_comments(self, ticket_id: str, news: Sequence[NewComment]) -> CommentBatch:
        """Several comments on one ticket, in order; errors are reported, not raised."""
        ...

    def find_ticket_by_marker(self, marker: str) -> Ticket | None:
        """Recovery after a crash: the ticket we created with this idempotency key, if any."""
        ...

    def find_comment_by_marker(self, ticket_id: str, marker: str) -> Comment | None: ...

    def update_comment(self, ticket_id: str, comment_id: str, body: str) -> Comment:
        """Rewrite a comment the engine wrote, keeping its marker and its visibility; the
        comment as read back after. Raises ``RejectedError`` where the API cannot edit
        comments (``capabilities.edit_comments`` is False)."""
        ...

    def delete_comment(self, ticket_id: str, comment_id: str) -> None:
        """Remove a comment the engine wrote (a copy that must not stay). Raises
        ``RejectedError`` where the API cannot delete comments."""
        ...

    def whoami(self) -> str:
        """The API user's id, as this connector reports comment and ticket authors: only
        what this user wrote can be the engine's own."""
        ...

    def ticket_url(self, ticket_id: str) -> str: ...

    def check(self) -> str:
        """Verify credentials and permissions; return a one-line description of who we are."""
        ...


@runtime_checkable
class TellsTime(Protocol):
    """A tracker whose connector knows the server's wall time: the clock its change feed
    settles whole-second change times by (injected, or the host's by default)."""

    now: Callable[[], datetime]


def server_now(connector: object) -> datetime | None:
    """The wall time of the server behind ``connector``, as its feed reads it; None when
    the connector does not tell it (nothing can then be taken as settled)."""
    return connector.now() if isinstance(connector, TellsTime) else None


@runtime_checkable
class FetchesAttachments(Protocol):
    """A helpdesk whose message attachments can be fetched, to upload them to a tracker."""

    def fetch_attachment(self, attachment: Attachment, max_bytes: int) -> bytes: ...


@runtime_checkable
class FiltersChanges(Protocol):
    """A helpdesk whose change listing can be narrowed to tags or channels (a backfill of a
    pair whose rules name only those reads just their conversations)."""

    def iter_changes_where(self, since: Cursor | None, *, tags: Sequence[str] = (),
                           channels: Sequence[str] = ()) -> Iterator[ChangePage]: ...


class MessageSource(Protocol):
    """Messages read ahead for the conversations a walk is about to look at."""

    def messages_for(self, ticket: Ticket) -> list[Comment] | None:
        """Its messages, complete as its list item counts them; None: read it alone."""
        ...


@runtime_checkable
class PrefetchesMessages(Protocol):
    """A helpdesk that lists messages across conversations by tag, so a backfill reads
    many conversations' messages a request (``connectors.reamaze.prefetch``)."""

    def message_prefetch(self, tags: Sequence[str]) -> MessageSource: ...


@runtime_checkable
class SharesChanges(Protocol):
    """A connector whose change listing several pairs read alike (the Re:amaze brand): each
    pair reads it as ``reader`` so a page one pair just read serves the others
    (``connectors.shared_reads``)."""

    def iter_changes_for(self, reader: str, since: Cursor | None) -> Iterator[ChangePage]: ...


@runtime_checkable
class ListsStatuses(Protocol):
    """A tracker whose statuses a pair's status table may name (by name or id)."""

    def list_statuses(self) -> list[TicketStatus]: ...


@runtime_checkable
class ListsRecent(Protocol):
    """A helpdesk that can list its recently active tickets, a page at a time."""

    def recent_tickets(self, page: int) -> list[Ticket]: ...


@runtime_checkable
class DownloadsAttachments(Protocol):
    """A tracker that hands out its files' bytes to the API user (the daemon's file relay
    serves them to Re:amaze, see ``syncer.relay``)."""

    def download_attachment(self, attachment: Attachment) -> bytes: ...


@runtime_checkable
class OpensConversations(Protocol):
    """A helpdesk that can open a conversation for a contact (reverse creation)."""

    def open_conversation(self, new: NewConversation) -> Ticket:
        """Find or create the contact, then open the conversation keyed by ``new.marker``,
        emailing no one. A create whose answer never came is looked up by its key before
        anything is sent again."""
        ...
