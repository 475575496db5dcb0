"""Reverse creation, decided: a tracker issue without a link that matches the pair's
``[pairs.reverse]`` rule gets a Re:amaze conversation.

Pure, like ``syncer.reconcile``: the runner reads, this decides, ``syncer.apply_reverse``
writes. Invariants (unit- and property-tested):

* nothing reaches a customer: the conversation is opened with a fixed, content-free
  message (``OPENING``) with notifications suppressed (Re:amaze documents no way to make
  the first message of ``POST /conversations`` a note, so it may be public); the issue's
  text goes only into an internal note posted through the documented note write, which
  the connector reads back and refuses to keep public;
* one conversation per issue: the create is keyed by the issue (``Markers.
  reverse_conversation``), and a conversation carrying that key is adopted, never made
  a second time;
* an issue already linked is never looked at here, so a label removed later changes
  nothing: from its creation on, the link syncs like any other;
* an issue the sync itself created for a conversation (it carries our marker) never gets
  a conversation, whatever the state knows.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from syncer.config_reverse import EMAIL_RE, ReverseRules
from syncer.models import (
    REVERSE_ISSUE_DATA_KEY,
    Comment,
    NewComment,
    NewConversation,
    Ticket,
    TicketUpdate,
    Visibility,
    content_fingerprint,
    custom_field_key,
)
from syncer.plaintext import markup_to_text
from syncer.plan import (
    Action,
    AddComment,
    AdoptComment,
    AdoptIssue,
    CommentLinkView,
    LinkView,
    Plan,
    RemoveComment,
    Side,
    SideView,
    UpdateTicket,
    description_target,
    is_our_marker,
)
from syncer.reconcile import PairContext, reconcile
from syncer.reconcile_status import flows
from syncer.render import neutralise_mentions

OPENING = ("Conversation opened by reamaze-sync for an issue on the tracker. "
           "The details are in the internal notes.")
# A line of its own in the issue's description: "Customer: carol@example.com", also quoted,
# in a list, emphasised or with the address in angle brackets (as Markdown writes them).
_ADDRESS = r"[^@\s<>*_`]+@[^@\s<>*_`]+\.[^@\s<>*_`]+"
_CUSTOMER_RE = re.compile(rf"^[ \t>*_-]*customer[ \t*_]*:[ \t*_]*<?({_ADDRESS})>?[ \t*_]*$",
                          re.IGNORECASE | re.MULTILINE)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CreateConversation(_Frozen):
    issue_id: str
    new: NewConversation
    reason: str  # the rule that matched
    contact_from: str  # "issue" (its Customer line) or "fallback_contact"


class AdoptConversation(_Frozen):
    """The conversation made for this issue earlier (found by its key) whose link the
    state does not have: recorded again, never created a second time."""

    issue_id: str
    conversation_id: str


class NoConversation(_Frozen):
    issue_id: str
    reason: str


ReverseAction = CreateConversation | AdoptConversation | NoConversation


def reverse_match(rules: ReverseRules, issue: Ticket) -> str | None:
    """Why this issue should get a conversation, or None."""
    if not rules.enabled:
        return None
    hit = sorted(set(rules.labels) & set(issue.tags))
    if hit:
        return f"label {hit[0]!r}"
    tracker = issue.data.get("tracker_id")
    if tracker is not None and tracker.isdigit() and int(tracker) in rules.tracker_ids:
        return f"tracker {issue.data.get('tracker', tracker)!r}"
    return None


def contact_for(rules: ReverseRules, issue: Ticket) -> tuple[str | None, str]:
    """The customer the issue names (the custom field ``contact_field_id``, then its first
    ``Customer: email`` line), else the configured fallback; and where it came from."""
    if rules.contact_field_id is not None:
        value = issue.data.get(custom_field_key(rules.contact_field_id), "").strip()
        if re.fullmatch(EMAIL_RE, value):
            return value, "custom_field"
    found = _CUSTOMER_RE.search(issue.description or "")
    if found is not None:
        return found.group(1), "issue"
    return rules.fallback_contact, "fallback_contact"


def reconcile_reverse(ctx: PairContext, issue: Ticket,
                      found: Ticket | None = None) -> ReverseAction:
    """An issue without a link: create its conversation, adopt the one ``found`` by the
    issue's key (the state lost the link), or do nothing."""
    rules = ctx.policy.reverse
    why = reverse_match(rules, issue)
    if why is None:
        return NoConversation(issue_id=issue.id, reason="does not match the pair's reverse rule"
                              if rules.enabled else "reverse creation is off")
    if is_our_marker(issue.marker):
        # An issue the sync made for a conversation, whose link this state does not know
        # (lost, restored, not recovered yet): that conversation exists already. Any
        # marker-shaped tag is enough to hold back: not creating is the safe side.
        return NoConversation(issue_id=issue.id, reason="the sync created this issue for a "
                              "conversation; it gets no second one")
    marker = ctx.markers.reverse_conversation(issue.id)
    if found is not None and found.marker == marker:
        return AdoptConversation(issue_id=issue.id, conversation_id=found.id)
    email, source = contact_for(rules, issue)
    if email is None:  # the config refuses an enabled rule without a fallback
        return NoConversation(issue_id=issue.id, reason="no contact: the issue names no "
                              "customer and fallback_contact is not set")
    return CreateConversation(
        issue_id=issue.id, reason=why, contact_from=source,
        new=NewConversation(issue_id=issue.id,
                            subject=issue.subject.strip() or f"Issue #{issue.id}",
                            opening=OPENING, contact_email=email,
                            category=rules.category, tags=tuple(rules.tags), marker=marker))


