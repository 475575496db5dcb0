"""What the reconciler sees and what it decides: plain frozen values, no I/O.

``Side.HELPDESK`` is Re:amaze, ``Side.TRACKER`` the issue tracker of the pair.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, field_validator

from syncer.models import (
    Comment,
    NewComment,
    NewTicket,
    Ticket,
    TicketState,
    TicketUpdate,
    Visibility,
)

MARKER_PREFIX = "rs-"


class Side(StrEnum):
    HELPDESK = "helpdesk"
    TRACKER = "tracker"

    @property
    def other(self) -> Side:
        return Side.TRACKER if self is Side.HELPDESK else Side.HELPDESK


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def is_our_marker(marker: str | None) -> bool:
    """Shaped like one of our markers (see ``syncer.markers``): worth checking, not proof."""
    return bool(marker) and str(marker).startswith(MARKER_PREFIX)


def description_target(issue_id: str) -> str:
    """The comment-link target of a message written into the issue's description. Not a
    comment id: the reconciler never treats it as one (see ``_sync_link``)."""
    return f"{issue_id}:description"


# --- inputs ---------------------------------------------------------------------------

# The fingerprint a comment link keeps once its source was deleted and that was told to
# the other side: no content hashes to it (fingerprints are hex).
GONE = "gone"


class CommentLinkView(_Frozen):
    source_side: Side
    source_id: str
    target_id: str
    # Of the source body as copied, or as last reported (an edit told to the other side),
    # or GONE.
    fingerprint: str
    visibility: Visibility = Visibility.PUBLIC  # of the copy as it was written


class Snapshot(_Frozen):
    """Field values both sides agreed on at the last successful sync of a link."""

    helpdesk_state: TicketState | None = None
    tracker_state: TicketState | None = None
    # The tracker status id, kept only for pairs whose status table names tracker statuses
    # (a move between two open statuses is a change only to them). None: not known, and a
    # change is then told by the state alone.
    tracker_status: str | None = None
    helpdesk_tags: tuple[str, ...] = ()
    tracker_labels: tuple[str, ...] = ()
    helpdesk_assignee: str | None = None  # staff email
    tracker_assignee: str | None = None  # tracker user id
    # Change times seen at that sync: an object whose change time has not moved since
    # needs no reconciliation (keeps idle polls and re-run backfills cheap).
    helpdesk_updated_at: str | None = None
    tracker_updated_at: str | None = None
    # Replies emailed because the issue closed, so far: numbers the next one's key.
    close_replies: int = 0
    # What the conversation's list item shows after this sync if nothing but the sync's
    # own writes happened: its message count (the messages read plus those written) and
    # when its customer last wrote. The count is trusted once an item was seen to count
    # exactly the messages read, internal notes among them: Re:amaze does not document
    # ``message_count``, and one that left notes out would hide a staff note.
    helpdesk_messages: int | None = None
    helpdesk_count_trusted: bool = False
    helpdesk_last_customer: str | None = None


class LinkView(_Frozen):
    conversation_id: str
    issue_id: str | None  # None while the issue create is pending
    status: str = "active"  # active | orphaned | unlinked
    origin: Side = Side.HELPDESK
    comment_links: tuple[CommentLinkView, ...] = ()
    snapshot: Snapshot | None = None


class SideView(_Frozen):
    ticket: Ticket
    comments: tuple[Comment, ...] = ()
    # The sync's own API user on this side (author id as the connector reports it): only
    # what this user wrote can be the engine's own copy. None: unknown, nothing is ours.
    me: str | None = None
    # The ticket was rebuilt from the last sync's snapshot instead of read (a change seen
    # on the other side only), and whether the comments were read at all.
    from_snapshot: bool = False
    comments_read: bool = True

    def wrote(self, comment: Comment) -> bool:
        return self.me is not None and comment.author.id is not None and \
            comment.author.id.casefold() == self.me.casefold()


# --- actions --------------------------------------------------------------------------

class CoveredComment(_Frozen):
    """A helpdesk message written into the new issue's description instead of a note."""

    source_id: str
    fingerprint: str
    visibility: Visibility

    @field_validator("visibility")
    @classmethod
    def _public_only(cls, v: Visibility) -> Visibility:
        # Whoever can see the issue sees its description: nothing else may go there.
        if v is not Visibility.PUBLIC:
            raise ValueError("an issue description cannot be private")
        return v


