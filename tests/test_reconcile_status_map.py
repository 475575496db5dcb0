"""Reconciler tables for status both ways: reopening, the [pairs.status] table of tracker
statuses, no echo of the sync's own status writes, one close reply per closing."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from syncer.models import TicketState, TicketStatus
from syncer.plan import AddComment, Plan, SaveSnapshot, Side, Skip, Snapshot, UpdateTicket
from syncer.reconcile import reconcile
from tests.reconcile_builders import (
    CID,
    IID,
    MARKERS,
    World,
    agreed,
    apply_plan,
    context,
    conversation,
    issue,
    link,
    of_type,
    policy,
    tracker_status,
    view,
)

OP, P, H, C = TicketState.OPEN, TicketState.PENDING, TicketState.ON_HOLD, TicketState.CLOSED
REOPEN = {"on_conversation_reopened": "reopen_issue"}
BOTH_WAYS = {"on_conversation_closed": "close_issue", **REOPEN}


def rm_issue(key: str, *, updated: int = 0) -> Any:
    """An issue in one of the tracker's own statuses (by id or name)."""
    return issue(updated=updated).model_copy(update={"status": tracker_status(key)})


def _plan(status: dict[str, Any], conv: Any, iss: Any, base: Snapshot) -> Plan:
    return reconcile(context(policy(status=status)), view(conv), view(iss),
                     link(snapshot=base))


def _writes(plan: Plan, side: Side) -> list[tuple[TicketState | None, str | None]]:
    return [(a.update.state, a.update.status_code) for a in of_type(plan, UpdateTicket)
            if a.target is side]


def _saved(plan: Plan) -> Snapshot:
    (save,) = of_type(plan, SaveSnapshot)
    snapshot: Snapshot = save.snapshot
    return snapshot


# (id, [pairs.status], base conversation state, base issue status, now conversation
#  state, now issue status, Re:amaze write, tracker write)
CASES: list[tuple[str, dict[str, Any], TicketState, str, TicketState, str,
                  list[TicketState], list[tuple[TicketState, str | None]]]] = [
    ("conv-reopened-reopens-issue", REOPEN, C, "Closed", OP, "Closed", [], [(OP, None)]),
    ("conv-reopened-to-pending-reopens-issue", REOPEN, C, "Closed", P, "Closed", [],
     [(OP, None)]),
    ("conv-reopened-reopens-to-the-mapped-status",
     {**REOPEN, "conversation_to_issue": {"open": "In Progress"}}, C, "Closed", OP, "Closed",
     [], [(OP, "2")]),
    ("conv-reopened-without-reopen-issue-does-nothing", {"on_conversation_closed":
                                                        "close_issue"},
     C, "Closed", OP, "Closed", [], []),
    ("conv-pending-moves-an-open-issue", {"conversation_to_issue": {"pending": "Feedback"}},
     OP, "New", P, "New", [], [(OP, "4")]),
    ("conv-pending-unmapped-leaves-the-issue", {"conversation_to_issue": {"open": "New"}},
     OP, "In Progress", P, "In Progress", [], []),
    ("conv-pending-does-not-reopen-a-closed-issue-without-reopen_issue",
     {"conversation_to_issue": {"pending": "Feedback"}}, OP, "Closed", P, "Closed", [], []),
    ("conv-closed-closes-to-the-mapped-status",
     {**BOTH_WAYS, "conversation_to_issue": {"closed": "Rejected"}}, OP, "New", C, "New", [],
     [(C, "6")]),
    ("conv-closed-to-an-open-status", {**BOTH_WAYS, "conversation_to_issue": {
        "closed": "Resolved"}}, OP, "New", C, "New", [], [(OP, "3")]),
    ("conv-closed-issue-already-there", {**BOTH_WAYS, "conversation_to_issue": {
        "closed": "Resolved"}}, OP, "Resolved", C, "Resolved", [], []),
    ("issue-to-mapped-open-status", {"issue_to_conversation": {"Feedback": "pending"}},
     OP, "New", OP, "Feedback", [P], []),
    ("issue-to-mapped-status-by-id", {"issue_to_conversation": {"4": "pending"}},
     OP, "New", OP, "Feedback", [P], []),
    ("issue-to-mapped-closed-status", {"issue_to_conversation": {"Rejected": "pending"}},
     OP, "New", OP, "Rejected", [P], []),
    ("issue-unmapped-open-move", {"issue_to_conversation": {"Feedback": "pending"}},
     OP, "New", OP, "In Progress", [], []),
    ("issue-unmapped-close-uses-on_issue_closed", {"issue_to_conversation": {
        "Feedback": "pending"}}, OP, "New", OP, "Closed", [C], []),
    ("issue-closed-to-closed-is-no-new-closing", {"issue_to_conversation": {
        "Feedback": "pending"}}, OP, "Closed", OP, "Rejected", [], []),
    ("issue-reopened-conversation-closed", {"issue_to_conversation": {"Feedback": "pending"}},
     C, "Closed", C, "New", [OP], []),
    ("issue-reopened-to-mapped-status", {"issue_to_conversation": {"Feedback": "pending"}},
     C, "Closed", C, "Feedback", [P], []),
]


