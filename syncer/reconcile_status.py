"""Status, both ways: the part of the reconciler's field merge that moves a conversation's
state and its issue's status ([pairs.status], see ``StatusMap``).

Pure, like the rest of the reconciler. A change is told from the last-synced snapshot, and
every write records the value it sets in the snapshot it leads to, so the sync's own
status writes are never seen as a person's change on the next pass (no echo). A tracker
status id is kept in the snapshot only for pairs whose table names tracker statuses: to
the others, only open versus closed matters, as before the table existed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from syncer import render
from syncer.config import StatusMap, status_named
from syncer.models import Comment, NewComment, TicketState, TicketStatus, TicketUpdate, Visibility
from syncer.plan import Action, AddComment, Conflict, Side, Skip, Snapshot, UpdateTicket

if TYPE_CHECKING:
    from syncer.plan import SideView
    from syncer.reconcile import PairContext

_REOPENS_FROM = (TicketState.CLOSED,)
_OPEN_STATES = (TicketState.OPEN, TicketState.PENDING, TicketState.ON_HOLD)


def flows(direction: str, towards: Side) -> bool:
    if direction == "both":
        return True
    if towards is Side.HELPDESK:
        return direction == "tracker_to_helpdesk"
    return direction == "helpdesk_to_tracker"


def tracker_status_of(table: StatusMap, status: TicketStatus) -> str | None:
    """What the snapshot keeps of the issue's status besides its state."""
    return status.code if table.names_tracker_statuses else None


def find_status(statuses: Sequence[TicketStatus], key: str) -> TicketStatus | None:
    return next((s for s in statuses if status_named(s, key)), None)


def status_changes(ctx: PairContext, conversation: SideView, issue: SideView, base: Snapshot,
                   now: Snapshot, own_helpdesk: Mapping[str, Comment]
                   ) -> tuple[list[Action], Snapshot]:
    """The status writes one side's change since ``base`` calls for, and the snapshot
    they lead to."""
    policy, fp = ctx.policy, ctx.policy.status_field
    cid, iid = conversation.ticket.id, issue.ticket.id
    hd_state, tr_state = now.helpdesk_state, now.tracker_state
    tr_changed = tr_state != base.tracker_state or (
        base.tracker_status is not None and now.tracker_status != base.tracker_status)
    hd_changed = hd_state != base.helpdesk_state
    actions: list[Action] = []
    to_hd = (_to_helpdesk(policy.status, base, now, issue.ticket.status)
             if tr_changed and flows(fp.direction, Side.HELPDESK) else None)
    to_tr: tuple[TicketState, str | None] | None = None
    if hd_changed and flows(fp.direction, Side.TRACKER):
        to_tr, problem = _to_tracker(ctx, base, now)
        if problem is not None:
            actions.append(Skip(conversation_id=cid, object_id=iid, reason=problem))
    if to_hd is not None and to_hd == hd_state:
        to_hd = None
    if to_hd is not None and to_tr is not None:
        winner = Side.TRACKER if fp.owner == "tracker" else Side.HELPDESK
        actions.append(Conflict(conversation_id=cid, field="status",
                                helpdesk_value=str(hd_state), tracker_value=str(tr_state),
                                winner=winner))
        if winner is Side.TRACKER:
            to_tr = None
        else:
            to_hd = None
    if to_hd is not None:
        # The reply goes before the state change: once the conversation has its new state
        # the change is no longer seen, so a reply planned after it would be lost if the
        # pass stopped in between. Its key is numbered by the closings already replied to
        # (kept in the snapshot, which only moves once the whole plan is applied), never by
        # anything that changes while the issue stays closed: a pass retried after the
        # issue was edited again finds the reply it sent and does not mail the customer
        # a second time. A move between two closed statuses is no new closing.
        closing = tr_state == TicketState.CLOSED and base.tracker_state != TicketState.CLOSED
        if closing and policy.status.close_reply_template:
            marker = ctx.markers.close_reply(cid, iid, base.close_replies)
            if marker not in own_helpdesk:
                actions.append(AddComment(
                    conversation_id=cid, target=Side.HELPDESK, ticket_id=cid, source_id="",
                    new=NewComment(
                        body=render.close_reply(policy, conversation.ticket, issue.ticket),
                        visibility=Visibility.PUBLIC, notify_customer=True, marker=marker)))
            now = now.model_copy(update={"close_replies": base.close_replies + 1})
        actions.append(UpdateTicket(conversation_id=cid, target=Side.HELPDESK, ticket_id=cid,
                                    update=TicketUpdate(state=to_hd),
                                    reason=f"issue is {issue.ticket.status.name} ({tr_state})"))
        now = now.model_copy(update={"helpdesk_state": to_hd})
    if to_tr is not None:
        state, code = to_tr
        actions.append(UpdateTicket(conversation_id=cid, target=Side.TRACKER, ticket_id=iid,
                                    update=TicketUpdate(state=state, status_code=code),
                                    reason=f"conversation is {hd_state}"))
        # The connector's own close/reopen status (no code) is learnt on the next read.
        now = now.model_copy(update={"tracker_state": state, "tracker_status": code})
    # The snapshot's count can be behind the replies the conversation shows: a snapshot
    # restored from a backup taken before a closing was replied to. Counted on from the
    # replies found, or the next closing would get the key of a reply already sent, find
    # it and mail nothing. Counted after the decision above, so a retried closing still
    # finds the reply an interrupted pass sent for it.
    sent = now.close_replies
    while ctx.markers.close_reply(cid, iid, sent) in own_helpdesk:
        sent += 1
    return actions, now.model_copy(update={"close_replies": sent})


