"""Property tests of the reconciler: visibility, convergence, no echo, determinism.

Worlds are drawn at random (policy in both history modes, tracker capabilities, both
tickets, comments in every copy state, link and snapshot), reconciled, applied in memory
with ``apply_plan``, changed by "humans" on both sides, and reconciled again. Comment
bodies carry unique tokens (``QH7Q``: letters and digits, which no markup escapes) so a
leak of one comment's text into another object (a note, or a new issue's description) is
detectable.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redmine_mentions import redmine_mentions

from syncer import render
from syncer.config import status_named
from syncer.markup import escape, strong
from syncer.models import Attachment, Author, Comment, Ticket, TicketState, Visibility
from syncer.plan import (
    AddComment,
    CommentLinkView,
    Conflict,
    CreateIssue,
    Plan,
    RemoveComment,
    SaveSnapshot,
    Side,
    SideView,
    Skip,
    Snapshot,
    UpdateTicket,
    description_target,
    is_our_marker,
)
from syncer.reconcile import reconcile
from tests.reconcile_builders import (
    CID,
    CUSTOMER_EMAIL,
    CUSTOMER_NAME,
    IID,
    MARKERS,
    ME,
    TRACKER_STATUSES,
    World,
    agreed,
    apply_plan,
    context,
    conversation,
    issue,
    link,
    policy,
    staff,
    status,
    tracker_status,
    tracker_user,
    ts,
    view,
)

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TAGS = ["bug", "crash", "urgent", "vip", "billing"]
LABELS = ["defect", "p1", "ui", "backend"]
EMAILS = ["ann@acme.example", "ben@acme.example", "cat@acme.example", "eve@acme.example"]
USERS = ["1", "2", "3", "99"]
STATES = list(TicketState)
# What a tracker status may set a conversation to (On Hold needs a date it does not give).
TARGETS = [s for s in STATES if s is not TicketState.ON_HOLD]
# A pair's status table names tracker statuses by name (any case) or id.
STATUS_KEYS = [*(st_.name for st_ in TRACKER_STATUSES), "feedback", "5", "2"]
OPEN_STATUS_KEYS = ["New", "in progress", "Feedback", "3"]
TABLE_TARGETS = ["open", "pending", "closed"]
# Closing and reopening are what the status rules react to: draw them more often.
LIVELY_STATES = [*STATES, TicketState.CLOSED, TicketState.OPEN, TicketState.CLOSED]
DIRECTIONS = ["both", "both", "helpdesk_to_tracker", "tracker_to_helpdesk", "none"]
TOKEN = re.compile(r"Q[HT]\d+Q")
PREFIXES = ["", "@ann please look:", "see attached log", "(@ops) FYI", "mail ben@acme.example",
            "`@code` x", "café@ann x"]
# A conversation may carry data that looks like a marker; it never stops an issue.
FOREIGN_MARKER = MARKERS.issue("some-other-conversation")
ATTACHMENT = Attachment(name="trace.log", url="https://files.example/trace.log")


def _opt(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.sampled_from(values))


def _rarely() -> st.SearchStrategy[bool]:
    """True about one time in ten (integers(0, n) == 0 would favour the boundary)."""
    return st.sampled_from([False] * 9 + [True])


def _subset(values: list[str]) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(values), unique=True, max_size=3).map(tuple)


@st.composite
def policies(draw: st.DrawFn) -> Any:
    field = st.fixed_dictionaries({
        "direction": st.sampled_from(DIRECTIONS),
        "owner": st.sampled_from(["helpdesk", "tracker"])})
    closing = draw(st.sampled_from(["close_issue", "nothing"]))
    # As the config and `check` allow: open states name open statuses, and "closed" any
    # status but only with close_issue. Sometimes a name the tracker does not have.
    to_issue = draw(st.dictionaries(st.sampled_from(["open", "pending", "on_hold"]),
                                    st.sampled_from([*OPEN_STATUS_KEYS, "Gone"]), max_size=2))
    if closing == "close_issue" and draw(st.booleans()):
        to_issue["closed"] = draw(st.sampled_from(STATUS_KEYS))
    return policy(
        match={"tags": list(draw(_subset(TAGS[:3]))),
               "channels": list(draw(_subset(["support", "vip"]))),
               "statuses": list(draw(st.lists(st.sampled_from(STATES), unique=True,
                                              max_size=2)))},
        visibility={
            "customer_replies_from_tracker": draw(st.booleans()),
            "internal_to_public_tracker": draw(st.sampled_from(["skip", "placeholder"])),
            "placeholder_text": draw(st.sampled_from(["An internal note was added.",
                                                      "(note hidden)"])),
            "include_customer_pii": draw(st.booleans())},
        status={"on_issue_closed": draw(st.sampled_from([TicketState.CLOSED, None, *TARGETS])),
                "on_issue_reopened": draw(st.sampled_from([TicketState.OPEN, None, *TARGETS])),
                "close_reply_template": draw(st.sampled_from(
                    ["", "Fixed: {subject} (#{issue_id}) {issue_url}"])),
                "on_conversation_closed": closing,
                "on_conversation_reopened": draw(st.sampled_from(["reopen_issue", "nothing"])),
                "issue_to_conversation": draw(st.dictionaries(
                    st.sampled_from(STATUS_KEYS), st.sampled_from(TABLE_TARGETS), max_size=3)),
                "conversation_to_issue": to_issue},
        status_field=draw(field), tags_field=draw(field), assignee_field=draw(field),
        tag_to_label=draw(st.dictionaries(st.sampled_from(TAGS), st.sampled_from(LABELS[:3]),
                                          max_size=4)),
        staff_to_user=draw(st.dictionaries(st.sampled_from(EMAILS[:3]),
                                           st.sampled_from(USERS[:3]), max_size=3)),
        history=draw(st.sampled_from(["per_message", "transcript"])),
    )


@st.composite
def contexts(draw: st.DrawFn) -> Any:
    return context(draw(policies()), private=draw(st.booleans()), labels=draw(st.booleans()),
                   assignee=draw(st.booleans()),
                   markup=draw(st.sampled_from(["plain", "textile", "common_mark"])))


def human_comment(side: Side, n: int, *, internal: bool, by_customer: bool, prefix: str,
                  at: int, read_only: bool = False, attached: bool = False) -> Comment:
    tag = "H" if side is Side.HELPDESK else "T"
    author = (Author(name=CUSTOMER_NAME, email=CUSTOMER_EMAIL, is_staff=False) if by_customer
              else Author(name=f"Agent {n}", email=EMAILS[n % 4], is_staff=True))
    return Comment(id=f"{tag.lower()}{n}", ticket_id=CID if side is Side.HELPDESK else IID,
                   body=f"{prefix} Q{tag}{n}Q".strip(),
                   visibility=Visibility.INTERNAL if internal else Visibility.PUBLIC,
                   author=author, created_at=ts(at), read_only=read_only,
                   attachments=(ATTACHMENT,) if attached else ())


@st.composite
def human_comments(draw: st.DrawFn, side: Side, private_ok: bool) -> list[Comment]:
    out = []
    for n in range(draw(st.integers(0, 4))):
        out.append(human_comment(
            side, n, internal=draw(st.booleans()) and (side is Side.HELPDESK or private_ok),
            by_customer=side is Side.HELPDESK and draw(st.booleans()),
            prefix=draw(st.sampled_from(PREFIXES)), at=draw(st.integers(0, 30)),
            read_only=draw(_rarely()), attached=side is Side.HELPDESK and draw(_rarely())))
    return out


def _copy_of(source: Comment, source_side: Side, n: int) -> Comment:
    """A copy an earlier pass wrote: engine author, our marker, no source token."""
    target = source_side.other
    return Comment(id=f"{target.value[0]}c{n}", ticket_id=CID if target is Side.HELPDESK else IID,
                   body=f"copy of {source.id}", visibility=Visibility.INTERNAL,
                   author=Author(name="reamaze-sync", id=ME, is_staff=True),
                   created_at=source.created_at,
                   marker=MARKERS.comment(CID, source_side, source.id))


@st.composite
def copy_states(draw: st.DrawFn, sources: list[Comment], side: Side,
                private_ok: bool) -> tuple[list[Comment], list[CommentLinkView]]:
    """Each source: not copied, copied, copy deleted, link lost, edited after copy, or
    (a public Re:amaze message) written into the issue description at its creation."""
    copies: list[Comment] = []
    links: list[CommentLinkView] = []
    for n, src in enumerate(sources):
        states = ["new", "copied", "copy-gone", "link-lost", "edited"]
        if side is Side.HELPDESK and src.visibility is Visibility.PUBLIC:
            states.append("transcribed")
        state = draw(st.sampled_from(states))
        if state == "transcribed":
            links.append(CommentLinkView(source_side=side, source_id=src.id,
                                         target_id=description_target(IID),
                                         fingerprint=src.fingerprint))
            continue
        copy = _copy_of(src, side, n)
        if side is Side.HELPDESK and (not private_ok or src.visibility is Visibility.PUBLIC):
            copy = copy.model_copy(update={"visibility": Visibility.PUBLIC})
        written = copy.visibility
        if side is Side.HELPDESK and written is Visibility.INTERNAL and draw(_rarely()):
            # The tracker dropped the private flag after the write (a permission change).
            copy = copy.model_copy(update={"visibility": Visibility.PUBLIC})
        fingerprint = src.fingerprint if state != "edited" else "0" * 32
        if state in ("copied", "link-lost", "edited"):
            copies.append(copy)
        if state in ("copied", "copy-gone", "edited"):
            links.append(CommentLinkView(source_side=side, source_id=src.id,
                                         target_id=copy.id, fingerprint=fingerprint,
                                         visibility=written))
    return copies, links


@st.composite
def tickets(draw: st.DrawFn, side: Side, updated: int) -> Ticket:
    if side is Side.HELPDESK:
        return conversation(state=draw(st.sampled_from(LIVELY_STATES)),
                            tags=draw(_subset(TAGS)),
                            channel=draw(st.sampled_from([None, "support", "vip"])),
                            assignee=draw(_opt(EMAILS)), updated=updated,
                            marker=FOREIGN_MARKER if draw(_rarely()) else None)
    made = issue(state=draw(st.sampled_from(LIVELY_STATES)), labels=draw(_subset(LABELS)),
                 assignee=draw(_opt(USERS)), updated=updated)
    if draw(st.booleans()):  # one of the tracker's own statuses
        return made.model_copy(update={"status": draw(st.sampled_from(TRACKER_STATUSES))})
    return made


@st.composite
def worlds(draw: st.DrawFn) -> World:
    ctx = draw(contexts())
    private = ctx.tracker_caps.private_comments
    hd = draw(human_comments(Side.HELPDESK, private))
    conv = draw(tickets(Side.HELPDESK, 40))
    if draw(st.sampled_from([True, False, False])):  # a conversation seen for the first time
        return World(ctx=ctx, conversation=view(conv, tuple(hd)))
    tr = draw(human_comments(Side.TRACKER, private))
    iss = draw(tickets(Side.TRACKER, 40))
    tr_copies, hd_links = draw(copy_states(hd, Side.HELPDESK, private))
    hd_copies, tr_links = draw(copy_states(tr, Side.TRACKER, private))
    snapshot: Snapshot | None = None
    if draw(st.booleans()):
        snapshot = agreed(draw(tickets(Side.HELPDESK, 10)), draw(tickets(Side.TRACKER, 10)))
    if draw(_rarely()):  # the state lost the whole link: our issue is found by its marker
        ours = iss.model_copy(update={"marker": MARKERS.issue(CID), "author_id": ME})
        return World(ctx=ctx, conversation=view(conv, tuple(hd + hd_copies)),
                     issue=view(ours, tuple(tr + tr_copies)))
    return World(
        ctx=ctx,
        conversation=view(conv, tuple(hd + hd_copies)),
        issue=view(iss, tuple(tr + tr_copies)),
        link=link(comment_links=tuple(hd_links + tr_links), snapshot=snapshot),
        issue_deleted=draw(_rarely()),
    )


@st.composite
def field_worlds(draw: st.DrawFn) -> World:
    """Linked worlds without comments, with a snapshot: where field rules do their work."""
    ctx = draw(contexts())
    base_conv, base_iss = draw(tickets(Side.HELPDESK, 10)), draw(tickets(Side.TRACKER, 10))
    return World(ctx=ctx, conversation=view(draw(tickets(Side.HELPDESK, 40))),
                 issue=view(draw(tickets(Side.TRACKER, 40))),
                 link=link(snapshot=agreed(base_conv, base_iss)))


# --- human changes between passes ----------------------------------------------------------

FIELD_CHANGES = st.one_of(
    st.tuples(st.just("hd_state"), st.sampled_from(LIVELY_STATES)),
    st.tuples(st.just("tr_state"), st.sampled_from(LIVELY_STATES)),
    st.tuples(st.just("tr_status"), st.sampled_from(TRACKER_STATUSES)),
    st.tuples(st.just("hd_tags"), _subset(TAGS)),
    st.tuples(st.just("tr_labels"), _subset(LABELS)),
    st.tuples(st.just("hd_assignee"), _opt(EMAILS)),
    st.tuples(st.just("tr_assignee"), _opt(USERS)),
)
CHANGES = st.one_of(
    st.tuples(st.just("hd_comment"), st.booleans(), st.booleans(), st.sampled_from(PREFIXES)),
    st.tuples(st.just("tr_comment"), st.booleans(), st.sampled_from(PREFIXES)),
    st.tuples(st.just("tr_edit"), st.integers(0, 9)),
    FIELD_CHANGES,
    st.tuples(st.just("issue_deleted"), _rarely()),
)


def _bump(view: SideView, clock: int, **changes: Any) -> SideView:
    return view.model_copy(update={"ticket": view.ticket.model_copy(
        update={"updated_at": ts(clock), **changes})})


def _field(kind: str, value: Any) -> dict[str, Any]:
    if kind.endswith("_state"):
        return {"status": status(value)}
    if kind == "tr_status":
        return {"status": value}
    if kind in ("hd_tags", "tr_labels"):
        return {"tags": value}
    if kind == "hd_assignee":
        return {"assignee": staff(value) if value else None}
    assert kind == "tr_assignee"
    return {"assignee": tracker_user(value) if value else None}


def change(world: World, op: tuple[Any, ...]) -> World:
    """One edit a person makes in Re:amaze or on the tracker."""
    clock = world.clock + 1
    w = replace(world, clock=clock)
    kind = op[0]
    if kind.startswith("hd_"):
        conv = w.conversation
        if kind == "hd_comment":
            c = human_comment(Side.HELPDESK, clock, internal=op[1], by_customer=op[2],
                              prefix=op[3], at=clock)
            return replace(w, conversation=_bump(conv, clock).model_copy(
                update={"comments": (*conv.comments, c)}))
        return replace(w, conversation=_bump(conv, clock, **_field(kind, op[1])))
    if w.issue is None or w.issue_deleted:
        return world
    iss = w.issue
    if kind == "issue_deleted":
        return replace(w, issue_deleted=op[1])
    if kind == "tr_comment":
        c = human_comment(Side.TRACKER, clock, internal=op[1] and w.ctx.tracker_caps
                          .private_comments, by_customer=False, prefix=op[2], at=clock)
        return replace(w, issue=_bump(iss, clock).model_copy(
            update={"comments": (*iss.comments, c)}))
    if kind == "tr_edit":
        if not iss.comments:
            return world
        k = op[1] % len(iss.comments)
        edited = iss.comments[k].model_copy(update={"body": iss.comments[k].body + " (edited)"})
        comments = (*iss.comments[:k], edited, *iss.comments[k + 1:])
        return replace(w, issue=_bump(iss, clock).model_copy(update={"comments": comments}))
    return replace(w, issue=_bump(iss, clock, **_field(kind, op[1])))


# --- invariants --------------------------------------------------------------------------------

def _tokens(comments: tuple[Comment, ...], visibility: Visibility) -> set[str]:
    return {t for c in comments if c.visibility is visibility for t in TOKEN.findall(c.body)}


def check_visibility(world: World, plan: Plan) -> None:
    """Nothing in the plan shows internal text, or customer PII, to someone who may not see it."""
    ctx, pol = world.ctx, world.ctx.policy
    caps, vis = ctx.tracker_caps, pol.visibility
    hd = {c.id: c for c in world.conversation.comments}
    tr = {c.id: c for c in world.issue.comments} if world.issue else {}
    hd_internal = _tokens(world.conversation.comments, Visibility.INTERNAL)
    tr_internal = _tokens(tuple(tr.values()), Visibility.INTERNAL)
    for action in plan.actions:
        if isinstance(action, CreateIssue):
            check_description(world, action)
            continue
        if not isinstance(action, AddComment):
            continue
        new = action.new
        assert redmine_mentions(new.body, "textile") == [], new.body
        if action.target is Side.TRACKER:
            src = hd[action.source_id]
            assert new.notify_customer is False
            if new.visibility is Visibility.PUBLIC:
                assert not (set(TOKEN.findall(new.body)) & hd_internal), new.body
            if src.visibility is Visibility.INTERNAL and not caps.private_comments:
                # the only copy of an internal note a public tracker may get: the placeholder
                assert vis.internal_to_public_tracker == "placeholder"
                assert new.body == vis.placeholder_text and new.attachments == ()
            else:
                assert new.visibility is src.visibility  # never raised, never lowered
                assert TOKEN.findall(src.body)[0] in new.body
                who = src.author.name or src.author.email or "Staff"
                if not src.author.is_staff:
                    who = CUSTOMER_NAME if vis.include_customer_pii else "Customer"
                assert new.body.startswith(render.neutralise_mentions(
                    strong(caps.markup, escape(caps.markup, who))))
            if not vis.include_customer_pii:
                assert CUSTOMER_NAME not in new.body and CUSTOMER_EMAIL not in new.body
            continue
        # towards the helpdesk
        if new.visibility is Visibility.PUBLIC or new.notify_customer:
            if action.source_id == "":
                assert pol.status.close_reply_template
                assert world.issue is not None
                assert new.body == render.close_reply(pol, world.conversation.ticket,
                                                      world.issue.ticket)
            else:
                src = tr[action.source_id]
                assert src.visibility is Visibility.PUBLIC
                assert vis.customer_replies_from_tracker
            assert new.visibility is Visibility.PUBLIC and new.notify_customer is True
            assert not (set(TOKEN.findall(new.body)) & tr_internal)
        if action.source_id:
            src = tr[action.source_id]
            assert TOKEN.findall(src.body)[0] in new.body
            assert (src.author.name or "") in new.body


def check_description(world: World, action: CreateIssue) -> None:
    """A new issue's description shows only public, unattached Re:amaze messages (and only in
    transcript mode), each attributed like its note copy; never internal text or PII."""
    pol = world.ctx.policy
    vis = pol.visibility
    text = action.new.subject + action.new.description
    hd = {c.id: c for c in world.conversation.comments}
    covered = [hd[c.source_id] for c in action.covered]
    assert not action.covered or pol.history == "transcript"
    for src, cov in zip(covered, action.covered, strict=True):
        assert src.visibility is cov.visibility is Visibility.PUBLIC
        assert not src.attachments and not src.read_only
        assert not (src.author.id == ME and MARKERS.belongs(src.marker, CID))
        assert cov.fingerprint == src.fingerprint
        assert render.helpdesk_comment_to_tracker(
            pol, src, markup=world.ctx.tracker_caps.markup) in action.new.description
    assert covered == sorted(covered, key=lambda c: (c.created_at, c.id))
    assert set(TOKEN.findall(text)) == {t for c in covered for t in TOKEN.findall(c.body)}
    assert redmine_mentions(text, "textile") == [], text
    assert render.description_size(action.new.description) <= render.DESCRIPTION_MAX_BYTES
    closing = action.new.description.splitlines()[-1]
    assert closing.startswith("End of transcript.") is bool(covered), closing
    if not vis.include_customer_pii:
        assert CUSTOMER_NAME not in text and CUSTOMER_EMAIL not in text


def check_shape(world: World, plan: Plan) -> None:
    """Markers are ours, unique per plan and new on their target; the snapshot comes last."""
    markers = []
    removed = {a.comment_id for a in plan.actions if isinstance(a, RemoveComment)}
    for action in plan.writes:
        if isinstance(action, AddComment):
            assert is_our_marker(action.new.marker)
            present = (world.conversation.comments if action.target is Side.HELPDESK
                       else world.issue.comments if world.issue else ())
            # A leaked copy removed by the plan takes its marker with it.
            assert action.new.marker not in {c.marker for c in present if c.id not in removed}
            markers.append(action.new.marker)
            if action.source_id:
                assert action.new.marker == MARKERS.comment(CID, action.target.other,
                                                            action.source_id)
        elif isinstance(action, CreateIssue):
            assert action.new.marker == MARKERS.issue(CID)
            markers.append(action.new.marker)
    # A message goes into the description or as a note, never both.
    sent = [c.source_id for a in plan.actions if isinstance(a, CreateIssue) for c in a.covered]
    sent += [a.source_id for a in plan.actions
             if isinstance(a, AddComment) and a.target is Side.TRACKER]
    assert len(sent) == len(set(sent)), sent
    assert len(markers) == len(set(markers))
    saves = [i for i, a in enumerate(plan.actions) if isinstance(a, SaveSnapshot)]
    assert saves in ([], [len(plan.actions) - 1])


def check_fields(world: World, plan: Plan) -> None:
    """Field writes go only where the pair's direction, mapping and capabilities allow."""
    pol, caps = world.ctx.policy, world.ctx.tracker_caps
    owners = {"status": pol.status_field.owner, "assignee": pol.assignee_field.owner}
    for action in plan.actions:
        if isinstance(action, Conflict):
            assert action.winner.value == owners[action.field]
        if not isinstance(action, UpdateTicket):
            continue
        u, side = action.update, action.target
        assert world.issue is not None
        fields = {k for k, v in u.model_dump().items() if v is not None}
        assert len(fields - {"status_code"}) == 1
        if u.state is not None:
            assert _flows(pol.status_field.direction, side)
            table = pol.status
            if side is Side.TRACKER:
                check_tracker_status(world, u.state, u.status_code)
            else:
                assert u.status_code is None
                assert u.state in (table.on_issue_closed, table.on_issue_reopened,
                                   *table.issue_to_conversation.values())
        if u.assignee_id is not None:
            assert caps.assignee and _flows(pol.assignee_field.direction, side)
            mapped = (pol.staff_to_user.values() if side is Side.TRACKER
                      else pol.staff_to_user.keys())
            assert u.assignee_id in mapped
        if u.tags is not None:
            assert side is Side.TRACKER and caps.labels
            assert _flows(pol.tags_field.direction, Side.TRACKER)
            touched = set(u.tags) ^ set(world.issue.ticket.tags)
            assert touched and touched <= set(pol.tag_to_label.values())


