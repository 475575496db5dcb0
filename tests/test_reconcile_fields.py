"""Reconciler tables for fields: three-way status, assignee and labels against the snapshot."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.models import TicketState, Visibility
from syncer.plan import (
    AddComment,
    Conflict,
    Plan,
    SaveSnapshot,
    Side,
    Snapshot,
    UpdateTicket,
)
from syncer.reconcile import reconcile
from tests.reconcile_builders import (
    CID,
    IID,
    MARKERS,
    agreed,
    comment,
    context,
    conversation,
    issue,
    link,
    of_type,
    ours,
    policy,
    view,
)

OP, P, H, C = TicketState.OPEN, TicketState.PENDING, TicketState.ON_HOLD, TicketState.CLOSED


def _plan(ctx: Any, conv: Any, iss: Any, base: Snapshot | None) -> Plan:
    return reconcile(ctx, view(conv), view(iss), link(snapshot=base))


def _updates(plan: Plan, side: Side) -> list[Any]:
    return [a.update for a in of_type(plan, UpdateTicket) if a.target is side]


def _saved(plan: Plan) -> Snapshot:
    (save,) = of_type(plan, SaveSnapshot)
    assert plan.actions[-1] == save  # after every write: a failed write keeps the old base
    snapshot: Snapshot = save.snapshot
    return snapshot


# --- snapshot ----------------------------------------------------------------------------

def test_no_snapshot_adopts_current_values_without_field_writes() -> None:
    """A link without a snapshot makes no field changes and saves what both sides show now."""
    conv = conversation(state=C, tags=("bug",), assignee="alice@acme.example", updated=5)
    iss = issue(state=OP, labels=("defect",), assignee="7", updated=6)
    ctx = context(policy(staff_to_user={"bob@acme.example": "7"},
                         tag_to_label={"bug": "defect"},
                         status={"on_conversation_closed": "close_issue"},
                         status_field={"direction": "both"}))
    plan = _plan(ctx, conv, iss, None)
    assert plan.writes == ()
    assert _saved(plan) == agreed(conv, iss)


def test_unchanged_sides_plan_nothing_at_all() -> None:
    """When nothing moved since the snapshot the plan is empty (not even a SaveSnapshot)."""
    conv, iss = conversation(state=P, tags=("bug",)), issue(state=OP, labels=("x",))
    assert _plan(context(), conv, iss, agreed(conv, iss)).actions == ()


def test_only_change_times_moved_saves_snapshot_without_writes() -> None:
    """A change that needs no sync still records the new change times."""
    conv, iss = conversation(updated=1), issue(updated=1)
    base = agreed(conversation(), issue())
    plan = _plan(context(), conv, iss, base)
    assert plan.writes == ()
    assert _saved(plan).helpdesk_updated_at == conv.updated_at.isoformat()


# --- status --------------------------------------------------------------------------

STATUS_CASES: list[tuple[str, dict[str, Any], tuple[TicketState, TicketState],
                         tuple[TicketState, TicketState], TicketState | None,
                         TicketState | None]] = [
    # id, policy, base (hd, tr), now (hd, tr), helpdesk update, tracker update
    ("issue-closed", {}, (OP, OP), (OP, C), C, None),
    ("issue-closed-conv-pending", {}, (P, OP), (P, C), C, None),
    ("issue-closed-conv-already-closed", {}, (C, OP), (C, C), None, None),
    ("issue-closed-maps-to-pending", {"status": {"on_issue_closed": "pending"}},
     (OP, OP), (OP, C), P, None),
    ("issue-closed-mapping-off", {"status": {"on_issue_closed": None}}, (OP, OP), (OP, C),
     None, None),
    ("issue-reopened-conv-closed", {}, (C, C), (C, OP), OP, None),
    ("issue-reopened-to-pending", {"status": {"on_issue_reopened": "pending"}},
     (C, C), (C, OP), P, None),
    ("issue-reopened-conv-open", {}, (OP, C), (OP, OP), None, None),
    ("issue-reopened-mapping-off", {"status": {"on_issue_reopened": None}}, (C, C), (C, OP),
     None, None),
    ("issue-moved-not-closed", {}, (OP, OP), (OP, H), None, None),
    ("conv-closed-default-nothing", {}, (OP, OP), (C, OP), None, None),
    # Left unset, the direction follows the table (it used to stay tracker_to_helpdesk and
    # close_issue silently did nothing).
    ("conv-closed-close-issue-default-direction",
     {"status": {"on_conversation_closed": "close_issue"}}, (OP, OP), (C, OP), None, C),
    ("conv-closed-close-issue-both",
     {"status": {"on_conversation_closed": "close_issue"}, "status_field": {"direction": "both"}},
     (OP, OP), (C, OP), None, C),
    ("conv-closed-close-issue-push",
     {"status": {"on_conversation_closed": "close_issue"},
      "status_field": {"direction": "helpdesk_to_tracker"}}, (OP, OP), (C, OP), None, C),
    ("conv-closed-issue-already-closed",
     {"status": {"on_conversation_closed": "close_issue"}, "status_field": {"direction": "both"}},
     (OP, C), (C, C), None, None),
    ("conv-reopened-does-not-reopen-issue", {"status_field": {"direction": "both"}},
     (C, C), (OP, C), None, None),
    ("issue-closed-direction-push-only", {"status_field": {"direction": "helpdesk_to_tracker"}},
     (OP, OP), (OP, C), None, None),
    ("issue-closed-direction-none", {"status_field": {"direction": "none"}}, (OP, OP), (OP, C),
     None, None),
]


@pytest.mark.parametrize(("pol", "base", "now", "to_hd", "to_tr"),
                         [c[1:] for c in STATUS_CASES], ids=[c[0] for c in STATUS_CASES])
def test_status_three_way_table(pol: dict[str, Any], base: tuple[TicketState, TicketState],
                                now: tuple[TicketState, TicketState],
                                to_hd: TicketState | None, to_tr: TicketState | None) -> None:
    """Status moves only on the transitions the policy maps, in the direction it allows."""
    conv, iss = conversation(state=now[0], updated=3), issue(state=now[1], updated=3)
    base_snap = agreed(conversation(state=base[0]), issue(state=base[1]))
    plan = _plan(context(policy(**pol)), conv, iss, base_snap)
    assert [u.state for u in _updates(plan, Side.HELPDESK)] == ([to_hd] if to_hd else [])
    assert [u.state for u in _updates(plan, Side.TRACKER)] == ([to_tr] if to_tr else [])
    assert of_type(plan, Conflict) == []
    saved = _saved(plan)
    assert saved.helpdesk_state == (to_hd or now[0])
    assert saved.tracker_state == (to_tr or now[1])
    for action in of_type(plan, UpdateTicket):
        assert action.ticket_id == (CID if action.target is Side.HELPDESK else IID)
        assert action.reason


@pytest.mark.parametrize(("owner", "to_hd", "to_tr"), [("tracker", OP, None),
                                                       ("helpdesk", None, C)])
def test_status_both_changed_is_a_conflict_the_owner_wins(owner: str, to_hd: TicketState | None,
                                                          to_tr: TicketState | None) -> None:
    """Issue reopened while the conversation closed: a Conflict, and only the owner's side wins."""
    pol = policy(status={"on_conversation_closed": "close_issue"},
                 status_field={"direction": "both", "owner": owner})
    base = agreed(conversation(state=OP), issue(state=C))
    plan = _plan(context(pol), conversation(state=C, updated=2), issue(state=OP, updated=2), base)
    (conflict,) = of_type(plan, Conflict)
    assert conflict.field == "status" and conflict.winner.value == owner
    assert (conflict.helpdesk_value, conflict.tracker_value) == ("closed", "open")
    assert [u.state for u in _updates(plan, Side.HELPDESK)] == ([to_hd] if to_hd else [])
    assert [u.state for u in _updates(plan, Side.TRACKER)] == ([to_tr] if to_tr else [])