class CreateIssue(_Frozen):
    conversation_id: str
    new: NewTicket
    # Recorded as copied with the issue itself, so they are never sent again as notes.
    covered: tuple[CoveredComment, ...] = ()


class CopyEdit(_Frozen):
    """A copied comment's source changed (or went): once the note telling so is written,
    its comment link records ``fingerprint``, so the change is told once."""

    source_side: Side
    source_id: str
    fingerprint: str  # the source's new fingerprint, or GONE


class AddComment(_Frozen):
    conversation_id: str
    target: Side
    ticket_id: str | None  # None: the issue created earlier in the same plan
    source_id: str  # comment id on the other side ("" for notes the engine writes itself)
    new: NewComment
    source_fingerprint: str = ""
    edit: CopyEdit | None = None  # this note tells of an edit or delete of a copied comment


class UpdateComment(_Frozen):
    """Rewrite the engine's copy of a comment whose source was edited. Idempotent (the
    same text again), so it needs no intent: a crash before the new fingerprint is
    recorded only sends the same text once more."""

    conversation_id: str
    target: Side
    ticket_id: str
    comment_id: str
    body: str
    visibility: Visibility  # the copy's, kept: checked on the read-back
    edit: CopyEdit


class UpdateTicket(_Frozen):
    conversation_id: str
    target: Side
    ticket_id: str
    update: TicketUpdate
    reason: str


class PostLinkNote(_Frozen):
    """Internal note on the conversation pointing at its issue (URL known only after create)."""

    conversation_id: str
    marker: str


class AdoptIssue(_Frozen):
    """Record the link to an issue the engine created earlier (recognised by its marker
    and author) whose link the state had lost."""

    conversation_id: str
    issue_id: str
    # Which side the link was made from: a conversation opened for an issue (reverse
    # creation) is the tracker's.
    origin: Side = Side.HELPDESK


class AdoptComment(_Frozen):
    """Record the link between a comment and its copy, found by the copy's marker and
    author, without sending anything."""

    conversation_id: str
    source_side: Side
    source_id: str
    target_id: str
    visibility: Visibility
    fingerprint: str
    edit: CopyEdit | None = None  # the copy is a note telling of this edit or delete


class RemoveComment(_Frozen):
    """Delete a copy the engine wrote that must not stay (an internal note that came back
    public)."""

    conversation_id: str
    target: Side
    ticket_id: str
    comment_id: str
    reason: str


class Untrusted(_Frozen):
    """A comment carries what looks like our marker but cannot be proven ours (another
    author, another conversation): it is treated as a person's comment, and reported."""

    conversation_id: str
    object_id: str
    reason: str


class MarkOrphaned(_Frozen):
    conversation_id: str
    reason: str


class SaveSnapshot(_Frozen):
    conversation_id: str
    snapshot: Snapshot


class Skip(_Frozen):
    """Something deliberately not done, kept in the plan so it can be explained."""

    conversation_id: str
    object_id: str
    reason: str


class Conflict(_Frozen):
    conversation_id: str
    field: str
    helpdesk_value: str
    tracker_value: str
    winner: Side


class OpenConversation(_Frozen):
    """What reverse creation would do for an unlinked issue (a dry run's plan). The pass
    itself does it in ``syncer.runner_reverse``, never through the applier: the
    conversation id it is recorded under does not exist before the create."""

    conversation_id: str  # ``syncer.markers.reverse_key`` of the issue
    issue_id: str
    detail: str


Action = (CreateIssue | AddComment | PostLinkNote | UpdateTicket | MarkOrphaned | SaveSnapshot
          | Skip | Conflict | AdoptIssue | AdoptComment | RemoveComment | Untrusted
          | UpdateComment | OpenConversation)


class Plan(_Frozen):
    pair: str
    actions: tuple[Action, ...] = ()

    @property
    def writes(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions
                     if isinstance(a, CreateIssue | AddComment | PostLinkNote | UpdateTicket
                                   | RemoveComment | UpdateComment | OpenConversation))

    def __add__(self, other: Plan) -> Plan:
        return Plan(pair=self.pair, actions=self.actions + other.actions)