def _to_helpdesk(table: StatusMap, base: Snapshot, now: Snapshot,
                 status: TicketStatus) -> TicketState | None:
    """The conversation state the issue's new status calls for, or None."""
    mapped = table.wanted_for(status)
    if mapped is not None:
        return mapped
    closed = TicketState.CLOSED
    if now.tracker_state == closed and base.tracker_state != closed:
        return table.on_issue_closed
    if now.tracker_state != closed and base.tracker_state == closed:
        # Only a conversation still closed: one a customer already reopened keeps the
        # state it has (pending, on hold) rather than being moved again.
        return table.on_issue_reopened if now.helpdesk_state == closed else None
    return None


def _to_tracker(ctx: PairContext, base: Snapshot, now: Snapshot
                ) -> tuple[tuple[TicketState, str | None] | None, str | None]:
    """(state, tracker status id or None for the connector's default) the conversation's
    new state calls for, or None; and why a status the table names cannot be set."""
    table = ctx.policy.status
    named: dict[str, str] = {str(k): v for k, v in table.conversation_to_issue.items()}
    hd_state, tr_state = now.helpdesk_state, now.tracker_state
    closed = TicketState.CLOSED
    if hd_state == closed:
        if base.helpdesk_state == closed or table.on_conversation_closed != "close_issue":
            return None, None
        if tr_state == closed:
            return None, None
        key = named.get("closed")
        reopening = False
    elif hd_state in _OPEN_STATES:
        key = named.get(hd_state.value)
        reopening = tr_state == closed
        if reopening and (base.helpdesk_state not in _REOPENS_FROM
                          or table.on_conversation_reopened != "reopen_issue"):
            return None, None
        if not reopening and key is None:
            return None, None
    else:
        return None, None
    if key is None:
        return (closed if hd_state == closed else TicketState.OPEN, None), None
    where = f"[pairs.status] conversation_to_issue {hd_state.value!r}"
    status = find_status(ctx.tracker_statuses, key)
    if status is None:
        known = ", ".join(f"{s.code} {s.name}" for s in ctx.tracker_statuses) or "none read"
        return None, f"{where}: {key!r} is not a status of the tracker (known: {known})"
    if status.state == closed and hd_state != closed:
        return None, f"{where}: {status.name!r} is a closed status; it cannot reopen an issue"
    if status.code == now.tracker_status and not reopening:
        return None, None
    return (status.state, status.code), None
