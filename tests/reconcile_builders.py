"""Small builders for reconciler tests, and a pure in-memory "apply" of a Plan.

``apply_plan`` mirrors what syncer/apply.py does to both remotes and to the state store
(comments we write carry our marker, comment links are recorded with the source side and
id the applier records, also for messages written into a new issue's description, updates
bump ``updated_at``) without any I/O, so convergence and echo can be checked by
reconciling the result again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import Capabilities
from syncer.config import PairConfig
from syncer.markers import Markers
from syncer.markup import Markup
from syncer.models import (
    Attachment,
    Author,
    Collection,
    Comment,
    Contact,
    Ticket,
    TicketState,
    TicketStatus,
    User,
    Visibility,
)
from syncer.plan import (
    AddComment,
    AdoptComment,
    AdoptIssue,
    CommentLinkView,
    Conflict,
    CopyEdit,
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
)
from syncer.reconcile import PairContext, reconcile

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PAIR = "support-redmine"
CID = "login-fails-123"
IID = "42"
CUSTOMER_NAME = "Zelda Quixote"
CUSTOMER_EMAIL = "zelda.q@customer.example"
# The sync's API user on both sides, and the installation's marker key.
ME = "sync-bot"
MARKERS = Markers(b"reconcile-tests-marker-key-0001", PAIR)


def ts(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def status(state: TicketState) -> TicketStatus:
    return TicketStatus(code=state.value, name=state.value.replace("_", " ").title(),
                        state=state)


# A tracker's own statuses (Redmine's defaults), for pairs whose status table names them.
TRACKER_STATUSES = tuple(
    TicketStatus(code=code, name=name,
                 state=TicketState.CLOSED if closed else TicketState.OPEN)
    for code, name, closed in (("1", "New", False), ("2", "In Progress", False),
                               ("3", "Resolved", False), ("4", "Feedback", False),
                               ("5", "Closed", True), ("6", "Rejected", True)))


def tracker_status(key: str) -> TicketStatus:
    """One of ``TRACKER_STATUSES``, by id or name."""
    (found,) = [s for s in TRACKER_STATUSES if key in (s.code, s.name)]
    return found


def staff(email: str) -> User:
    return User(id=email, name=email.split("@")[0].title(), email=email)


def tracker_user(uid: str) -> User:
    return User(id=uid, name=f"Dev {uid}")


def customer() -> Contact:
    return Contact(id="contact-1", name=CUSTOMER_NAME, email=CUSTOMER_EMAIL)


def conversation(cid: str = CID, *, subject: str = "Login fails on Safari",
                 state: TicketState = TicketState.OPEN, tags: tuple[str, ...] = (),
                 channel: str | None = "support", assignee: str | None = None,
                 updated: int = 0, marker: str | None = None,
                 url: str | None = "https://acme.reamaze.io/admin/conversations/x",
                 contact: Contact | None = None) -> Ticket:
    return Ticket(
        id=cid, subject=subject, status=status(state), tags=tags,
        assignee=staff(assignee) if assignee else None,
        collection=Collection(id=channel, name=f"{channel.title()} inbox") if channel else None,
        contact=contact if contact is not None else customer(),
        created_at=T0, updated_at=ts(updated), url=url, marker=marker,
    )


def issue(iid: str = IID, *, subject: str = "Login fails on Safari",
          state: TicketState = TicketState.OPEN, labels: tuple[str, ...] = (),
          assignee: str | None = None, updated: int = 0, marker: str | None = None,
          url: str | None = "https://redmine.example/issues/42") -> Ticket:
    return Ticket(
        id=iid, subject=subject, status=status(state), tags=labels,
        assignee=tracker_user(assignee) if assignee else None,
        created_at=T0, updated_at=ts(updated), url=url, marker=marker,
    )


def comment(cid: str, *, ticket: str = CID, body: str = "hello", internal: bool = False,
            by_staff: bool = True, name: str | None = "Alice Agent",
            email: str | None = "alice@acme.example", at: int = 1, marker: str | None = None,
            read_only: bool = False, attachments: tuple[Attachment, ...] = ()) -> Comment:
    return Comment(
        id=cid, ticket_id=ticket, body=body,
        visibility=Visibility.INTERNAL if internal else Visibility.PUBLIC,
        author=Author(name=name, email=email, is_staff=by_staff),
        created_at=ts(at), marker=marker, read_only=read_only, attachments=attachments,
    )


def customer_comment(cid: str, *, body: str = "It still fails", at: int = 1,
                     ticket: str = CID) -> Comment:
    return comment(cid, ticket=ticket, body=body, by_staff=False, name=CUSTOMER_NAME,
                   email=CUSTOMER_EMAIL, at=at)


def policy(**overrides: Any) -> PairConfig:
    """A pair config; nested sections may be given as dicts (validated like the TOML)."""
    data: dict[str, Any] = {"name": PAIR, "tracker": "redmine"}
    data.update(overrides)
    return PairConfig.model_validate(data)


def context(pol: PairConfig | None = None, *, private: bool = True, labels: bool = True,
            assignee: bool = True, markup: Markup = "plain",
            edit: bool = True) -> PairContext:
    pol = pol if pol is not None else policy()
    return PairContext(
        policy=pol,
        tracker_caps=Capabilities(private_comments=private, labels=labels, assignee=assignee,
                                  markup=markup, edit_comments=edit),
        markers=Markers(MARKERS.key, pol.name),
        tracker_name="Redmine",
        # As the runner reads them: only for a pair whose status table names statuses.
        tracker_statuses=TRACKER_STATUSES if pol.status.names_tracker_statuses else (),
    )


def view(ticket: Ticket, comments: tuple[Comment, ...] = (), *, me: str | None = ME) -> SideView:
    """One side as the runner hands it over: the ticket, its comments, and who we are."""
    return SideView(ticket=ticket, comments=comments, me=me)


def ours(c: Comment) -> Comment:
    """The same comment, written by the sync's API user."""
    return c.model_copy(update={"author": ENGINE})


