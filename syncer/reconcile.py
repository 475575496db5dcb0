"""The reconciler: turns what both sides look like, plus what we remember, into a Plan.

Pure: no I/O, no clock, no randomness. ``apply`` (syncer/apply.py) is the only code that
writes. Invariants enforced here and property-tested:

* visibility is preserved or reduced, never raised: an internal note never becomes a
  public comment or a customer-facing reply; content reaches a customer only when the
  pair's policy allows it;
* nothing we wrote is copied back (comment links, and our markers as a second guard);
* re-running on the result of applying a plan yields no writes (convergence).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connectors.base import Capabilities
from syncer import render
from syncer.config import PairConfig
from syncer.expect import expect_helpdesk
from syncer.markers import Markers
from syncer.models import (
    Comment,
    NewComment,
    NewTicket,
    Ticket,
    TicketState,
    TicketStatus,
    TicketUpdate,
    Visibility,
)
from syncer.plan import (
    GONE,
    Action,
    AddComment,
    AdoptComment,
    AdoptIssue,
    CommentLinkView,
    Conflict,
    CopyEdit,
    CoveredComment,
    CreateIssue,
    LinkView,
    MarkOrphaned,
    Plan,
    PostLinkNote,
    RemoveComment,
    SaveSnapshot,
    Side,
    SideView,
    Skip,
    Snapshot,
    Untrusted,
    UpdateComment,
    UpdateTicket,
    description_target,
    is_our_marker,
)
from syncer.reconcile_status import flows as _flows
from syncer.reconcile_status import status_changes, tracker_status_of

PAUSED = ("internal notes paused: an earlier copy came back public and could not be "
          "removed")


@dataclass(frozen=True)
class PairContext:
    policy: PairConfig
    tracker_caps: Capabilities
    markers: Markers
    tracker_name: str = "tracker"
    # A copy of an internal note came back public and could not be removed: until it is
    # gone, no internal content goes to the tracker.
    internal_paused: bool = False
    # The tracker's statuses, read by the runner when the pair's status table names some.
    tracker_statuses: tuple[TicketStatus, ...] = ()
    # The daemon relays tracker files to Re:amaze (``syncer.relay``): they go as files.
    relay_files: bool = False

    @property
    def pair(self) -> str:
        return self.policy.name


def matches(policy: PairConfig, conversation: SideView) -> str | None:
    """Why this conversation should get an issue, or None."""
    t = conversation.ticket
    rules = policy.match
    hit = set(rules.tags) & set(t.tags)
    if hit:
        return f"tag {sorted(hit)[0]!r}"
    if t.collection is not None and t.collection.id in rules.channels:
        return f"channel {t.collection.id!r}"
    if t.status.state in rules.statuses:
        return f"status {t.status.state.value}"
    return None


def is_our_issue(ctx: PairContext, conversation_id: str, issue: SideView) -> bool:
    """The issue this pair created for the conversation: its marker, written by the
    sync's own tracker user (a copied marker on someone else's issue proves nothing)."""
    t = issue.ticket
    return (t.marker == ctx.markers.issue(conversation_id) and issue.me is not None
            and t.author_id is not None and t.author_id.casefold() == issue.me.casefold())


def reconcile(
    ctx: PairContext,
    conversation: SideView | None,
    issue: SideView | None,
    link: LinkView | None,
    *,
    issue_deleted: bool = False,
) -> Plan:
    """Decide what to do for one conversation and/or issue of a pair.

    Without a link, ``issue`` is an issue found by the conversation's marker (the state
    lost the link): it is adopted, never created a second time."""
    plan = Plan(pair=ctx.pair)
    if link is None:
        if conversation is None:
            oid = issue.ticket.id if issue else "?"
            return _plan(ctx, Skip(conversation_id="", object_id=oid,
                                   reason="issue is not linked to a conversation"))
        if issue is not None:
            return _adopt(ctx, conversation, issue)
        return _new_link(ctx, conversation)
    cid = link.conversation_id
    if link.status != "active":
        return _plan(ctx, Skip(conversation_id=cid, object_id=cid,
                               reason=f"link is {link.status}"))
    if link.issue_id is None:
        return _plan(ctx, Skip(conversation_id=cid, object_id=cid,
                               reason="issue create is pending recovery"))
    if issue_deleted:
        # The note goes first: the applier stops a conversation at its first failed write,
        # and a link marked orphaned is never looked at again, so a note planned after the
        # marking would be lost for good. The marker keeps a repeat from writing it twice.
        marker = ctx.markers.orphan_note(cid, link.issue_id)
        actions: list[Action] = []
        if conversation is None or marker not in _own(ctx, cid, conversation):
            actions.append(AddComment(
                conversation_id=cid, target=Side.HELPDESK, ticket_id=cid, source_id="",
                new=NewComment(body=render.orphan_note(ctx.tracker_name, link.issue_id),
                               visibility=Visibility.INTERNAL, marker=marker)))
        actions.append(MarkOrphaned(conversation_id=cid,
                                    reason=f"issue {link.issue_id} was deleted"))
        return _plan(ctx, *actions)
    if conversation is None or issue is None:
        return plan  # the runner fetches both sides of an active link; nothing to decide
    return _sync_link(ctx, conversation, issue, link)


def _plan(ctx: PairContext, *actions: Action) -> Plan:
    return Plan(pair=ctx.pair, actions=actions)


# --- what is ours ----------------------------------------------------------------------

def _own(ctx: PairContext, cid: str, view: SideView) -> dict[str, Comment]:
    """Marker -> comment, for the comments on this side the engine provably wrote for this
    conversation: the installation's marker for it, by the sync's own API user."""
    return {c.marker: c for c in view.comments
            if c.marker is not None and view.wrote(c) and ctx.markers.belongs(c.marker, cid)}


@dataclass
class _Copies:
    """What is known of the copies between the two sides of one conversation."""

    by_source: dict[tuple[Side, str], CommentLinkView] = field(default_factory=dict)
    # (side the copy is on, its id) -> the link that recorded it
    by_target: dict[tuple[Side, str], CommentLinkView] = field(default_factory=dict)
    own: dict[Side, dict[str, Comment]] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)  # copies this plan removes (leaked)

    def is_own(self, side: Side, c: Comment) -> bool:
        """This very comment is one the engine wrote (not merely one with our marker)."""
        return any(o.id == c.id for o in self.own[side].values()) if c.marker else False

    def copied(self, side: Side, source_id: str) -> bool:
        """The source has a copy that stays (one being removed does not count)."""
        made = self.by_source.get((side, source_id))
        return made is not None and made.target_id not in self.removed

    @classmethod
    def of(cls, ctx: PairContext, cid: str, conversation: SideView, issue: SideView | None,
           link: LinkView | None) -> _Copies:
        links = link.comment_links if link else ()
        # Messages written into the description have no comment of their own: their shared
        # placeholder target must never be mistaken for (and so hide) a real comment.
        in_description = description_target(issue.ticket.id) if issue else None
        return cls(
            by_source={(c.source_side, c.source_id): c for c in links},
            by_target={(c.source_side.other, c.target_id): c for c in links
                       if c.target_id != in_description},
            own={Side.HELPDESK: _own(ctx, cid, conversation),
                 Side.TRACKER: _own(ctx, cid, issue) if issue else {}})


def _untrusted(ctx: PairContext, cid: str, side: Side, view: SideView,
               copies: _Copies) -> list[Action]:
    """Comments whose marker-shaped tag cannot be proven ours: copied like any comment
    (a forged or copied marker must never hide a real message), and reported."""
    return [Untrusted(conversation_id=cid, object_id=c.id,
                      reason=f"carries a reamaze-sync marker on the {side.value} side but was "
                             "not written by the sync's API user for this conversation; "
                             "treated as a person's comment")
            for c in view.comments
            if is_our_marker(c.marker) and not copies.is_own(side, c)
            and (side, c.id) not in copies.by_target]


def _leaked(ctx: PairContext, cid: str, copy_side: Side, ticket_id: str, copy: Comment,
            intended: Visibility) -> RemoveComment | None:
    if intended is Visibility.INTERNAL and copy.visibility is Visibility.PUBLIC:
        return RemoveComment(conversation_id=cid, target=copy_side, ticket_id=ticket_id,
                             comment_id=copy.id,
                             reason="copy of an internal note is public")
    return None


# --- a conversation without a link ----------------------------------------------------

def _new_link(ctx: PairContext, conversation: SideView) -> Plan:
    conv = conversation.ticket
    why = matches(ctx.policy, conversation)
    if why is None:
        return _plan(ctx, Skip(conversation_id=conv.id, object_id=conv.id,
                               reason="does not match the pair's rules"))
    assignee = conv.assignee.email if conv.assignee else None
    # The create obeys the same capability and direction rules as later field updates.
    tr_assignee = (_map_staff(ctx, assignee) if ctx.tracker_caps.assignee
                   and _flows(ctx.policy.assignee_field.direction, Side.TRACKER) else None)
    tr_labels = (_labels_for(ctx, conv.tags)
                 if _flows(ctx.policy.tags_field.direction, Side.TRACKER) else ())
    copies = _Copies.of(ctx, conv.id, conversation, None, None)
    description, covered = _description(ctx, conversation, copies)
    actions: list[Action] = [
        CreateIssue(
            conversation_id=conv.id,
            new=NewTicket(
                subject=render.issue_title(ctx.policy, conv),
                description=description,
                marker=ctx.markers.issue(conv.id),
                assignee_id=tr_assignee,
                tags=tr_labels,
            ),
            covered=covered,
        ),
    ]
    if ctx.policy.link_note:
        actions.append(PostLinkNote(conversation_id=conv.id,
                                    marker=ctx.markers.link_note(conv.id)))
    for c in covered:
        copies.by_source[(Side.HELPDESK, c.source_id)] = CommentLinkView(
            source_side=Side.HELPDESK, source_id=c.source_id, target_id="",
            fingerprint=c.fingerprint)
    actions += _untrusted(ctx, conv.id, Side.HELPDESK, conversation, copies)
    actions += _copy_helpdesk_comments(ctx, conversation, None, copies)
    # The base for later three-way merges is what both sides look like right after the
    # create, so a change on either side before the next pass is seen as a change.
    # The conversation's change time as read: the link note moves it, so the next pass
    # still looks at the conversation (unless it can tell the note was all that changed,
    # ``syncer.expect``), and a link whose issue changes meanwhile (the copies land on it)
    # is decided from the snapshot without reading the conversation again (``syncer.partial``).
    snapshot = Snapshot(
        helpdesk_state=conv.status.state,
        tracker_state=TicketState.OPEN,
        helpdesk_tags=tuple(sorted(conv.tags)),
        tracker_labels=tr_labels,
        helpdesk_assignee=assignee,
        tracker_assignee=tr_assignee,
        helpdesk_updated_at=conv.updated_at.isoformat(),
    )
    actions.append(SaveSnapshot(conversation_id=conv.id, snapshot=expect_helpdesk(
        conversation, None, snapshot, actions)))
    return Plan(pair=ctx.pair, actions=tuple(actions))


def _description(ctx: PairContext, conversation: SideView, copies: _Copies
                 ) -> tuple[str, tuple[CoveredComment, ...]]:
    """The new issue's description, and the messages written into it (transcript mode)."""
    conv = conversation.ticket
    if ctx.policy.history != "transcript":
        return render.issue_description(ctx.policy, conv, markup=ctx.tracker_caps.markup), ()
    # Only what every reader of the issue may see: a description cannot be private.
    public = [c for c in sorted(conversation.comments, key=lambda c: (c.created_at, c.id))
              if c.visibility is Visibility.PUBLIC and not c.read_only
              and not copies.is_own(Side.HELPDESK, c)]
    # Attachments travel with a note (a description has nowhere to keep whose they were).
    candidates = [c for c in public if not c.attachments]
    description, fitted = render.transcript_description(
        ctx.policy, conv, candidates, with_attachments=len(public) - len(candidates),
        markup=ctx.tracker_caps.markup)
    return description, tuple(
        CoveredComment(source_id=c.id, fingerprint=c.fingerprint, visibility=c.visibility)
        for c in candidates[:fitted])


