"""Apply a Plan: the only code that writes, to the remotes and to the state store.

Every remote create is journalled first: an intent row with its idempotency key (the
marker the connector stores on the remote object) is committed before the request is
sent and completed, together with the link it produces, after. A crash in between leaves
a pending intent that ``recover_intents`` resolves by looking the key up on the remote,
so a retry never creates a second issue or comment.

Errors are handled by recovery class: retriable and auth errors abort the pass (the
cursor is not saved, the next pass retries everything); an error specific to one object
stops that conversation's remaining actions, is recorded as a failure, and the pass goes
on with the others.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import structlog

from connectors.base import Connector
from state import StateStore
from syncer.errors import AuthError, FatalError, RejectedError, SkippableError
from syncer.models import Comment, NewComment, Visibility
from syncer.plan import (
    Action,
    AddComment,
    Conflict,
    CoveredComment,
    CreateIssue,
    MarkOrphaned,
    Plan,
    PostLinkNote,
    SaveSnapshot,
    Side,
    Skip,
    UpdateTicket,
    description_target,
)

log = structlog.get_logger("reamaze_sync.apply")


@dataclass
class ApplyResult:
    counts: Counter[str] = field(default_factory=Counter)
    failed: dict[str, str] = field(default_factory=dict)  # conversation id -> error

    def merge(self, other: ApplyResult) -> None:
        self.counts.update(other.counts)
        self.failed.update(other.failed)


class ObjectFailed(Exception):
    """One conversation's actions stopped; the pass continues with the others."""


class Applier:
    def __init__(self, pair: str, store: StateStore, helpdesk: Connector,
                 tracker: Connector, tracker_name: str) -> None:
        self.pair = pair
        self.store = store
        self.sides: dict[Side, Connector] = {Side.HELPDESK: helpdesk, Side.TRACKER: tracker}
        self.tracker_name = tracker_name

    def apply(self, plan: Plan) -> ApplyResult:
        result = ApplyResult()
        groups: dict[str, list[Action]] = {}
        for action in plan.actions:
            groups.setdefault(action.conversation_id, []).append(action)
        for cid, actions in groups.items():
            try:
                self._apply_conversation(cid, actions, result)
            except ObjectFailed as exc:
                result.failed[cid] = str(exc)
                result.counts["failed"] += 1
        return result

    # -- one conversation ------------------------------------------------------------------
    def _apply_conversation(self, cid: str, actions: list[Action], result: ApplyResult) -> None:
        issue_id: str | None = None
        for action in actions:
            bound = log.bind(pair=self.pair, conversation_id=cid, operation=type(action).__name__)
            try:
                issue_id = self._apply_one(action, issue_id, bound, result) or issue_id
            except AuthError:
                raise  # credentials: every object would fail the same way; abort the pass
            except (SkippableError, FatalError) as exc:
                bound.error("operation_failed", **exc.log_fields())
                attempts = self.store.record_failure(self.pair, Side.HELPDESK, cid, str(exc))
                # The whole error (status, trimmed body): "request rejected" alone does
                # not tell the operator what the tracker objected to.
                raise ObjectFailed(f"{type(exc).__name__}: {exc} (attempt {attempts})"
                                   ) from None

    def _apply_one(self, action: Action, issue_id: str | None, bound: Any,
                   result: ApplyResult) -> str | None:
        if isinstance(action, CreateIssue):
            return self._create_issue(action, bound, result)
        if isinstance(action, AddComment):
            self._add_comment(action, issue_id, bound, result)
        elif isinstance(action, PostLinkNote):
            self._post_link_note(action, issue_id, bound, result)
        elif isinstance(action, UpdateTicket):
            self.sides[action.target].update_ticket(action.ticket_id, action.update)
            result.counts[f"{action.target.value}_updated"] += 1
            bound.info("ticket_updated", side=action.target.value, object_id=action.ticket_id,
                       reason=action.reason,
                       update=action.update.model_dump(exclude_none=True, mode="json"))
        elif isinstance(action, MarkOrphaned):
            self.store.set_link_status(self.pair, action.conversation_id, "orphaned")
            result.counts["orphaned"] += 1
            bound.warning("link_orphaned", reason=action.reason)
        elif isinstance(action, SaveSnapshot):
            self.store.save_snapshot(self.pair, action.conversation_id, action.snapshot)
        elif isinstance(action, Skip):
            result.counts["skipped"] += 1
            bound.debug("skipped", object_id=action.object_id, reason=action.reason)
        elif isinstance(action, Conflict):
            result.counts["conflicts"] += 1
            bound.warning("field_conflict", field=action.field, winner=action.winner.value,
                          helpdesk_value=action.helpdesk_value, tracker_value=action.tracker_value)
        return None

    def _create_issue(self, action: CreateIssue, bound: Any, result: ApplyResult) -> str:
        cid, key = action.conversation_id, action.new.marker
        with self.store.atomic():
            if self.store.get_link(self.pair, cid) is None:
                self.store.create_link(self.pair, cid, None, Side.HELPDESK)
            # The covered messages too: a recovered create must record them as copied,
            # or they would be sent again as notes.
            self.store.begin_intent(self.pair, key, "create_issue", cid, Side.TRACKER,
                                    {"subject": action.new.subject,
                                     "covered": [c.model_dump(mode="json")
                                                 for c in action.covered]})
        try:
            issue = self.sides[Side.TRACKER].create_ticket(action.new)
        except RejectedError as exc:
            # Definitely not created: drop the half link so the next pass can try again.
            with self.store.atomic():
                self.store.fail_intent(self.pair, key, exc.message)
                self.store.delete_link(self.pair, cid)
            raise
        with self.store.atomic():
            self.store.set_link_issue(self.pair, cid, issue.id)
            for c in action.covered:
                self.store.add_comment_link(self.pair, cid, Side.HELPDESK, c.source_id,
                                            description_target(issue.id), c.visibility.value,
                                            c.fingerprint)
            self.store.complete_intent(self.pair, key, issue.id)
        result.counts["issues_created"] += 1
        if action.covered:
            result.counts["messages_in_description"] += len(action.covered)
        bound.info("issue_created", object_id=issue.id, marker=key,
                   messages_in_description=len(action.covered))
        return issue.id

    def _add_comment(self, action: AddComment, issue_id: str | None, bound: Any,
                     result: ApplyResult) -> None:
        ticket_id = action.ticket_id or issue_id
        if ticket_id is None:
            raise RejectedError("comment target is unknown (issue was not created)",
                                object_id=action.conversation_id)
        self._write_comment(action.conversation_id, action.target, ticket_id, action.new,
                            source_id=action.source_id or action.new.marker,
                            fingerprint=action.source_fingerprint, bound=bound, result=result)

    def _post_link_note(self, action: PostLinkNote, issue_id: str | None, bound: Any,
                        result: ApplyResult) -> None:
        cid = action.conversation_id
        if issue_id is None:
            link = self.store.get_link(self.pair, cid)
            issue_id = link.issue_id if link else None
        if issue_id is None:
            raise RejectedError("link note without an issue", object_id=cid)
        url = self.sides[Side.TRACKER].ticket_url(issue_id)
        note = NewComment(body=f"Linked to {self.tracker_name} issue #{issue_id}: {url}",
                          visibility=Visibility.INTERNAL, marker=action.marker)
        self._write_comment(cid, Side.HELPDESK, cid, note, source_id=action.marker,
                            fingerprint="", bound=bound, result=result)

    def _write_comment(self, cid: str, target: Side, ticket_id: str, new: NewComment, *,
                       source_id: str, fingerprint: str, bound: Any,
                       result: ApplyResult) -> Comment:
        key = new.marker
        payload = {"ticket_id": ticket_id, "source_side": target.other.value,
                   "source_id": source_id, "visibility": new.visibility.value,
                   "fingerprint": fingerprint}
        self.store.begin_intent(self.pair, key, "add_comment", cid, target, payload)
        try:
            comment = self.sides[target].create_comment(ticket_id, new)
        except (RejectedError, SkippableError) as exc:
            self.store.fail_intent(self.pair, key, exc.message)
            raise
        with self.store.atomic():
            self.store.add_comment_link(self.pair, cid, target.other, source_id, comment.id,
                                        new.visibility.value, fingerprint)
            self.store.complete_intent(self.pair, key, comment.id)
        result.counts[f"comments_to_{target.value}"] += 1
        bound.info("comment_created", side=target.value, object_id=ticket_id,
                   comment_id=comment.id, source_id=source_id, visibility=new.visibility.value,
                   notify_customer=new.notify_customer)
        return comment