# --- a link made by reverse creation --------------------------------------------------

def opening_source(issue_id: str) -> str:
    """The comment-link source id of the opening message: it is the sync's, not a
    customer's, and is never copied to the tracker."""
    return f"{issue_id}:opening"


def details_note(ctx: PairContext, issue: Ticket, contact: str | None) -> str:
    lines = [f"{ctx.tracker_name} issue #{issue.id} opened this conversation"
             + (f": {issue.url}" if issue.url else "."), "", f"**{issue.subject}**"]
    if issue.description and issue.description.strip():
        # Read as the tracker shows it, as every tracker note copied to Re:amaze is.
        lines += ["", markup_to_text(ctx.tracker_caps.markup, issue.description).strip()]
    if contact:
        lines += ["", f"Contact: {contact}"]
    return neutralise_mentions("\n".join(lines))


def reverse_link_plan(ctx: PairContext, conversation: SideView, issue: SideView,
                      link: LinkView) -> tuple[LinkView, tuple[Action, ...]]:
    """For a link reverse creation made (origin: the tracker): what the link's own
    reconcile needs on top, and the link as it should see it.

    The opening message is recorded as the sync's (found as the first message with the
    fixed text), so it is never copied to the issue; the issue's details go as one
    internal note, keyed so a repeat finds it; the issue's assignee is carried over once,
    when the link has no field history yet."""
    if link.origin is not Side.TRACKER or link.issue_id is None:
        return link, ()
    cid, iid = conversation.ticket.id, issue.ticket.id
    have = {(c.source_side, c.source_id) for c in link.comment_links}
    added: list[CommentLinkView] = []
    actions: list[Action] = []
    opening = _opening(conversation)
    if (Side.TRACKER, opening_source(iid)) not in have and opening is not None:
        actions.append(AdoptComment(conversation_id=cid, source_side=Side.TRACKER,
                                    source_id=opening_source(iid), target_id=opening.id,
                                    visibility=opening.visibility, fingerprint=""))
        added.append(CommentLinkView(source_side=Side.TRACKER, source_id=opening_source(iid),
                                     target_id=opening.id, fingerprint="",
                                     visibility=opening.visibility))
    source = description_target(iid)
    if (Side.TRACKER, source) not in have:
        actions += _details(ctx, conversation, issue.ticket, source, added)
    if link.snapshot is None and conversation.ticket.assignee is None \
            and issue.ticket.assignee is not None \
            and flows(ctx.policy.assignee_field.direction, Side.HELPDESK):
        staff = _staff_for(ctx, issue.ticket.assignee.id)
        if staff is not None:
            actions.append(UpdateTicket(conversation_id=cid, target=Side.HELPDESK,
                                        ticket_id=cid, update=TicketUpdate(assignee_id=staff),
                                        reason="assignee of the issue that opened it"))
    if not added:
        return link, tuple(actions)
    return link.model_copy(update={"comment_links": link.comment_links + tuple(added)}), \
        tuple(actions)