def _adopt(ctx: PairContext, conversation: SideView, issue: SideView) -> Plan:
    """The state lost this link (deleted or restored database, another host): take the
    issue back with every copy already made, send only what is really missing."""
    cid = conversation.ticket.id
    if not is_our_issue(ctx, cid, issue):
        return _plan(ctx, Skip(conversation_id=cid, object_id=issue.ticket.id,
                               reason="issue carries our marker but was not created by the "
                                      "sync's tracker user; not adopted"))
    link = LinkView(conversation_id=cid, issue_id=issue.ticket.id)
    plan = _sync_link(ctx, conversation, issue, link)
    return Plan(pair=ctx.pair, actions=(
        AdoptIssue(conversation_id=cid, issue_id=issue.ticket.id), *plan.actions))


# --- an active link -------------------------------------------------------------------

def _sync_link(ctx: PairContext, conversation: SideView, issue: SideView,
               link: LinkView) -> Plan:
    cid = link.conversation_id
    copies = _Copies.of(ctx, cid, conversation, issue, link)
    actions: list[Action] = []
    actions += _untrusted(ctx, cid, Side.HELPDESK, conversation, copies)
    actions += _untrusted(ctx, cid, Side.TRACKER, issue, copies)
    # The link note is planned with the issue create; a pass that stopped in between (a
    # crash recovered by its intent, an aborted pass) or a link made by hand would leave
    # the conversation without it for good. Its marker keeps this to one note.
    note_marker = ctx.markers.link_note(cid)
    if (Side.TRACKER, note_marker) not in copies.by_source:
        note = copies.own[Side.HELPDESK].get(note_marker)
        if note is None and ctx.policy.link_note:
            actions.append(PostLinkNote(conversation_id=cid, marker=note_marker))
        elif note is not None:
            actions.append(AdoptComment(conversation_id=cid, source_side=Side.TRACKER,
                                        source_id=note_marker, target_id=note.id,
                                        visibility=note.visibility, fingerprint=""))
    # Leaked copies go first: their sources are then copied again, privately, in the same
    # plan (the removal takes the marker with it, so the new copy cannot be mistaken for
    # the old one).
    leaks = _linked_leaks(ctx, cid, conversation, issue, copies)
    copies.removed |= {a.comment_id for a in leaks}
    actions += leaks
    actions += _copy_helpdesk_comments(ctx, conversation, issue, copies)
    actions += _copy_tracker_comments(ctx, conversation, issue, copies)
    field_actions, snapshot = _fields(ctx, conversation, issue, link.snapshot, copies)
    actions += field_actions
    snapshot = expect_helpdesk(conversation, link.snapshot, snapshot, actions)
    if snapshot != link.snapshot:
        actions.append(SaveSnapshot(conversation_id=cid, snapshot=snapshot))
    return Plan(pair=ctx.pair, actions=tuple(actions))


