"""Deciding a link whose issue changed without reading its conversation when the decision
cannot depend on it.

Re:amaze's request budget bounds a deployment, and reading a conversation costs two
requests (the conversation, its messages). When only the issue changed, the conversation
is taken as the last sync left it (the snapshot: state, tags, assignee) and decided in
two steps:

1. without its messages: a plan that writes nothing (the issue changed by the sync's own
   note, or in a field the pair does not carry) needs nothing more;
2. with its messages (one request) but the conversation's fields from the snapshot: a
   plan that only copies comments (their text does not depend on the conversation's
   fields), moves the conversation's fields from the issue's, or records what it found is
   applied as it is.

Anything else (a link note or close reply the sync writes itself, which name the
conversation, or a change to the issue's fields) is decided again from a full read. That
the conversation did not change meanwhile is the helpdesk feed's to say: a change there is
reconciled from a full read by the same pass (before the tracker feed), or by the next
one. The messages are always read before a comment is copied into the conversation, so a
copy an older (restored) state does not know of is found by its marker, never written
twice.
"""

from __future__ import annotations

from datetime import datetime

from syncer.models import Ticket, TicketStatus, User
from syncer.plan import (
    AddComment,
    AdoptComment,
    Conflict,
    LinkView,
    Plan,
    RemoveComment,
    SaveSnapshot,
    Side,
    Skip,
    Untrusted,
    UpdateTicket,
)


def conversation_from_snapshot(link: LinkView) -> Ticket | None:
    """The conversation as the link's last sync left it; None when it did not say."""
    snap = link.snapshot
    if snap is None or snap.helpdesk_state is None or snap.helpdesk_updated_at is None:
        return None
    changed = datetime.fromisoformat(snap.helpdesk_updated_at)
    email = snap.helpdesk_assignee
    return Ticket(
        id=link.conversation_id, subject="",
        status=TicketStatus(code="", name=snap.helpdesk_state.value, state=snap.helpdesk_state),
        tags=snap.helpdesk_tags,
        assignee=User(id=email, name=email, email=email) if email else None,
        created_at=changed, updated_at=changed,
        last_customer_at=(datetime.fromisoformat(snap.helpdesk_last_customer)
                          if snap.helpdesk_last_customer else None))


def needs_conversation(plan: Plan, *, read_comments: bool) -> bool:
    """Whether the plan, made from the snapshot's conversation, must be made again from a
    full read (``read_comments``: its messages were read)."""
    for a in plan.actions:
        if isinstance(a, SaveSnapshot):
            continue
        if not read_comments:
            return True
        if isinstance(a, Skip | Untrusted | Conflict | AdoptComment | RemoveComment):
            continue
        if isinstance(a, UpdateTicket) and a.target is Side.HELPDESK:
            continue
        if isinstance(a, AddComment) and a.source_id:  # a copy, not the sync's own words
            continue
        return True
    return False