def check_tracker_status(world: World, state: TicketState, code: str | None) -> None:
    """A status written to the tracker is one the table or the close/reopen rules call for,
    for the state the conversation is in."""
    table, hd = world.ctx.policy.status, world.conversation.ticket.status.state
    assert world.issue is not None
    was_closed = world.issue.ticket.status.state is TicketState.CLOSED
    if hd is TicketState.CLOSED:
        assert table.on_conversation_closed == "close_issue" and not was_closed
    else:
        assert state is TicketState.OPEN
        assert not was_closed or table.on_conversation_reopened == "reopen_issue"
    key = dict(table.conversation_to_issue).get(hd.value)
    if key is None:
        assert code is None
        assert state is (TicketState.CLOSED if hd is TicketState.CLOSED else TicketState.OPEN)
    else:
        named = tracker_status(code or "")
        assert status_named(named, key) and named.state is state


def _flows(direction: str, towards: Side) -> bool:
    return direction in ("both", f"{towards.other.value}_to_{towards.value}")


def engine_written(world: World, side: Side) -> set[str]:
    """Ids of comments on a side that the engine wrote (by marker or as a link target)."""
    seen = world.conversation if side is Side.HELPDESK else world.issue
    ids = {c.id for c in seen.comments
           if c.author.id == ME and MARKERS.belongs(c.marker, CID)} if seen else set()
    if world.link is not None:
        ids |= {cl.target_id for cl in world.link.comment_links if cl.source_side is side.other}
    return ids


