"""Resolving writes whose outcome is unknown: the journal's pending intents.

A pending intent means "this write was sent, or was about to be, and no answer confirmed
it". It may have landed, may land later (a slow server finishes it after the client gave
up waiting), or may never land. Recovery looks for its key on the remote at the start of
every pass:

* found, written by the sync's own API user, after the intent began, with the intended
  visibility: completed, links recorded;
* found but public while it had to stay private: the copy is removed (or, if it cannot
  be, recorded as a leak that pauses internal content for the pair); never kept as good;
* not found: the intent stays pending, and the write is held (not sent again), until it
  has been looked for ``min_lookups`` times across passes AND ``window`` has passed since
  it was last sent. Only then is it declared not landed, and the next plan sends it again
  under the same key. A restart changes nothing: the clock runs from the send, not from
  the process.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from connectors.base import Connector
from state import Intent, StateStore
from syncer.apply import record_edit
from syncer.apply_reverse import is_reverse_intent, recover_conversation
from syncer.errors import NotFoundError, SkippableError, SyncError
from syncer.fields import landed, recorded
from syncer.models import Ticket, Visibility
from syncer.plan import CopyEdit, CoveredComment, Side, Snapshot, description_target

log = structlog.get_logger("reamaze_sync.recovery")

# A tracker's clock and ours may disagree: an issue stamped a little before the intent
# that created it is still ours. Provenance rests on the keyed marker and the author; the
# time only rules out an object from long before the write began.
CLOCK_SLACK = timedelta(hours=6)


@dataclass(frozen=True)
class RecoveryPolicy:
    window: timedelta = timedelta(minutes=10)
    min_lookups: int = 3


@dataclass
class Recovery:
    counts: Counter[str] = field(default_factory=Counter)
    # Keys still unresolved: their writes are held, never sent again meanwhile.
    held: set[str] = field(default_factory=set)
    # Conversations with such a key: their remaining work waits for it.
    waiting: set[str] = field(default_factory=set)
    # Conversations whose intents were resolved: their remaining work is due now.
    resolved: set[str] = field(default_factory=set)
    leaks: list[str] = field(default_factory=list)  # what was found public, for the report


def recover_intents(pair: str, store: StateStore, helpdesk: Connector, tracker: Connector,
                    policy: RecoveryPolicy | None = None) -> Recovery:
    """Resolve writes that were sent but never confirmed, by finding their key remotely."""
    policy = policy or RecoveryPolicy()
    sides: dict[Side, Connector] = {Side.HELPDESK: helpdesk, Side.TRACKER: tracker}
    out = Recovery()
    for intent in store.pending_intents(pair):
        if intent.status != "pending":
            continue  # a definite failure; the reconciler plans it again if still wanted
        bound = log.bind(pair=pair, conversation_id=intent.conversation_id,
                         operation=f"recover_{intent.kind}", marker=intent.key)
        if is_reverse_intent(intent):
            _recover_reverse(pair, store, helpdesk, intent, policy, bound, out)
            continue
        try:
            if intent.kind == "create_issue":
                done = _recover_issue(pair, store, tracker, intent, bound)
            elif intent.kind == "add_comment":
                done = _recover_comment(pair, store, sides[intent.target], intent, bound, out)
            else:
                _recover_fields(pair, store, sides, intent, bound)
                out.resolved.add(intent.conversation_id)
                out.counts["intents_recovered"] += 1
                continue
        except NotFoundError as exc:
            # The ticket the comment was meant for is gone: nothing can land there.
            store.fail_intent(pair, intent.key, f"target no longer exists: {exc.message}")
            done = True
        except SkippableError as exc:
            bound.warning("intent_lookup_failed", **exc.log_fields())
            done = False
        if done:
            out.resolved.add(intent.conversation_id)
            out.counts["intents_recovered"] += 1
        elif _give_up(pair, store, intent, policy, bound):
            out.resolved.add(intent.conversation_id)
            out.counts["intents_expired"] += 1
        else:
            out.held.add(intent.key)
            out.waiting.add(intent.conversation_id)
            out.counts["writes_held"] += 1
    return out


def _recover_reverse(pair: str, store: StateStore, helpdesk: Connector, intent: Intent,
                     policy: RecoveryPolicy, bound: structlog.typing.FilteringBoundLogger,
                     out: Recovery) -> None:
    """A conversation opened for an issue (reverse creation). Found: linked, and due for
    its first sync. Given up: the issue is put on the dead letter (tracker side), which
    brings it back to a pass that plans its conversation again under the same key."""
    try:
        cid = recover_conversation(pair, store, helpdesk, intent)
    except SkippableError as exc:
        bound.warning("intent_lookup_failed", **exc.log_fields())
        now = store.get_intent(pair, intent.key)
        if now is not None and now.status == "failed":
            return  # linked by hand meanwhile: nothing left to do
        cid = None
    if cid is not None:
        out.resolved.add(cid)
        out.counts["intents_recovered"] += 1
    elif _give_up(pair, store, intent, policy, bound):
        store.record_failure(pair, Side.TRACKER, str(intent.payload["issue_id"]),
                             "its conversation create did not land; planned again",
                             attempt=False)
        out.counts["intents_expired"] += 1
    else:
        out.held.add(intent.key)
        out.counts["writes_held"] += 1


def _give_up(pair: str, store: StateStore, intent: Intent, policy: RecoveryPolicy,
             bound: structlog.typing.FilteringBoundLogger) -> bool:
    """Count this lookup; True once the write is certainly not going to land."""
    now = store.now()
    looked = store.note_lookup(pair, intent.key)
    quiet = now - intent.updated_at
    if looked.lookups < policy.min_lookups or quiet < policy.window:
        bound.info("write_outcome_pending", lookups=looked.lookups,
                   since_send_s=int(quiet.total_seconds()))
        return False
    reason = (f"not found after {looked.lookups} lookups over "
              f"{int(quiet.total_seconds())} s since it was sent")
    with store.atomic():
        if intent.kind == "create_issue":
            link = store.get_link(pair, intent.conversation_id)
            if link is not None and link.issue_id is None:
                store.delete_link(pair, intent.conversation_id)
        store.fail_intent(pair, intent.key, reason)
    bound.warning("write_not_landed", reason=reason)
    return True


def _ours(ticket: Ticket, me: str, intent: Intent) -> bool:
    return (ticket.author_id is not None and ticket.author_id.casefold() == me.casefold()
            and ticket.created_at >= intent.created_at - CLOCK_SLACK)


def _recover_issue(pair: str, store: StateStore, tracker: Connector, intent: Intent,
                   bound: structlog.typing.FilteringBoundLogger) -> bool:
    found = tracker.find_ticket_by_marker(intent.key)
    if found is not None and not _ours(found, tracker.whoami(), intent):
        bound.warning("marker_not_trusted", object_id=found.id,
                      reason="issue with our key was not created by the sync's tracker user "
                             "after the write began; not adopted")
        found = None
    if found is None:
        return False
    with store.atomic():
        link = store.get_link(pair, intent.conversation_id)
        if link is None:
            # The pending link went (unlinked by hand meanwhile): the issue is ours all
            # the same, and is recorded rather than left for a second create.
            store.create_link(pair, intent.conversation_id, found.id, Side.HELPDESK)
        else:
            store.set_link_issue(pair, intent.conversation_id, found.id)
        for raw in intent.payload.get("covered", ()):
            c = CoveredComment.model_validate(raw)
            store.add_comment_link(pair, intent.conversation_id, Side.HELPDESK,
                                   c.source_id, description_target(found.id),
                                   c.visibility.value, c.fingerprint)
        store.complete_intent(pair, intent.key, found.id)
    bound.warning("intent_recovered", found=True, object_id=found.id)
    return True


def _recover_fields(pair: str, store: StateStore, sides: dict[Side, Connector],
                    intent: Intent, bound: structlog.typing.FilteringBoundLogger) -> None:
    """Field writes of a pass that stopped before saving their snapshot: record those that
    landed as the sync's own, so the next pass does not take them for a person's."""
    writes = intent.payload.get("writes", [])
    done = [w for w in writes
            if landed(w, sides[Side(w["target"])].get_ticket(str(w["ticket_id"])))]
    link = store.get_link(pair, intent.conversation_id)
    with store.atomic():
        if done and link is not None and link.status == "active":
            after = Snapshot.model_validate(intent.payload["after"])
            store.save_snapshot(pair, intent.conversation_id,
                                recorded(link.snapshot, after, done))
            store.complete_intent(pair, intent.key, "snapshot")
        else:
            store.fail_intent(pair, intent.key, "no field write had landed")
    bound.warning("field_writes_recovered", landed=len(done), planned=len(writes))


def _recover_comment(pair: str, store: StateStore, side: Connector, intent: Intent,
                     bound: structlog.typing.FilteringBoundLogger, out: Recovery) -> bool:
    p = intent.payload
    ticket_id = str(p["ticket_id"])
    comment = side.find_comment_by_marker(ticket_id, intent.key)
    if comment is None:
        return False
    wanted = Visibility(str(p["visibility"]))
    if wanted is Visibility.INTERNAL and comment.visibility is Visibility.PUBLIC:
        _remove_public_copy(pair, store, side, intent, ticket_id, comment.id, bound, out)
        return True
    with store.atomic():
        store.add_comment_link(pair, intent.conversation_id, Side(p["source_side"]),
                               str(p["source_id"]), comment.id, wanted.value,
                               str(p["fingerprint"]))
        if p.get("edit"):
            record_edit(store, pair, intent.conversation_id,
                        CopyEdit.model_validate(p["edit"]))
        store.complete_intent(pair, intent.key, comment.id)
    bound.warning("intent_recovered", found=True, object_id=comment.id)
    return True


def _remove_public_copy(pair: str, store: StateStore, side: Connector, intent: Intent,
                        ticket_id: str, comment_id: str,
                        bound: structlog.typing.FilteringBoundLogger, out: Recovery) -> None:
    """The write landed, but public: it must not be recorded as a good copy."""
    out.leaks.append(f"{intent.target.value} {ticket_id}#{comment_id}")
    try:
        side.delete_comment(ticket_id, comment_id)
    except SyncError as exc:
        store.record_leak(pair, intent.conversation_id, intent.target, ticket_id, comment_id,
                          f"copy of an internal note is public and could not be removed: "
                          f"{exc}")
        store.fail_intent(pair, intent.key, "copy came back public; could not be removed")
        out.counts["leaks_unremoved"] += 1
        bound.critical("visibility_leak_unremoved", **{**exc.log_fields(),
                                                       "object_id": ticket_id,
                                                       "comment_id": comment_id})
        return
    store.fail_intent(pair, intent.key, "copy came back public; removed")
    out.counts["leaks_removed"] += 1
    bound.error("visibility_leak_removed", object_id=ticket_id, comment_id=comment_id)