def link_note_view(cid: str = CID, pair: str = PAIR) -> CommentLinkView:
    """The comment link the engine records for the "linked to issue" note it posts."""
    marker = Markers(MARKERS.key, pair).link_note(cid)
    return CommentLinkView(source_side=Side.TRACKER, source_id=marker, target_id=marker,
                           fingerprint="")


def link(cid: str = CID, iid: str | None = IID, *, status_: str = "active",
         comment_links: tuple[CommentLinkView, ...] = (),
         snapshot: Snapshot | None = None, link_note: bool = True) -> LinkView:
    """A link as the engine leaves it; ``link_note=False`` for one whose note is missing."""
    notes = (link_note_view(cid),) if link_note else ()
    return LinkView(conversation_id=cid, issue_id=iid, status=status_,
                    comment_links=notes + comment_links, snapshot=snapshot)


def agreed(conv: Ticket, iss: Ticket, messages: int = 0, **changes: Any) -> Snapshot:
    """The snapshot a sync that saw exactly these two tickets (and ``messages`` messages in
    the conversation) would have saved."""
    snap = Snapshot(
        helpdesk_state=conv.status.state, tracker_state=iss.status.state,
        tracker_status=iss.status.code if iss.status in TRACKER_STATUSES else None,
        helpdesk_tags=tuple(sorted(conv.tags)), tracker_labels=tuple(sorted(iss.tags)),
        helpdesk_assignee=conv.assignee.email if conv.assignee else None,
        tracker_assignee=iss.assignee.id if iss.assignee else None,
        helpdesk_updated_at=conv.updated_at.isoformat(),
        tracker_updated_at=iss.updated_at.isoformat(),
        helpdesk_messages=messages,
        helpdesk_last_customer=(conv.last_customer_at.isoformat()
                                if conv.last_customer_at is not None else None),
    )
    return snap.model_copy(update=changes)


def of_type(plan: Plan, kind: type[Any]) -> list[Any]:
    return [a for a in plan.actions if isinstance(a, kind)]