def comment_ids(world: World, side: Side) -> set[str]:
    view = world.conversation if side is Side.HELPDESK else world.issue
    return {c.id for c in view.comments} if view else set()


def check_no_echo(world: World, plan: Plan) -> None:
    """No copy of something the engine wrote, nor of a read-only (collision) message."""
    for action in plan.actions:
        if isinstance(action, CreateIssue):
            for c in action.covered:
                assert c.source_id not in engine_written(world, Side.HELPDESK)
        if isinstance(action, AddComment) and action.source_id:
            assert action.source_id not in engine_written(world, action.target.other)
            view = world.conversation if action.target is Side.TRACKER else world.issue
            assert view is not None
            (src,) = [c for c in view.comments if c.id == action.source_id]
            assert not src.read_only


def check_snapshot(after: World, plan: Plan) -> None:
    """A saved snapshot holds the field values both sides have once the plan is applied."""
    saves = [a for a in plan.actions if isinstance(a, SaveSnapshot)]
    if not saves or after.issue is None:
        return
    fields = ("helpdesk_state", "tracker_state", "helpdesk_tags", "tracker_labels",
              "helpdesk_assignee", "tracker_assignee")
    now = agreed(after.conversation.ticket, after.issue.ticket)
    assert saves[0].snapshot.model_dump(include=set(fields)) == now.model_dump(
        include=set(fields))