TEMPLATE = "Good news: {subject} is fixed ({issue_url})."


def test_close_reply_is_public_notifying_and_templated() -> None:
    """Closing the issue sends the templated public reply to the customer, once per close."""
    pol = policy(status={"close_reply_template": TEMPLATE})
    base = agreed(conversation(), issue())
    iss = issue(state=C, updated=7)
    plan = _plan(context(pol), conversation(), iss, base)
    (reply,) = of_type(plan, AddComment)
    assert reply.target is Side.HELPDESK and reply.ticket_id == CID and reply.source_id == ""
    assert reply.new.visibility is Visibility.PUBLIC and reply.new.notify_customer is True
    assert reply.new.body == ("Good news: Login fails on Safari is fixed "
                              "(https://redmine.example/issues/42).")
    assert reply.new.marker == MARKERS.close_reply(CID, IID, 0)
    assert [u.state for u in _updates(plan, Side.HELPDESK)] == [C]
    (snap,) = of_type(plan, SaveSnapshot)
    assert snap.snapshot.close_replies == 1


@pytest.mark.parametrize(("pol", "conv_state", "tr_from", "tr_to"), [
    ({}, OP, OP, C),  # no template
    ({"status": {"close_reply_template": TEMPLATE, "on_issue_closed": None}}, OP, OP, C),
    ({"status": {"close_reply_template": TEMPLATE}}, C, OP, C),  # already closed
    ({"status": {"close_reply_template": TEMPLATE}}, C, C, OP),  # reopen
    ({"status": {"close_reply_template": TEMPLATE},
      "status_field": {"direction": "helpdesk_to_tracker"}}, OP, OP, C),
], ids=["no-template", "closing-not-mapped", "conv-already-closed", "reopen", "direction"])
def test_close_reply_only_with_template_and_a_close_applied(
        pol: dict[str, Any], conv_state: TicketState, tr_from: TicketState,
        tr_to: TicketState) -> None:
    """No customer reply unless a template is set and the close is carried to the conversation."""
    base = agreed(conversation(state=conv_state), issue(state=tr_from))
    plan = _plan(context(policy(**pol)), conversation(state=conv_state),
                 issue(state=tr_to, updated=3), base)
    assert of_type(plan, AddComment) == []


