"""The journal entry of a plan's field writes, and how recovery reads what landed."""

from __future__ import annotations

from syncer.fields import field_changes, landed, recorded
from syncer.models import TicketState, TicketUpdate
from syncer.plan import SaveSnapshot, Side, Snapshot, UpdateTicket
from tests.reconcile_builders import CID, IID, conversation, issue, status, tracker_status

C, OP = TicketState.CLOSED, TicketState.OPEN
BASE = Snapshot(helpdesk_state=OP, tracker_state=OP, helpdesk_tags=("bug",),
                tracker_labels=(), helpdesk_assignee=None, tracker_assignee="7",
                close_replies=0)
AFTER = Snapshot(helpdesk_state=C, tracker_state=C, helpdesk_tags=("bug", "vip"),
                 tracker_labels=("defect",), helpdesk_assignee=None, tracker_assignee="8",
                 close_replies=1)


def _update(target: Side, ticket: str, **fields: object) -> UpdateTicket:
    return UpdateTicket(conversation_id=CID, target=target, ticket_id=ticket,
                        update=TicketUpdate(**fields), reason="test")  # type: ignore[arg-type]


def test_no_field_write_no_entry_and_the_key_follows_the_plan() -> None:
    """Only a plan with field writes and a snapshot is journalled; the same plan gets the
    same key (a repeat is one entry), another plan another."""
    snap = SaveSnapshot(conversation_id=CID, snapshot=AFTER)
    close = _update(Side.HELPDESK, CID, state=C)
    assert field_changes([snap]) is None and field_changes([close]) is None
    first, again = field_changes([close, snap]), field_changes([close, snap])
    assert first is not None and again is not None and first.key == again.key
    other = field_changes([_update(Side.TRACKER, IID, assignee_id="8"), snap])
    assert other is not None and other.key != first.key
    assert first.payload["writes"] == [{"target": "helpdesk", "ticket_id": CID,
                                        "state": "closed"}]


def test_a_write_landed_when_the_ticket_shows_every_field_it_set() -> None:
    """State (a tracker's closed covers spam), assignee ("" = nobody) and tags compare."""
    closed = issue(state=C, assignee="8", labels=("defect",))
    assert landed({"state": "closed"}, closed) and landed({"state": "spam"}, closed)
    assert not landed({"state": "open"}, closed)
    assert landed({"assignee_id": "8", "tags": ["defect"]}, closed)
    assert not landed({"assignee_id": "7"}, closed)
    assert landed({"assignee_id": ""}, issue()) and not landed({"tags": ["x"]}, closed)
    pending = conversation().model_copy(update={"status": status(TicketState.PENDING)})
    assert not landed({"state": "open"}, pending)


def test_only_the_groups_that_landed_move_to_the_planned_snapshot() -> None:
    """A landed state write records both sides' states and the close replies from the
    plan; an assignee write that did not land keeps the old base for the assignees."""
    kept = recorded(BASE, AFTER, [{"state": "closed"}])
    assert (kept.helpdesk_state, kept.tracker_state, kept.close_replies) == (C, C, 1)
    assert (kept.tracker_assignee, kept.helpdesk_tags) == ("7", ("bug",))
    both = recorded(BASE, AFTER, [{"state": "closed"}, {"assignee_id": "8"}])
    assert both.tracker_assignee == "8"
    assert recorded(None, AFTER, []) == AFTER


def test_a_named_tracker_status_landed_only_when_the_issue_shows_that_very_status() -> None:
    """A status table's write (state plus the tracker's status id) landed only when the issue
    has that id: another open status is not it; recovery then records the id too."""
    in_progress = issue().model_copy(update={"status": tracker_status("In Progress")})
    assert landed({"state": "open", "status_code": "2"}, in_progress)
    assert not landed({"state": "open", "status_code": "4"}, in_progress)
    after = AFTER.model_copy(update={"tracker_status": "2"})
    assert recorded(BASE, after, [{"state": "open", "status_code": "2"}]).tracker_status == "2"