def _details(ctx: PairContext, conversation: SideView, issue: Ticket, source: str,
             added: list[CommentLinkView]) -> list[Action]:
    cid = conversation.ticket.id
    marker = ctx.markers.comment(cid, Side.TRACKER, source)
    mine = next((c for c in conversation.comments
                 if c.marker == marker and conversation.wrote(c)), None)
    fingerprint = _fingerprint(issue)
    if mine is None:
        contact = conversation.ticket.contact.email if conversation.ticket.contact else None
        return [AddComment(conversation_id=cid, target=Side.HELPDESK, ticket_id=cid,
                           source_id=source, source_fingerprint=fingerprint,
                           new=NewComment(body=details_note(ctx, issue, contact),
                                          visibility=Visibility.INTERNAL, marker=marker))]
    if mine.visibility is Visibility.PUBLIC:  # never kept as good
        return [RemoveComment(conversation_id=cid, target=Side.HELPDESK, ticket_id=cid,
                              comment_id=mine.id,
                              reason="the internal note of an issue's details is public")]
    added.append(CommentLinkView(source_side=Side.TRACKER, source_id=source,
                                 target_id=mine.id, fingerprint=fingerprint,
                                 visibility=mine.visibility))
    return [AdoptComment(conversation_id=cid, source_side=Side.TRACKER, source_id=source,
                         target_id=mine.id, visibility=mine.visibility,
                         fingerprint=fingerprint)]


def opens_with_the_sync(conversation: SideView) -> bool:
    """Its first message is reverse creation's opening: worth reading the conversation's
    ``data`` to see whether it was opened for an issue (a list item does not show it)."""
    return _opening(conversation) is not None


def reverse_issue_of(ctx: PairContext, conversation: Ticket) -> str | None:
    """The issue reverse creation opened this conversation for, proven by the key in its
    ``data`` (keyed with the installation's secret, so it cannot be planted); None for any
    other conversation."""
    iid = conversation.data.get(REVERSE_ISSUE_DATA_KEY)
    if iid and conversation.marker == ctx.markers.reverse_conversation(iid):
        return iid
    return None


def readopt(ctx: PairContext, conversation: SideView, issue: SideView) -> Plan:
    """A conversation reverse creation opened, whose link the state lost, found from the
    Re:amaze side: linked to its issue again (never given an issue of its own), and synced
    as its link would be."""
    cid, iid = conversation.ticket.id, issue.ticket.id
    link = LinkView(conversation_id=cid, issue_id=iid, origin=Side.TRACKER)
    seen, extra = reverse_link_plan(ctx, conversation, issue, link)
    plan = reconcile(ctx, conversation, issue, seen)
    return Plan(pair=ctx.pair, actions=(
        AdoptIssue(conversation_id=cid, issue_id=iid, origin=Side.TRACKER), *extra,
        *plan.actions))


def _opening(conversation: SideView) -> Comment | None:
    first = min(conversation.comments, key=lambda c: (c.created_at, c.id), default=None)
    return first if first is not None and first.body.strip() == OPENING else None


def _fingerprint(issue: Ticket) -> str:
    return content_fingerprint(f"{issue.subject}\n{issue.description or ''}")


def _staff_for(ctx: PairContext, user_id: str) -> str | None:
    return next((email for email, uid in ctx.policy.staff_to_user.items() if uid == user_id),
                None)