def _linked_leaks(ctx: PairContext, cid: str, conversation: SideView, issue: SideView,
                  copies: _Copies) -> list[RemoveComment]:
    """Copies written private that are public now (the tracker dropped the flag, or the
    permission went away after the write was checked): removed, never kept as good. Only
    a comment the engine wrote: a tracker that reuses ids (Redmine on SQLite) may have
    given a deleted copy's id to a person's comment."""
    out: list[RemoveComment] = []
    for side, view in ((Side.TRACKER, issue), (Side.HELPDESK, conversation)):
        for c in view.comments:
            made = copies.by_target.get((side, c.id))
            if made is not None and view.wrote(c):
                leak = _leaked(ctx, cid, side, view.ticket.id, c, made.visibility)
                if leak is not None:
                    out.append(leak)
    return out


def _helpdesk_copy_visibility(ctx: PairContext, source: Comment) -> Visibility:
    if source.visibility is Visibility.INTERNAL and not ctx.tracker_caps.private_comments:
        return Visibility.PUBLIC  # a content-free placeholder, never the note itself
    return source.visibility


def _copy_helpdesk_comments(ctx: PairContext, conversation: SideView, issue: SideView | None,
                            copies: _Copies) -> list[Action]:
    cid = conversation.ticket.id
    iss = issue.ticket if issue else None
    out: list[Action] = []
    for c in sorted(conversation.comments, key=lambda c: (c.created_at, c.id)):
        if c.read_only or (Side.HELPDESK, c.id) in copies.by_target:
            continue  # collision notices; our copies of tracker comments
        if copies.is_own(Side.HELPDESK, c):
            continue  # the engine's own note (link note, close reply, a copy)
        if copies.copied(Side.HELPDESK, c.id):
            out += _update_copy(ctx, cid, c, issue, copies)
            continue
        marker = ctx.markers.comment(cid, Side.HELPDESK, c.id)
        copy = copies.own[Side.TRACKER].get(marker)
        if copy is not None and iss is not None and copy.id not in copies.removed:
            leak = _leaked(ctx, cid, Side.TRACKER, iss.id, copy,
                           _helpdesk_copy_visibility(ctx, c))
            if leak is None:
                out.append(AdoptComment(
                    conversation_id=cid, source_side=Side.HELPDESK, source_id=c.id,
                    target_id=copy.id, visibility=copy.visibility, fingerprint=c.fingerprint))
                continue
            out.append(leak)  # then copied again below, privately
        if iss is not None and _in_description(ctx, iss, c):
            out.append(AdoptComment(
                conversation_id=cid, source_side=Side.HELPDESK, source_id=c.id,
                target_id=description_target(iss.id), visibility=c.visibility,
                fingerprint=c.fingerprint))
            continue
        if c.visibility == Visibility.INTERNAL:
            if ctx.internal_paused:
                out.append(Skip(conversation_id=cid, object_id=c.id, reason=PAUSED))
                continue
            if not ctx.tracker_caps.private_comments:
                if ctx.policy.visibility.internal_to_public_tracker == "skip":
                    out.append(Skip(conversation_id=cid, object_id=c.id,
                                    reason=f"internal note not sent: {ctx.tracker_name} "
                                           "cannot keep a comment private"))
                    continue
                new = NewComment(body=render.placeholder_note(ctx.policy),
                                 visibility=Visibility.PUBLIC, marker=marker)
                out.append(AddComment(conversation_id=cid, target=Side.TRACKER,
                                      ticket_id=iss.id if iss else None, source_id=c.id,
                                      new=new, source_fingerprint=c.fingerprint))
                continue
        new = NewComment(body=render.helpdesk_comment_to_tracker(
                             ctx.policy, c, markup=ctx.tracker_caps.markup),
                         visibility=c.visibility, marker=marker, attachments=c.attachments)
        out.append(AddComment(conversation_id=cid, target=Side.TRACKER,
                              ticket_id=iss.id if iss else None, source_id=c.id, new=new,
                              source_fingerprint=c.fingerprint))
    return out