@pytest.mark.parametrize(("status", "hd0", "tr0", "hd1", "tr1", "to_hd", "to_tr"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_status_table_both_ways(status: dict[str, Any], hd0: TicketState, tr0: str,
                                hd1: TicketState, tr1: str, to_hd: list[TicketState],
                                to_tr: list[tuple[TicketState, str | None]]) -> None:
    """Each side's change moves the other as the table says, and the snapshot records
    what the write set (so it is not seen as a change next time)."""
    base = agreed(conversation(state=hd0), rm_issue(tr0))
    plan = _plan(status, conversation(state=hd1, updated=2), rm_issue(tr1, updated=2), base)
    assert [s for s, _ in _writes(plan, Side.HELPDESK)] == to_hd
    assert _writes(plan, Side.TRACKER) == to_tr
    assert not of_type(plan, Skip)
    saved = _saved(plan)
    assert saved.helpdesk_state == (to_hd[0] if to_hd else hd1)
    if to_tr:
        assert (saved.tracker_state, saved.tracker_status) == to_tr[0]


def test_a_status_the_tracker_does_not_have_is_skipped_with_the_reason() -> None:
    """A name the tracker lacks (renamed since `check` ran) writes nothing and says why."""
    base = agreed(conversation(state=C), rm_issue("Closed"))
    plan = _plan({**REOPEN, "conversation_to_issue": {"open": "Reopened"}},
                 conversation(state=OP, updated=2), rm_issue("Closed"), base)
    assert _writes(plan, Side.TRACKER) == []
    (skip,) = of_type(plan, Skip)
    assert "'Reopened' is not a status of the tracker (known: 1 New, 2 In Progress" in (
        skip.reason)


def _world(status: dict[str, Any], conv_state: TicketState, issue_key: str,
           **pol: Any) -> World:
    conv, iss = conversation(state=conv_state), rm_issue(issue_key)
    return World(ctx=context(policy(status=status, **pol)), conversation=view(conv),
                 issue=view(iss), link=link(snapshot=agreed(conv, iss)))


def _set(world: World, side: Side, status: TicketStatus) -> World:
    """A person changes one side's status."""
    clock = world.clock + 1
    target = world.conversation if side is Side.HELPDESK else world.issue
    assert target is not None
    moved = target.model_copy(update={"ticket": target.ticket.model_copy(update={
        "status": status, "updated_at": conversation(updated=clock).updated_at})})
    if side is Side.HELPDESK:
        return replace(world, conversation=moved, clock=clock)
    return replace(world, issue=moved, clock=clock)


def _sync(world: World) -> tuple[World, Plan]:
    plan = world.reconcile()
    return apply_plan(world, plan), plan


def _quiet(world: World) -> None:
    """The next pass writes nothing: the sync's own status writes do not come back."""
    assert world.reconcile().writes == ()


def _hd(state: TicketState) -> TicketStatus:
    return conversation(state=state).status


STEPS_BOTH_WAYS = [  # who changes what, then what both sides show after the pass
    # "Open", "Closed": the tracker's own reopen and close statuses (the connector's pick)
    (Side.TRACKER, "Closed", C, "Closed"), (Side.HELPDESK, OP, OP, "Open"),
    (Side.HELPDESK, C, C, "Closed"), (Side.TRACKER, "New", OP, "New")]
STEPS_TABLE = [
    (Side.TRACKER, "Closed", C, "Closed"), (Side.HELPDESK, OP, OP, "In Progress"),
    (Side.HELPDESK, P, P, "Feedback"), (Side.TRACKER, "Rejected", C, "Rejected"),
    (Side.HELPDESK, OP, OP, "In Progress"), (Side.HELPDESK, C, C, "Rejected"),
    (Side.TRACKER, "Feedback", P, "Feedback")]


@pytest.mark.parametrize(("status", "steps"), [
    (BOTH_WAYS, STEPS_BOTH_WAYS),
    ({**BOTH_WAYS, "issue_to_conversation": {"Feedback": "pending", "Rejected": "closed"},
      "conversation_to_issue": {"open": "In Progress", "pending": "Feedback",
                                "closed": "Rejected"}}, STEPS_TABLE),
], ids=["defaults", "table"])
def test_round_trip_both_ways_without_echo(status: dict[str, Any],
                                           steps: list[tuple[Side, Any, TicketState, str]]
                                           ) -> None:
    """Closed and reopened on either side, each change reaches the other side once, and a
    pass after each writes nothing."""
    w = _world(status, OP, "New")
    for side, new, conv_after, issue_after in steps:
        changed = tracker_status(new) if side is Side.TRACKER else _hd(new)
        w, plan = _sync(_set(w, side, changed))
        assert len(plan.writes) == 1, (side, new, plan.writes)
        assert w.issue is not None
        assert w.conversation.ticket.status.state is conv_after, (side, new)
        shown = w.issue.ticket.status
        assert issue_after in (shown.name, shown.state.value.title()), (side, new, shown)
        _quiet(w)


def test_reopen_then_close_sends_one_reply_per_closing() -> None:
    """Issue closed (reply 1), conversation reopened by the customer (issue reopened),
    issue closed again (reply 2): one reply per closing, each with its own key, and no
    reply when the conversation is the side that closed."""
    w = _world({**BOTH_WAYS, "close_reply_template": "Fixed: {subject}"}, OP, "New")
    replies: list[str] = []
    for side, new in [(Side.TRACKER, tracker_status("Closed")), (Side.HELPDESK, _hd(OP)),
                      (Side.TRACKER, tracker_status("Closed")), (Side.HELPDESK, _hd(OP)),
                      (Side.HELPDESK, _hd(C))]:
        w, plan = _sync(_set(w, side, new))
        replies += [a.new.marker for a in of_type(plan, AddComment)]
        _quiet(w)
    assert replies == [MARKERS.close_reply(CID, IID, 0), MARKERS.close_reply(CID, IID, 1)]
    assert w.issue is not None and w.issue.ticket.status.state is C
