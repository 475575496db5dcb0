"""Reverse creation, done: the writes ``syncer.reconcile_reverse`` decided.

The create is journalled like an issue create (intent kind ``create_issue`` whose target
is the helpdesk side), before it is sent, under the issue's key; the conversation id does
not exist yet, so the intent stands under ``reverse_key(issue)``. The link is recorded
with the intent's completion, in one transaction. A crash in between leaves the intent
pending: ``recover_conversation`` finds the conversation by its key and records the link,
so the issue never gets a second conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import structlog

from connectors.base import Connector, OpensConversations
from state import Intent, LinkConflict, StateStore
from syncer.errors import RejectedError, SkippableError, SyncError
from syncer.markers import reverse_key
from syncer.models import Visibility
from syncer.plan import Side
from syncer.reconcile_reverse import AdoptConversation, CreateConversation

log = structlog.get_logger("reamaze_sync.reverse")

# As for issues (``syncer.recovery``): only a conversation from long before the write
# began is ruled out by its time; the keyed marker is the proof.
CLOCK_SLACK = timedelta(hours=6)


def is_reverse_intent(intent: Intent) -> bool:
    return intent.kind == "create_issue" and intent.target is Side.HELPDESK


@dataclass(frozen=True)
class Opened:
    conversation_id: str
    # The first message came back public: Re:amaze did not honour the note flag on
    # ``POST /conversations`` (undocumented there). It holds only the fixed text, so
    # nothing of the issue is out, but the operator is told. None: not read back.
    opening_public: bool | None


def open_conversation(pair: str, store: StateStore, helpdesk: Connector,
                      action: CreateConversation) -> Opened:
    """Create the conversation, record its link, and read back how its first message
    was kept."""
    if not isinstance(helpdesk, OpensConversations):
        raise RejectedError(f"{helpdesk.name} cannot open conversations",
                            object_id=action.issue_id)
    iid, key = action.issue_id, action.new.marker
    with store.atomic():
        if store.get_link_by_issue(pair, iid) is not None:  # linked by hand since the read
            raise SkippableError(f"issue {iid} was linked meanwhile", object_id=iid)
        store.begin_intent(pair, key, "create_issue", reverse_key(iid), Side.HELPDESK,
                           {"issue_id": iid, "subject": action.new.subject})
    try:
        conv = helpdesk.open_conversation(action.new)
    except RejectedError as exc:  # certainly not created: planned again by a later pass
        store.fail_intent(pair, key, exc.message)
        raise
    _record(pair, store, iid, conv.id, key)
    log.info("conversation_created", pair=pair, object_id=conv.id, issue_id=iid,
             marker=key, reason=action.reason, contact_from=action.contact_from)
    return Opened(conv.id, _opening_public(pair, helpdesk, conv.id))


def _opening_public(pair: str, helpdesk: Connector, cid: str) -> bool | None:
    try:
        first = min(helpdesk.list_comments(cid), key=lambda c: (c.created_at, c.id),
                    default=None)
    except SyncError as exc:  # the link is recorded; the next read shows it anyway
        log.warning("opening_not_read_back", pair=pair, object_id=cid, **exc.log_fields())
        return None
    if first is None:
        return None
    public = first.visibility is Visibility.PUBLIC
    if public:
        log.warning("reverse_opening_public", pair=pair, object_id=cid, comment_id=first.id,
                    reason="Re:amaze kept the first message of the new conversation public "
                           "(it only holds reamaze-sync's fixed text; nothing was emailed)")
    return public


def adopt_conversation(pair: str, store: StateStore, action: AdoptConversation) -> None:
    try:
        store.create_link(pair, action.conversation_id, action.issue_id, Side.TRACKER)
    except LinkConflict as exc:  # linked by hand to something else meanwhile
        raise SkippableError(f"conversation {action.conversation_id} was opened for issue "
                             f"{action.issue_id}, but {exc}",
                             object_id=action.issue_id) from None
    log.warning("conversation_adopted", pair=pair, object_id=action.conversation_id,
                issue_id=action.issue_id,
                reason="our conversation found by its key; the state had lost its link")


def recover_conversation(pair: str, store: StateStore, helpdesk: Connector,
                         intent: Intent) -> str | None:
    """The conversation a reverse create whose outcome is unknown made, by its key: the
    link is recorded and its id returned; None while it is not found."""
    found = helpdesk.find_ticket_by_marker(intent.key)
    if found is None or found.created_at < intent.created_at - CLOCK_SLACK:
        return None
    _record(pair, store, str(intent.payload["issue_id"]), found.id, intent.key)
    log.warning("intent_recovered", pair=pair, found=True, object_id=found.id,
                operation="recover_create_conversation", marker=intent.key)
    return found.id


def _record(pair: str, store: StateStore, iid: str, cid: str, key: str) -> None:
    try:
        with store.atomic():
            store.create_link(pair, cid, iid, Side.TRACKER)
            store.complete_intent(pair, key, cid)
    except LinkConflict as exc:
        # Linked by hand while the create was out: the new conversation stays unlinked
        # (nothing is deleted), and the operator is told why.
        store.fail_intent(pair, key, f"created {cid}, but {exc}")
        raise SkippableError(f"conversation {cid} was created for issue {iid}, but {exc}",
                             object_id=iid) from None