def _update_copy(ctx: PairContext, cid: str, c: Comment, issue: SideView | None,
                 copies: _Copies) -> list[Action]:
    """An internal note edited in Re:amaze after it was copied: its tracker copy is
    rewritten, private as it was. Only a copy that carries the note itself (not a
    placeholder, not the description) and that the engine wrote and still finds."""
    made = copies.by_source[(Side.HELPDESK, c.id)]
    if (issue is None or made.fingerprint in ("", c.fingerprint)
            or c.visibility is not Visibility.INTERNAL
            or made.visibility is not Visibility.INTERNAL
            or not ctx.tracker_caps.private_comments or not ctx.tracker_caps.edit_comments
            or not ctx.policy.edits.helpdesk_to_tracker or ctx.internal_paused):
        return []
    copy = next((t for t in issue.comments if t.id == made.target_id), None)
    if copy is None or not issue.wrote(copy) or copy.visibility is not Visibility.INTERNAL:
        return []  # gone, or not provably ours; a public one is a leak handled elsewhere
    return [UpdateComment(
        conversation_id=cid, target=Side.TRACKER, ticket_id=issue.ticket.id,
        comment_id=copy.id, visibility=Visibility.INTERNAL,
        body=render.helpdesk_comment_to_tracker(ctx.policy, c, markup=ctx.tracker_caps.markup),
        edit=CopyEdit(source_side=Side.HELPDESK, source_id=c.id, fingerprint=c.fingerprint))]