# --- an in-memory world and a pure apply ---------------------------------------------

ENGINE = Author(name="reamaze-sync", id=ME, is_staff=True)


@dataclass(frozen=True)
class World:
    """Both sides of one conversation plus what the state store remembers about it."""

    ctx: PairContext
    conversation: SideView
    issue: SideView | None = None
    link: LinkView | None = None
    clock: int = 1000  # minutes after T0; every write moves it forward
    issue_deleted: bool = False

    def reconcile(self) -> Plan:
        # Like the runner: a deleted issue cannot be fetched, only reported as deleted.
        return reconcile(self.ctx, self.conversation,
                         None if self.issue_deleted else self.issue, self.link,
                         issue_deleted=self.issue_deleted)


def _touch(view: SideView, when: datetime, **changes: Any) -> SideView:
    return view.model_copy(update={"ticket": view.ticket.model_copy(
        update={"updated_at": when, **changes})})


def _updated(ticket: Ticket, side: Side, action: UpdateTicket) -> dict[str, Any]:
    u = action.update
    changes: dict[str, Any] = {}
    if u.status_code is not None:
        changes["status"] = tracker_status(u.status_code)
    elif u.state is not None:
        changes["status"] = status(u.state)
    if u.tags is not None:
        changes["tags"] = u.tags
    if u.assignee_id is not None:
        changes["assignee"] = (staff(u.assignee_id) if side is Side.HELPDESK
                               else tracker_user(u.assignee_id))
    return changes


def apply_plan(world: World, plan: Plan) -> World:
    """What the applier would leave behind, with ids and times drawn from ``world.clock``."""
    w = world
    for action in plan.actions:
        clock = w.clock + 1
        now = ts(clock)
        if isinstance(action, CreateIssue):
            assert w.link is None and w.issue is None, "issue created twice"
            new = action.new
            iss = Ticket(id=f"i{clock}", subject=new.subject, description=new.description,
                         author_id=ME,
                         status=status(new.state or TicketState.OPEN), tags=new.tags,
                         assignee=tracker_user(new.assignee_id) if new.assignee_id else None,
                         created_at=now, updated_at=now, marker=new.marker,
                         url=f"https://redmine.example/issues/i{clock}")
            # Messages written into the description are recorded as copied with the issue.
            covered = tuple(CommentLinkView(source_side=Side.HELPDESK, source_id=c.source_id,
                                            target_id=description_target(iss.id),
                                            fingerprint=c.fingerprint)
                            for c in action.covered)
            w = replace(w, issue=view(iss), clock=clock,
                        link=LinkView(conversation_id=action.conversation_id, issue_id=iss.id,
                                      comment_links=covered))
        elif isinstance(action, AddComment | PostLinkNote):
            w = _add_comment(w, action, clock, now)
        elif isinstance(action, UpdateTicket):
            if action.target is Side.HELPDESK:
                assert action.ticket_id == w.conversation.ticket.id
                conv = _touch(w.conversation, now,
                              **_updated(w.conversation.ticket, Side.HELPDESK, action))
                w = replace(w, conversation=conv, clock=clock)
            else:
                assert w.issue is not None and action.ticket_id == w.issue.ticket.id
                iss_view = _touch(w.issue, now, **_updated(w.issue.ticket, Side.TRACKER, action))
                w = replace(w, issue=iss_view, clock=clock)
        elif isinstance(action, MarkOrphaned):
            assert w.link is not None
            w = replace(w, link=w.link.model_copy(update={"status": "orphaned"}))
        elif isinstance(action, SaveSnapshot):
            assert w.link is not None
            w = replace(w, link=w.link.model_copy(update={"snapshot": action.snapshot}))
        elif isinstance(action, AdoptIssue):
            assert w.link is None and w.issue is not None
            assert w.issue.ticket.id == action.issue_id
            w = replace(w, link=LinkView(conversation_id=action.conversation_id,
                                         issue_id=action.issue_id))
        elif isinstance(action, AdoptComment):
            assert w.link is not None
            links = (*w.link.comment_links, CommentLinkView(
                source_side=action.source_side, source_id=action.source_id,
                target_id=action.target_id, fingerprint=action.fingerprint,
                visibility=action.visibility))
            w = replace(w, link=w.link.model_copy(update={"comment_links": links}))
            w = _record_edit(w, action.edit)
        elif isinstance(action, RemoveComment):
            w = _remove_comment(w, action)
        elif isinstance(action, UpdateComment):
            w = _update_comment(w, action)
        else:
            assert isinstance(action, Skip | Conflict | Untrusted)
    return w