def round_(world: World) -> World:
    plan = world.reconcile()
    check_visibility(world, plan)
    check_shape(world, plan)
    check_no_echo(world, plan)
    check_fields(world, plan)
    after = apply_plan(world, plan)
    check_snapshot(after, plan)
    return after


def assert_converged(world: World) -> None:
    """Reconciling again writes nothing, and once its snapshot is saved it is fully idle."""
    plan = world.reconcile()
    assert plan.writes == (), plan.writes
    idle = apply_plan(world, plan).reconcile()
    assert all(isinstance(a, Skip) for a in idle.actions), idle.actions


def without_links(world: World) -> World:
    if world.link is None:
        return world
    return replace(world, link=world.link.model_copy(update={"comment_links": ()}))


def without_markers(world: World) -> World:
    """A tracker that drops our markers: only copies recorded in comment links keep a guard."""
    linked = {cl.target_id for cl in world.link.comment_links} if world.link else set()

    def strip(view: SideView | None) -> SideView | None:
        if view is None:
            return None
        return view.model_copy(update={"comments": tuple(
            c.model_copy(update={"marker": None}) if c.id in linked else c
            for c in view.comments)})
    conv = strip(world.conversation)
    assert conv is not None
    return replace(world, conversation=conv, issue=strip(world.issue))