def _in_description(ctx: PairContext, issue: Ticket, c: Comment) -> bool:
    """A public message the issue's description already carries (transcript mode), found
    by its rendered entry when the link that said so was lost."""
    if c.visibility is not Visibility.PUBLIC or c.attachments or not issue.description:
        return False
    return render.helpdesk_comment_to_tracker(
        ctx.policy, c, markup=ctx.tracker_caps.markup) in issue.description


def _copy_tracker_comments(ctx: PairContext, conversation: SideView, issue: SideView,
                           copies: _Copies) -> list[Action]:
    cid = conversation.ticket.id
    out: list[Action] = []
    fingerprints = {c.source_id: c.fingerprint for c in copies.by_source.values()
                    if c.source_side == Side.TRACKER}
    for c in sorted(issue.comments, key=lambda c: (c.created_at, c.id)):
        if c.read_only or (Side.TRACKER, c.id) in copies.by_target:
            continue
        if copies.is_own(Side.TRACKER, c):
            continue  # our copy of a message; re-adopted from the message's side
        if copies.copied(Side.TRACKER, c.id):
            if fingerprints.get(c.id) not in (None, "", c.fingerprint):  # "": not known
                out += _tell_edit(ctx, cid, copies, c.id, c.fingerprint,
                                  render.tracker_edit_note(ctx.tracker_name, issue.ticket, c,
                                                           markup=ctx.tracker_caps.markup))
            continue
        to_customer = (c.visibility == Visibility.PUBLIC
                       and ctx.policy.visibility.customer_replies_from_tracker)
        visibility = Visibility.PUBLIC if to_customer else Visibility.INTERNAL
        marker = ctx.markers.comment(cid, Side.TRACKER, c.id)
        copy = copies.own[Side.HELPDESK].get(marker)
        if copy is not None and copy.id not in copies.removed:
            leak = _leaked(ctx, cid, Side.HELPDESK, cid, copy, visibility)
            if leak is None:
                out.append(AdoptComment(
                    conversation_id=cid, source_side=Side.TRACKER, source_id=c.id,
                    target_id=copy.id, visibility=copy.visibility, fingerprint=c.fingerprint))
                continue
            out.append(leak)
        # Re:amaze attaches a file only by fetching its URL: one that needs a tracker login
        # is named in the copy instead, so nobody takes the note for complete.
        fetchable = ctx.tracker_caps.fetchable_attachment_urls or ctx.relay_files
        out.append(AddComment(
            conversation_id=cid, target=Side.HELPDESK, ticket_id=conversation.ticket.id,
            source_id=c.id, source_fingerprint=c.fingerprint,
            new=NewComment(
                body=render.tracker_comment_to_helpdesk(
                    ctx.tracker_name, issue.ticket, c, markup=ctx.tracker_caps.markup,
                    files=() if fetchable else c.attachments, for_customer=to_customer),
                visibility=visibility, notify_customer=to_customer,
                attachments=c.attachments if fetchable else (), marker=marker),
        ))
    present = {c.id for c in issue.comments}
    for made in copies.by_source.values():
        # Only real tracker comments: the engine's own notes are recorded under their
        # markers, which no tracker comment id looks like.
        if (made.source_side is Side.TRACKER and made.source_id not in present
                and made.fingerprint not in ("", GONE) and not is_our_marker(made.source_id)):
            out += _tell_edit(ctx, cid, copies, made.source_id, GONE, render.tracker_delete_note(
                ctx.tracker_name, issue.ticket.id, made.source_id))
    return out