def test_close_reply_already_posted_is_not_posted_again() -> None:
    """After a crash between reply and state update, the reply (found by marker) is not resent."""
    pol = policy(status={"close_reply_template": TEMPLATE})
    iss = issue(state=C, updated=7)
    posted = MARKERS.close_reply(CID, IID, 0)
    conv_view = view(conversation(updated=8),
                     (ours(comment("m9", body="Good news", marker=posted, at=8)),))
    plan = reconcile(context(pol), conv_view, view(iss),
                     link(snapshot=agreed(conversation(), issue())))
    assert of_type(plan, AddComment) == []
    assert [u.state for u in _updates(plan, Side.HELPDESK)] == [C]
    (snap,) = of_type(plan, SaveSnapshot)
    assert snap.snapshot.close_replies == 1


def test_close_reply_key_does_not_change_when_the_issue_changes_again() -> None:
    """The issue is edited again (its change time moves) before a failed pass is retried:
    the retry plans the reply under the same key, so the one already sent is found and
    the customer is not mailed twice."""
    pol = policy(status={"close_reply_template": TEMPLATE})
    base = agreed(conversation(), issue())
    first = of_type(_plan(context(pol), conversation(), issue(state=C, updated=7), base),
                    AddComment)
    again = of_type(_plan(context(pol), conversation(), issue(state=C, updated=30), base),
                    AddComment)
    assert [a.new.marker for a in first] == [a.new.marker for a in again]


def test_a_second_closing_gets_a_reply_of_its_own() -> None:
    """Closed, replied, reopened, closed again: the second closing is a new reply."""
    pol = policy(status={"close_reply_template": TEMPLATE})
    replied = ours(comment("m9", body="Good news", marker=MARKERS.close_reply(CID, IID, 0)))
    base = agreed(conversation(), issue(), close_replies=1)
    plan = reconcile(context(pol), view(conversation(), (replied,)),
                     view(issue(state=C, updated=40)), link(snapshot=base))
    (reply,) = of_type(plan, AddComment)
    assert reply.new.marker == MARKERS.close_reply(CID, IID, 1)


def test_a_re_adopted_link_counts_the_close_replies_already_sent() -> None:
    """After the state was lost, the new snapshot counts the replies on the conversation,
    so a later closing does not reuse (and skip on) an old reply's key."""
    replies = tuple(ours(comment(f"m{n}", marker=MARKERS.close_reply(CID, IID, n)))
                    for n in range(2))
    plan = reconcile(context(), view(conversation(), replies), view(issue()),
                     link(snapshot=None))
    (snap,) = of_type(plan, SaveSnapshot)
    assert snap.snapshot.close_replies == 2


def test_a_snapshot_older_than_a_close_reply_counts_it() -> None:
    """The state was restored from a backup taken before the issue closed and its reply
    went out; both sides show closed now. Nothing is sent, and the snapshot counts the
    reply found, so the next closing gets a key of its own (it used to get the sent
    reply's key, find that reply and mail the customer nothing)."""
    pol = policy(status={"close_reply_template": TEMPLATE})
    replied = ours(comment("m9", body="Good news", marker=MARKERS.close_reply(CID, IID, 0)))
    before_the_closing = agreed(conversation(), issue())
    plan = reconcile(context(pol), view(conversation(state=C, updated=9), (replied,)),
                     view(issue(state=C, updated=8)), link(snapshot=before_the_closing))
    assert plan.writes == ()
    assert _saved(plan).close_replies == 1