# --- the properties ----------------------------------------------------------------------------

@FAST
@given(worlds(), st.lists(CHANGES, max_size=6))
def test_visibility_is_never_raised(world: World, changes: list[tuple[Any, ...]]) -> None:
    """Across random worlds and edits, no plan leaks internal text, PII or unasked replies."""
    world = round_(world)
    for op in changes:
        world = change(world, op)
    round_(round_(world))  # every plan is checked inside round_


@FAST
@given(worlds(), st.lists(CHANGES, max_size=6), st.lists(CHANGES, max_size=4))
def test_reconcile_apply_converges(world: World, first: list[tuple[Any, ...]],
                                   second: list[tuple[Any, ...]]) -> None:
    """One reconcile+apply round leaves nothing to write, even after people change both sides."""
    world = round_(world)
    assert_converged(world)
    for batch in (first, second):
        for op in batch:
            world = change(world, op)
        world = round_(world)
        assert_converged(world)
        world = round_(world)  # a second round is a no-op apart from the snapshot
        assert_converged(world)


@FAST
@given(field_worlds(), st.lists(FIELD_CHANGES, max_size=8))
def test_fields_follow_policy_and_converge(world: World,
                                          changes: list[tuple[Any, ...]]) -> None:
    """Field writes respect direction, mapping, capability and owner, and settle in one round."""
    world = round_(world)
    assert_converged(world)
    for op in changes:
        world = change(world, op)
        world = round_(world)
        assert_converged(world)