def _tell_edit(ctx: PairContext, cid: str, copies: _Copies, source_id: str,
               fingerprint: str, body: str) -> list[Action]:
    """A copied tracker note was edited (or deleted, ``fingerprint`` GONE): Re:amaze
    messages cannot be changed, so an internal note says so, once per edit (its marker is
    keyed by the new text). Always internal: a copy emailed to the customer does not make
    its correction one."""
    edit = CopyEdit(source_side=Side.TRACKER, source_id=source_id, fingerprint=fingerprint)
    what = "deleted" if fingerprint == GONE else "edited"
    if not ctx.policy.edits.tracker_to_helpdesk:
        return [Skip(conversation_id=cid, object_id=source_id,
                     reason=f"{what} on the tracker after it was copied; not told to "
                            "Re:amaze ([pairs.edits] tracker_to_helpdesk = false)")]
    marker = ctx.markers.edit_note(cid, Side.TRACKER, source_id, fingerprint)
    note = copies.own[Side.HELPDESK].get(marker)
    if note is not None:  # written, but not recorded (a crash, a lost state)
        return [AdoptComment(conversation_id=cid, source_side=Side.TRACKER, source_id=marker,
                             target_id=note.id, visibility=note.visibility, fingerprint="",
                             edit=edit)]
    return [AddComment(conversation_id=cid, target=Side.HELPDESK, ticket_id=cid,
                       source_id="", edit=edit,
                       new=NewComment(body=body, visibility=Visibility.INTERNAL,
                                      marker=marker))]


