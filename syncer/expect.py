"""What the sync's own writes do to a conversation's list item, so the next poll does not
read the conversation again just to find them (an echo).

After a sync, the snapshot records what the Re:amaze list item will show if nothing but
the sync's writes happened: the number of messages (those read plus those written, minus
copies removed) and the customer's last message time, next to the state, tags and
assignee it already keeps. A list item showing exactly that is the sync's own doing:
any message someone else added would show in the count, a customer's in its time too,
and a status, tag or assignee change in those fields.

``message_count`` is not in Re:amaze's documentation. The count is only relied on for a
conversation whose list item was once seen to count exactly the messages read, internal
notes among them: a count that left out internal notes could not tell a staff member's
note from nothing, so it is never trusted (the conversation is read, as before). A
missing count is never trusted either.

What a count counts is a property of the API, not of one conversation: once any
conversation's count was seen to include its internal notes, the counts of the others
(the sync's own internal link note among their messages) can be compared too, although
they never held a note of their own (``counts_internal_notes``). Without that, the poll
after a backfill read every conversation the backfill had just written its note in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from syncer.models import Ticket, Visibility
from syncer.plan import (
    Action,
    AddComment,
    PostLinkNote,
    RemoveComment,
    Side,
    SideView,
    Snapshot,
)


def _written(actions: Iterable[Action]) -> int:
    """Messages the plan adds to the conversation, less the copies it removes there."""
    n = 0
    for a in actions:
        if isinstance(a, PostLinkNote) or (isinstance(a, AddComment)
                                           and a.target is Side.HELPDESK):
            n += 1
        elif isinstance(a, RemoveComment) and a.target is Side.HELPDESK:
            n -= 1
    return n


def expect_helpdesk(conversation: SideView, base: Snapshot | None, snapshot: Snapshot,
                    actions: Iterable[Action]) -> Snapshot:
    """``snapshot`` with what the list item will show once ``actions`` are done."""
    written = _written(actions)
    known = base.helpdesk_messages if base is not None else None
    trusted = base.helpdesk_count_trusted if base is not None else False
    if conversation.comments_read:
        read = len(conversation.comments)
        count: int | None = read + written
        if not conversation.from_snapshot:
            trusted = (conversation.ticket.listed_comments == read and any(
                c.visibility is Visibility.INTERNAL for c in conversation.comments))
    else:
        count = known + written if known is not None else None
    if conversation.from_snapshot:
        last_customer = base.helpdesk_last_customer if base is not None else None
    else:
        at = conversation.ticket.last_customer_at
        last_customer = at.isoformat() if at is not None else None
    return snapshot.model_copy(update={"helpdesk_messages": count,
                                       "helpdesk_count_trusted": trusted,
                                       "helpdesk_last_customer": last_customer})


@dataclass
class Counting:
    """What the engine learnt of how a Re:amaze brand counts messages, shared by the runs
    of every pair on it (a fact about the API, learnt again by each process)."""

    includes_internal: bool = False


def counts_internal_notes(snapshot: Snapshot | None) -> bool:
    """This snapshot's count was seen to include internal notes (so all counts do)."""
    return snapshot is not None and snapshot.helpdesk_count_trusted


def is_own_echo(snapshot: Snapshot | None, item: Ticket, *,
                counts_internal: bool = False) -> bool:
    """The list item shows exactly what the last sync left (its own writes included).

    ``counts_internal``: another conversation's count was seen to include internal notes,
    so this one's can be relied on although it never held a note of its own."""
    if snapshot is None or not (snapshot.helpdesk_count_trusted or counts_internal) \
            or snapshot.helpdesk_messages is None or item.listed_comments is None:
        return False
    last = item.last_customer_at.isoformat() if item.last_customer_at is not None else None
    return (item.listed_comments == snapshot.helpdesk_messages
            and last == snapshot.helpdesk_last_customer
            and item.status.state == snapshot.helpdesk_state
            and tuple(sorted(item.tags)) == tuple(sorted(snapshot.helpdesk_tags))
            and (item.assignee.email if item.assignee else None) == snapshot.helpdesk_assignee)