# --- assignee ------------------------------------------------------------------------

STAFF = {"alice@acme.example": "7", "bob@acme.example": "8", "bobby@acme.example": "8"}
AL, BOB, BOBBY, EVE = "alice@acme.example", "bob@acme.example", "bobby@acme.example", "eve@x"

ASSIGNEE_CASES: list[tuple[str, dict[str, Any], tuple[str | None, str | None],
                           tuple[str | None, str | None], str | None, str | None, bool]] = [
    # id, field policy, base (hd, tr), now (hd, tr), helpdesk update, tracker update, conflict
    ("hd-changed-pushes", {}, (None, None), (AL, None), None, "7", False),
    ("tr-changed-pulls", {}, (None, None), (None, "8"), BOB, None, False),
    ("hd-unmapped-nothing", {}, (None, None), (EVE, None), None, None, False),
    ("tr-unmapped-nothing", {}, (None, None), (None, "99"), None, None, False),
    ("hd-unassigned-not-propagated", {}, (AL, "7"), (None, "7"), None, None, False),
    ("tr-unassigned-not-propagated", {}, (AL, "7"), (AL, None), None, None, False),
    ("push-only-ignores-tr", {"direction": "helpdesk_to_tracker"}, (None, None), (None, "8"),
     None, None, False),
    ("pull-only-ignores-hd", {"direction": "tracker_to_helpdesk"}, (None, None), (AL, None),
     None, None, False),
    ("none", {"direction": "none"}, (None, None), (AL, "8"), None, None, False),
    ("both-changed-agree", {}, (None, None), (AL, "7"), None, None, False),
    ("alias-already-in-sync", {}, (BOB, "8"), (BOBBY, "8"), None, None, False),
    ("tr-changed-to-alias-of-current", {}, (BOBBY, "7"), (BOBBY, "8"), None, None, False),
    ("both-changed-tracker-owns", {"owner": "tracker"}, (None, None), (AL, "8"), BOB, None, True),
    ("both-changed-helpdesk-owns", {"owner": "helpdesk"}, (None, None), (AL, "8"), None, "7",
     True),
    ("both-changed-tracker-owns-unmapped", {"owner": "tracker"}, (None, None), (AL, "99"),
     None, None, True),
    ("both-changed-helpdesk-owns-unmapped", {"owner": "helpdesk"}, (None, None), (EVE, "8"),
     None, None, True),
    ("one-way-push-overrides-tr", {"direction": "helpdesk_to_tracker"}, (None, None),
     (AL, "8"), None, "7", False),
]


@pytest.mark.parametrize(("field", "base", "now", "to_hd", "to_tr", "conflict"),
                         [c[1:] for c in ASSIGNEE_CASES], ids=[c[0] for c in ASSIGNEE_CASES])
def test_assignee_three_way_table(field: dict[str, Any], base: tuple[str | None, str | None],
                                  now: tuple[str | None, str | None], to_hd: str | None,
                                  to_tr: str | None, conflict: bool) -> None:
    """Assignees follow staff_to_user both ways; unmapped means nothing; the owner wins."""
    pol = policy(staff_to_user=STAFF, assignee_field=field)
    base_snap = agreed(conversation(assignee=base[0]), issue(assignee=base[1]))
    conv, iss = conversation(assignee=now[0], updated=2), issue(assignee=now[1], updated=2)
    plan = _plan(context(pol), conv, iss, base_snap)
    assert [u.assignee_id for u in _updates(plan, Side.HELPDESK)] == ([to_hd] if to_hd else [])
    assert [u.assignee_id for u in _updates(plan, Side.TRACKER)] == ([to_tr] if to_tr else [])
    conflicts = of_type(plan, Conflict)
    assert [c.field for c in conflicts] == (["assignee"] if conflict else [])
    if conflict:
        assert conflicts[0].winner.value == field["owner"]
    saved = _saved(plan)
    assert saved.helpdesk_assignee == (to_hd or now[0])
    assert saved.tracker_assignee == (to_tr or now[1])


def test_assignee_ignored_when_tracker_has_no_assignees() -> None:
    """A tracker without the assignee capability gets no assignee updates either way."""
    pol = policy(staff_to_user=STAFF)
    base = agreed(conversation(), issue())
    plan = _plan(context(pol, assignee=False), conversation(assignee=AL, updated=1),
                 issue(assignee="8", updated=1), base)
    assert of_type(plan, UpdateTicket) == [] and of_type(plan, Conflict) == []