# --- fields: three-way merge against the last-synced snapshot -------------------------

def _map_staff(ctx: PairContext, email: str | None) -> str | None:
    return ctx.policy.staff_to_user.get(email) if email else None


def _unmap_user(ctx: PairContext, user_id: str | None) -> str | None:
    if user_id is None:
        return None
    for email, uid in ctx.policy.staff_to_user.items():
        if uid == user_id:
            return email
    return None


def _labels_for(ctx: PairContext, tags: tuple[str, ...]) -> tuple[str, ...]:
    if not ctx.tracker_caps.labels:
        return ()
    return tuple(sorted({ctx.policy.tag_to_label[t] for t in tags if t in ctx.policy.tag_to_label}))


def _current(ctx: PairContext, conversation: SideView, issue: SideView) -> Snapshot:
    conv, iss = conversation.ticket, issue.ticket
    return Snapshot(
        helpdesk_state=conv.status.state,
        tracker_state=iss.status.state,
        tracker_status=tracker_status_of(ctx.policy.status, iss.status),
        helpdesk_tags=tuple(sorted(conv.tags)),
        tracker_labels=tuple(sorted(iss.tags)),
        helpdesk_assignee=conv.assignee.email if conv.assignee else None,
        tracker_assignee=iss.assignee.id if iss.assignee else None,
        helpdesk_updated_at=conv.updated_at.isoformat(),
        tracker_updated_at=iss.updated_at.isoformat(),
    )