@FAST
@given(worlds(), st.lists(CHANGES, max_size=6))
def test_no_echo_even_when_links_or_markers_are_lost(world: World,
                                                     changes: list[tuple[Any, ...]]) -> None:
    """What the engine wrote is never copied back, whether links or markers survive."""
    for variant in (without_links, without_markers):
        check_no_echo(variant(world), variant(world).reconcile())
        check_shape(variant(world), variant(world).reconcile())
    world = round_(world)
    for op in changes:
        world = change(world, op)
        lost = without_links(world)
        check_no_echo(lost, lost.reconcile())
        check_shape(lost, lost.reconcile())  # includes: no copy whose marker is present
    world = round_(world)
    # Either guard alone keeps a world the engine wrote quiet: no duplicates, no ping-pong.
    # (A copy a person deleted while its link was lost is re-sent: nothing remembers it.)
    assert without_markers(world).reconcile().writes == ()
    gone = {cl.source_id for cl in world.link.comment_links
            if cl.target_id not in comment_ids(world, cl.source_side.other)
            } if world.link else set()
    assert {a.source_id for a in without_links(world).reconcile().writes
            if isinstance(a, AddComment)} <= gone


def _shuffled(view: SideView | None, seed: int) -> SideView | None:
    if view is None:
        return None
    comments = list(view.comments)
    random.Random(seed).shuffle(comments)
    return view.model_copy(update={"comments": tuple(comments)})


@FAST
@given(worlds(), st.integers(0, 1000))
def test_reconcile_is_deterministic(world: World, seed: int) -> None:
    """Equal inputs (also copied, or listed in another order) give equal plans."""
    plan = world.reconcile()
    again = reconcile(world.ctx, world.conversation.model_copy(deep=True),
                      None if world.issue_deleted or world.issue is None
                      else world.issue.model_copy(deep=True),
                      world.link.model_copy(deep=True) if world.link else None,
                      issue_deleted=world.issue_deleted)
    assert plan == again
    conv = _shuffled(world.conversation, seed)
    assert conv is not None
    shuffled = replace(world, conversation=conv, issue=_shuffled(world.issue, seed))
    assert shuffled.reconcile() == plan