# --- labels --------------------------------------------------------------------------

LABELS = {"bug": "defect", "crash": "defect", "urgent": "p1"}

LABEL_CASES: list[tuple[str, dict[str, Any], tuple[tuple[str, ...], tuple[str, ...]],
                        tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...] | None]] = [
    # id, field policy, base (tags, labels), now (tags, labels), tracker labels update
    ("tag-added", {}, ((), ()), (("bug",), ()), ("defect",)),
    ("tag-added-keeps-foreign-labels", {}, ((), ("ui",)), (("urgent",), ("ui",)), ("p1", "ui")),
    ("tag-removed", {}, (("bug", "urgent"), ("defect", "p1", "ui")),
     (("urgent",), ("defect", "p1", "ui")), ("p1", "ui")),
    ("tag-removed-label-still-wanted", {}, (("bug", "crash"), ("defect",)), (("crash",),
                                                                          ("defect",)), None),
    ("unmapped-tag-added", {}, ((), ()), (("vip",), ()), None),
    ("label-already-there", {}, ((), ("defect",)), (("bug",), ("defect",)), None),
    ("tracker-only-change-left-alone", {}, (("bug",), ("defect",)), (("bug",), ()), None),
    ("tracker-removal-survives-unrelated-tag", {}, (("bug",), ("defect",)),
     (("bug", "vip"), ()), None),
    ("tracker-removal-survives-other-mapped-tag", {}, (("bug",), ("defect",)),
     (("bug", "urgent"), ()), ("p1",)),
    ("direction-pull-only", {"direction": "tracker_to_helpdesk"}, ((), ()), (("bug",), ()),
     None),
    ("direction-none", {"direction": "none"}, ((), ()), (("bug",), ()), None),
    ("direction-both", {"direction": "both"}, ((), ()), (("bug",), ()), ("defect",)),
]


@pytest.mark.parametrize(("field", "base", "now", "expected"),
                         [c[1:] for c in LABEL_CASES], ids=[c[0] for c in LABEL_CASES])
def test_labels_table(field: dict[str, Any],
                      base: tuple[tuple[str, ...], tuple[str, ...]],
                      now: tuple[tuple[str, ...], tuple[str, ...]],
                      expected: tuple[str, ...] | None) -> None:
    """Tag changes move the mapped labels only; labels the mapping doesn't own are never touched."""
    pol = policy(tag_to_label=LABELS, tags_field=field)
    base_snap = agreed(conversation(tags=base[0]), issue(labels=base[1]))
    conv, iss = conversation(tags=now[0], updated=2), issue(labels=now[1], updated=2)
    plan = _plan(context(pol), conv, iss, base_snap)
    assert _updates(plan, Side.HELPDESK) == []
    assert [u.tags for u in _updates(plan, Side.TRACKER)] == ([expected] if expected else [])
    assert _saved(plan).tracker_labels == (expected or tuple(sorted(now[1])))


def test_labels_ignored_when_tracker_has_no_labels() -> None:
    """A tracker without labels never gets a tags update."""
    pol = policy(tag_to_label=LABELS)
    base = agreed(conversation(), issue())
    plan = _plan(context(pol, labels=False), conversation(tags=("bug",), updated=1), issue(),
                 base)
    assert of_type(plan, UpdateTicket) == []


def test_all_fields_in_one_plan_save_the_values_after_updates() -> None:
    """Status, assignee and labels combine in one plan whose snapshot holds the results."""
    pol = policy(tag_to_label=LABELS, staff_to_user=STAFF)
    base = agreed(conversation(), issue())
    conv = conversation(tags=("bug",), assignee=AL, updated=4)
    iss = issue(state=C, updated=5)
    plan = _plan(context(pol), conv, iss, base)
    assert [u.state for u in _updates(plan, Side.HELPDESK)] == [C]
    tracker = _updates(plan, Side.TRACKER)
    assert [u.assignee_id for u in tracker if u.assignee_id] == ["7"]
    assert [u.tags for u in tracker if u.tags is not None] == [("defect",)]
    saved = _saved(plan)
    assert (saved.helpdesk_state, saved.tracker_state) == (C, C)
    assert (saved.helpdesk_assignee, saved.tracker_assignee) == (AL, "7")
    assert saved.tracker_labels == ("defect",)
    assert saved.helpdesk_updated_at == conv.updated_at.isoformat()