def _fields(ctx: PairContext, conversation: SideView, issue: SideView,
            base: Snapshot | None, copies: _Copies) -> tuple[list[Action], Snapshot]:
    cid = conversation.ticket.id
    now = _current(ctx, conversation, issue)
    if base is None:
        # A link made by hand, or re-adopted after the state was lost: adopt today's values
        # as the base instead of guessing which side changed; close replies already sent
        # for this issue are counted so the next one gets a key of its own.
        sent = 0
        while ctx.markers.close_reply(cid, issue.ticket.id, sent) in copies.own[Side.HELPDESK]:
            sent += 1
        return [], now.model_copy(update={"close_replies": sent})
    now = now.model_copy(update={"close_replies": base.close_replies})
    actions: list[Action] = []
    after = now
    status_actions, after = status_changes(ctx, conversation, issue, base, after,
                                           copies.own[Side.HELPDESK])
    actions += status_actions
    assignee_actions, after = _assignee(ctx, cid, issue.ticket.id, base, after)
    actions += assignee_actions
    label_actions, after = _labels(ctx, cid, issue.ticket.id, base, after)
    actions += label_actions
    return actions, after


def _assignee(ctx: PairContext, cid: str, iid: str, base: Snapshot,
              now: Snapshot) -> tuple[list[Action], Snapshot]:
    fp = ctx.policy.assignee_field
    if not ctx.tracker_caps.assignee:
        return [], now
    want_tr = _map_staff(ctx, now.helpdesk_assignee)
    if want_tr == now.tracker_assignee:
        return [], now  # already agree (two staff emails may map to one tracker user)
    want_hd = _unmap_user(ctx, now.tracker_assignee)
    push = (now.helpdesk_assignee != base.helpdesk_assignee
            and _flows(fp.direction, Side.TRACKER))
    pull = now.tracker_assignee != base.tracker_assignee and _flows(fp.direction, Side.HELPDESK)
    actions: list[Action] = []
    if push and pull:
        # Decided before looking at the mapping: an owner's value that cannot be carried
        # over (unmapped) still wins, it must not be overwritten by the other side's.
        winner = Side.TRACKER if fp.owner == "tracker" else Side.HELPDESK
        actions.append(Conflict(conversation_id=cid, field="assignee",
                                helpdesk_value=str(now.helpdesk_assignee),
                                tracker_value=str(now.tracker_assignee), winner=winner))
        push, pull = winner is Side.HELPDESK, winner is Side.TRACKER
    if push and want_tr is not None:
        actions.append(UpdateTicket(conversation_id=cid, target=Side.TRACKER, ticket_id=iid,
                                    update=TicketUpdate(assignee_id=want_tr),
                                    reason="assignee changed in Re:amaze"))
        now = now.model_copy(update={"tracker_assignee": want_tr})
    elif pull and want_hd is not None:
        actions.append(UpdateTicket(conversation_id=cid, target=Side.HELPDESK, ticket_id=cid,
                                    update=TicketUpdate(assignee_id=want_hd),
                                    reason="assignee changed on the tracker"))
        now = now.model_copy(update={"helpdesk_assignee": want_hd})
    return actions, now


def _labels(ctx: PairContext, cid: str, iid: str, base: Snapshot,
            now: Snapshot) -> tuple[list[Action], Snapshot]:
    """Tags → labels (mapped tags only); labels the mapping doesn't own are left alone."""
    fp = ctx.policy.tags_field
    if not ctx.tracker_caps.labels or not _flows(fp.direction, Side.TRACKER):
        return [], now
    if now.helpdesk_tags == base.helpdesk_tags:
        return [], now
    # Only the labels whose mapped tags came or went since the snapshot move; a label a
    # tracker user removed by hand is not put back by an unrelated tag change.
    was = set(_labels_for(ctx, base.helpdesk_tags))
    wanted = set(_labels_for(ctx, now.helpdesk_tags))
    labels = tuple(sorted((set(now.tracker_labels) - (was - wanted)) | (wanted - was)))
    if labels == now.tracker_labels:
        return [], now
    return ([UpdateTicket(conversation_id=cid, target=Side.TRACKER, ticket_id=iid,
                          update=TicketUpdate(tags=labels), reason="tags changed in Re:amaze")],
            now.model_copy(update={"tracker_labels": labels}))