def recover_intents(pair: str, store: StateStore, helpdesk: Connector,
                    tracker: Connector) -> Counter[str]:
    """Resolve writes that were sent but never confirmed, by finding their key remotely."""
    sides: dict[Side, Connector] = {Side.HELPDESK: helpdesk, Side.TRACKER: tracker}
    counts: Counter[str] = Counter()
    for intent in store.pending_intents(pair):
        if intent.status != "pending":
            continue  # a definite failure; the reconciler plans it again if still wanted
        bound = log.bind(pair=pair, conversation_id=intent.conversation_id,
                         operation=f"recover_{intent.kind}", marker=intent.key)
        if intent.kind == "create_issue":
            found = tracker.find_ticket_by_marker(intent.key)
            with store.atomic():
                if found is not None:
                    store.set_link_issue(pair, intent.conversation_id, found.id)
                    for raw in intent.payload.get("covered", ()):
                        c = CoveredComment.model_validate(raw)
                        store.add_comment_link(pair, intent.conversation_id, Side.HELPDESK,
                                               c.source_id, description_target(found.id),
                                               c.visibility.value, c.fingerprint)
                    store.complete_intent(pair, intent.key, found.id)
                else:
                    link = store.get_link(pair, intent.conversation_id)
                    if link is not None and link.issue_id is None:
                        store.delete_link(pair, intent.conversation_id)
                    store.fail_intent(pair, intent.key, "not found on the tracker after restart")
            bound.warning("intent_recovered", found=found is not None,
                          object_id=found.id if found else None)
        elif intent.kind == "add_comment":
            p = intent.payload
            comment = sides[intent.target].find_comment_by_marker(str(p["ticket_id"]),
                                                                  intent.key)
            with store.atomic():
                if comment is not None:
                    store.add_comment_link(pair, intent.conversation_id, Side(p["source_side"]),
                                           str(p["source_id"]), comment.id,
                                           str(p["visibility"]), str(p["fingerprint"]))
                    store.complete_intent(pair, intent.key, comment.id)
                else:
                    store.fail_intent(pair, intent.key, "not found on the remote after restart")
            bound.warning("intent_recovered", found=comment is not None,
                          object_id=comment.id if comment else None)
        counts["intents_recovered"] += 1
    return counts