def _record_edit(w: World, edit: CopyEdit | None) -> World:
    """The applier's ``set_copy_fingerprint`` once the write that told of an edit landed."""
    if edit is None or w.link is None:
        return w
    links = tuple(cl.model_copy(update={"fingerprint": edit.fingerprint})
                  if (cl.source_side, cl.source_id) == (edit.source_side, edit.source_id)
                  else cl for cl in w.link.comment_links)
    return replace(w, link=w.link.model_copy(update={"comment_links": links}))


def _update_comment(w: World, action: UpdateComment) -> World:
    view = w.conversation if action.target is Side.HELPDESK else w.issue
    assert view is not None
    assert any(c.id == action.comment_id for c in view.comments), "rewrote a missing copy"
    view = view.model_copy(update={"comments": tuple(
        c.model_copy(update={"body": action.body}) if c.id == action.comment_id else c
        for c in view.comments)})
    w = replace(w, conversation=view) if action.target is Side.HELPDESK \
        else replace(w, issue=view)
    return _record_edit(w, action.edit)


def _remove_comment(w: World, action: RemoveComment) -> World:
    view = w.conversation if action.target is Side.HELPDESK else w.issue
    assert view is not None and any(c.id == action.comment_id for c in view.comments)
    view = view.model_copy(update={"comments": tuple(
        c for c in view.comments if c.id != action.comment_id)})
    if w.link is not None:  # the applier forgets the links to a removed copy
        w = replace(w, link=w.link.model_copy(update={"comment_links": tuple(
            cl for cl in w.link.comment_links if cl.target_id != action.comment_id)}))
    if action.target is Side.HELPDESK:
        return replace(w, conversation=view)
    return replace(w, issue=view)


def _add_comment(w: World, action: AddComment | PostLinkNote, clock: int,
                 now: datetime) -> World:
    assert w.link is not None, "comment planned before the link exists"
    if isinstance(action, PostLinkNote):
        target, source_id, fingerprint = Side.HELPDESK, action.marker, ""
        body = f"Linked to issue #{w.link.issue_id}"
        vis, marker = Visibility.INTERNAL, action.marker
        attachments: tuple[Attachment, ...] = ()
    else:
        target, source_id = action.target, action.source_id or action.new.marker
        fingerprint = action.source_fingerprint
        body, vis, marker = action.new.body, action.new.visibility, action.new.marker
        attachments = action.new.attachments
    view = w.conversation if target is Side.HELPDESK else w.issue
    assert view is not None
    if isinstance(action, AddComment) and action.ticket_id is not None:
        assert action.ticket_id == view.ticket.id
    new = Comment(id=f"{target.value[0]}{clock}", ticket_id=view.ticket.id, body=body,
                  visibility=vis, author=ENGINE, created_at=now, marker=marker,
                  attachments=attachments)
    view = _touch(view, now).model_copy(update={"comments": (*view.comments, new)})
    links = (*w.link.comment_links,
             CommentLinkView(source_side=target.other, source_id=source_id,
                             target_id=new.id, fingerprint=fingerprint, visibility=vis))
    w = replace(w, link=w.link.model_copy(update={"comment_links": links}), clock=clock)
    w = replace(w, conversation=view) if target is Side.HELPDESK else replace(w, issue=view)
    return _record_edit(w, action.edit if isinstance(action, AddComment) else None)


def run_round(world: World) -> tuple[Plan, World]:
    plan = world.reconcile()
    return plan, apply_plan(world, plan)
