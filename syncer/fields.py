"""Field writes (status, assignee, labels) in the intent journal.

A plan's field writes lead to the snapshot it saves last: the base against which the next
pass tells a person's change from the sync's own. They are idempotent, so unlike creates
they need no lookup before a retry; what a crash between the writes and that snapshot
would lose is the knowledge of which writes were the sync's. So they are journalled
together, with the snapshot, before the first is sent, and recovery reads the tickets back:
a field group whose write landed takes its values from the planned snapshot, the others
keep the old base (so the change that called for them is still seen and planned again).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from syncer.models import Ticket, TicketState
from syncer.plan import Action, SaveSnapshot, Side, Snapshot, UpdateTicket

# The snapshot fields each kind of write vouches for, once it is seen to have landed.
GROUPS: dict[str, tuple[str, ...]] = {
    "state": ("helpdesk_state", "tracker_state", "tracker_status", "close_replies"),
    "assignee_id": ("helpdesk_assignee", "tracker_assignee"),
    "tags": ("helpdesk_tags", "tracker_labels"),
}
_CLOSING = (TicketState.CLOSED, TicketState.SPAM)


@dataclass(frozen=True)
class FieldChanges:
    key: str
    target: Side  # of the first write (the journal row needs one)
    payload: dict[str, Any]


def field_changes(actions: Sequence[Action]) -> FieldChanges | None:
    """The journal entry for a conversation's field writes, or None when it has none."""
    updates = [a for a in actions if isinstance(a, UpdateTicket)]
    snapshot = next((a.snapshot for a in actions if isinstance(a, SaveSnapshot)), None)
    if not updates or snapshot is None:
        return None
    after = snapshot.model_dump(mode="json")
    writes = [{"target": u.target.value, "ticket_id": u.ticket_id,
               **u.update.model_dump(mode="json", exclude_none=True)} for u in updates]
    digest = hashlib.sha256(json.dumps([updates[0].conversation_id, after, writes],
                                       sort_keys=True).encode()).hexdigest()[:32]
    return FieldChanges(key=f"fields-{digest}", target=updates[0].target,
                        payload={"after": after, "writes": writes})


def landed(write: dict[str, Any], ticket: Ticket) -> bool:
    """The ticket shows every field this write set."""
    if "state" in write:
        wanted = TicketState(write["state"])
        now = ticket.status.state
        if not (now == wanted or (wanted in _CLOSING and now in _CLOSING)):
            return False
    if "status_code" in write and ticket.status.code != str(write["status_code"]):
        return False
    if "assignee_id" in write:
        current = ticket.assignee.id if ticket.assignee else ""
        if (current or "").casefold() != str(write["assignee_id"]).casefold():
            return False
    return "tags" not in write or sorted(ticket.tags) == sorted(write["tags"])


def recorded(base: Snapshot | None, after: Snapshot, done: Sequence[dict[str, Any]]
             ) -> Snapshot:
    """The snapshot to keep when the writes ``done`` landed: their groups from ``after``,
    everything else from ``base`` (no base: ``after`` is all there is to go by)."""
    if base is None:
        return after
    update: dict[str, Any] = {}
    for write in done:
        for name, fields in GROUPS.items():
            if name in write:
                update.update({f: getattr(after, f) for f in fields})
    return base.model_copy(update=update)
