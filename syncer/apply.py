"""Apply a Plan: the only code that writes, to the remotes and to the state store.

Every remote create is journalled first: an intent row with its idempotency key (the
marker the connector stores on the remote object) is committed before the request is
sent and completed, together with the link it produces, after. A crash in between leaves
a pending intent that ``syncer.recovery`` resolves by looking the key up on the remote,
so a retry never creates a second issue or comment; while recovery has not resolved a
key, the writes planned under it (and the later ones to the same side of the same
conversation, which must not overtake it) are held.

Errors are handled by recovery class: retriable, auth and redirect errors abort the pass (the
cursor is not saved, the next pass retries everything); an error specific to one object
stops that conversation's remaining actions, is recorded as a failure, and the pass goes
on with the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from connectors.base import CommentBatch, Connector, FetchesAttachments, server_now
from state import LinkConflict, NewCommentLink, NewIntent, StateStore
from syncer.errors import (
    AuthError,
    FatalError,
    LeakError,
    PrivacyUnavailableError,
    RedirectError,
    RejectedError,
    SkippableError,
)
from syncer.fields import FieldChanges, field_changes
from syncer.models import Attachment, Comment, FileData, NewComment, Ticket, Visibility
from syncer.plan import (
    Action,
    AddComment,
    AdoptComment,
    AdoptIssue,
    Conflict,
    CopyEdit,
    CreateIssue,
    MarkOrphaned,
    OpenConversation,
    Plan,
    PostLinkNote,
    RemoveComment,
    SaveSnapshot,
    Side,
    Skip,
    Untrusted,
    UpdateComment,
    UpdateTicket,
    description_target,
)

log = structlog.get_logger("reamaze_sync.apply")

HELD = "held: an earlier write of this conversation has no confirmed outcome yet"


@dataclass(frozen=True)
class TrackerWrites:
    """What one conversation's writes did to its issue: which version of the issue they
    left, as far as the applier saw it. The runner needs it to tell its own changes, which
    the tracker feed shows later in the same pass, from someone else's."""

    # The tracker's time just before the first write to the issue (None: unknown).
    before: datetime | None
    after: Ticket | None  # the issue as read back after the last write; None: not read
    others: frozenset[str] = frozenset()  # comments on that read-back these writes did not make


@dataclass
class ApplyResult:
    counts: Counter[str] = field(default_factory=Counter)
    failed: dict[str, str] = field(default_factory=dict)  # conversation id -> error
    # Conversations that wrote to their issue (and did not fail): what the writes left.
    tracker: dict[str, TrackerWrites] = field(default_factory=dict)

    def merge(self, other: ApplyResult) -> None:
        self.counts.update(other.counts)
        self.failed.update(other.failed)
        self.tracker.update(other.tracker)


class ObjectFailed(Exception):
    """One conversation's actions stopped; the pass continues with the others."""


class Applier:
    def __init__(self, pair: str, store: StateStore, helpdesk: Connector,
                 tracker: Connector, tracker_name: str,
                 held: frozenset[str] | set[str] = frozenset(), *,
                 attachment_max_bytes: int = 10 * 1024 * 1024,
                 relay: Callable[[Attachment], Attachment] | None = None) -> None:
        self.pair = pair
        self.attachment_max_bytes = attachment_max_bytes
        self.store = store
        self.sides: dict[Side, Connector] = {Side.HELPDESK: helpdesk, Side.TRACKER: tracker}
        self.tracker_name = tracker_name
        self.held = held  # keys of writes whose outcome recovery has not resolved yet
        self.relay = relay  # tracker files to Re:amaze by a link it can fetch

    def apply(self, plan: Plan) -> ApplyResult:
        result = ApplyResult()
        groups: dict[str, list[Action]] = {}
        for action in _hold(plan.actions, self.held):
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
        writes = _Writes(cid, fields=field_changes(actions),
                         now=lambda: server_now(self.sides[Side.TRACKER]))
        issue_id: str | None = None
        bound = log.bind(pair=self.pair, conversation_id=cid)
        try:
            for step in _steps(actions):
                if isinstance(step, list):
                    bound = log.bind(pair=self.pair, conversation_id=cid,
                                     operation=type(step[0]).__name__)
                    self._write_comments(step, issue_id, actions, writes, bound, result)
                    continue
                bound = log.bind(pair=self.pair, conversation_id=cid,
                                 operation=type(step).__name__)
                issue_id = self._apply_one(step, writes, bound, result) or issue_id
            if writes.tracker is not None:
                result.tracker[cid] = writes.tracker
        except (AuthError, RedirectError):
            raise  # credentials or base URL: every object would fail the same way; abort
        except (SkippableError, FatalError) as exc:
            bound.error("operation_failed", **exc.log_fields())
            if isinstance(exc, LeakError):
                self._leak(cid, exc, result)
            self._flush(writes)
            # A refusal to send internal content while the tracker user cannot keep it
            # private is the pair's state, not this conversation's fault: retried every
            # pass without using up its retries, it goes out once the permission is back.
            attempts = self.store.record_failure(
                self.pair, Side.HELPDESK, cid, str(exc),
                attempt=not isinstance(exc, PrivacyUnavailableError))
            # The whole error (status, trimmed body): "request rejected" alone does
            # not tell the operator what the tracker objected to.
            raise ObjectFailed(f"{type(exc).__name__}: {exc} (attempt {attempts})") from None
        finally:
            self._flush(writes)

    def _leak(self, cid: str, exc: LeakError, result: ApplyResult) -> None:
        """A copy that had to stay private came back public: loud in every case, and while
        it cannot be removed, recorded so the pair stops sending internal content."""
        if exc.removed:
            result.counts["leaks_removed"] += 1
            return
        result.counts["leaks_unremoved"] += 1
        side = Side.HELPDESK if exc.connector == self.sides[Side.HELPDESK].name \
            else Side.TRACKER
        self.store.record_leak(self.pair, cid, side, exc.ticket_id, exc.comment_id, str(exc))

    def _flush(self, writes: _Writes) -> None:
        """Commit what the conversation's writes produced, in one transaction."""
        if not writes.pending():
            return
        with self.store.atomic():
            writes.commit(self.store, self.pair)

    def _apply_one(self, action: Action, writes: _Writes, bound: Any,
                   result: ApplyResult) -> str | None:
        if isinstance(action, CreateIssue):
            return self._create_issue(action, writes, bound, result)
        if isinstance(action, UpdateTicket):
            self._journal_fields(writes)
            if action.target is Side.TRACKER:
                writes.to_tracker(None)  # read back without its notes: nothing vouched for
            self.sides[action.target].update_ticket(action.ticket_id, action.update)
            result.counts[f"{action.target.value}_updated"] += 1
            bound.info("ticket_updated", side=action.target.value, object_id=action.ticket_id,
                       reason=action.reason,
                       update=action.update.model_dump(exclude_none=True, mode="json"))
        elif isinstance(action, MarkOrphaned):
            writes.later.append(lambda: self.store.set_link_status(
                self.pair, action.conversation_id, "orphaned"))
            result.counts["orphaned"] += 1
            bound.warning("link_orphaned", reason=action.reason)
        elif isinstance(action, SaveSnapshot):
            key = writes.fields.key if writes.fields is not None and writes.fields_begun \
                else None

            def save() -> None:
                self.store.save_snapshot(self.pair, action.conversation_id, action.snapshot)
                if key is not None:
                    self.store.complete_intent(self.pair, key, "snapshot")
            writes.later.append(save)
        elif isinstance(action, AdoptIssue):
            writes.later.append(lambda: self.store.create_link(
                self.pair, action.conversation_id, action.issue_id, action.origin))
            result.counts["issues_adopted"] += 1
            bound.warning("issue_adopted", object_id=action.issue_id,
                          reason="our issue found by its marker; the state had lost its link")
            return action.issue_id
        elif isinstance(action, AdoptComment):
            def adopt() -> None:
                self.store.add_comment_link(
                    self.pair, action.conversation_id, action.source_side, action.source_id,
                    action.target_id, action.visibility.value, action.fingerprint)
                if action.edit is not None:
                    record_edit(self.store, self.pair, action.conversation_id, action.edit)
            writes.later.append(adopt)
            result.counts["comment_links_rebuilt"] += 1
            bound.info("comment_link_rebuilt", source_side=action.source_side.value,
                       source_id=action.source_id, object_id=action.target_id)
        elif isinstance(action, RemoveComment):
            self._remove(action, writes, bound, result)
        elif isinstance(action, UpdateComment):
            self._update_comment(action, writes, bound, result)
        elif isinstance(action, Untrusted):
            result.counts["untrusted_markers"] += 1
            bound.warning("marker_not_trusted", object_id=action.object_id,
                          reason=action.reason)
        elif isinstance(action, Skip):
            result.counts["skipped"] += 1
            bound.debug("skipped", object_id=action.object_id, reason=action.reason)
        elif isinstance(action, OpenConversation):
            raise TypeError("reverse creation is done by the runner, not from a plan")
        elif isinstance(action, Conflict):
            result.counts["conflicts"] += 1
            bound.warning("field_conflict", field=action.field, winner=action.winner.value,
                          helpdesk_value=action.helpdesk_value, tracker_value=action.tracker_value)
        return None

    def _journal_fields(self, writes: _Writes) -> None:
        """Before the conversation's first field write: journal its field writes with the
        snapshot they lead to. A crash before that snapshot is saved would otherwise make
        the next pass take the sync's own change for a person's (a conversation it reopened
        would look reopened by staff); recovery reads the tickets and records what landed."""
        if writes.fields is None or writes.fields_begun:
            return
        with self.store.atomic():
            writes.commit(self.store, self.pair)
            self.store.begin_intent(self.pair, writes.fields.key, "update_ticket",
                                    writes.conversation_id, writes.fields.target,
                                    writes.fields.payload)
        writes.fields_begun = True

    def _with_files(self, new: NewComment, target: Side, bound: Any) -> NewComment:
        """The copy with its attachments' bytes, for a tracker that takes uploads. Only a
        public copy: a tracker's files have no private flag, so an internal note's files
        stay links. A file that cannot be fetched stays a link too (the copy lists them
        all), logged; it never stops the copy."""
        helpdesk = self.sides[Side.HELPDESK]
        if (target is not Side.TRACKER or not new.attachments
                or new.visibility is not Visibility.PUBLIC
                or not self.sides[Side.TRACKER].capabilities.attachments_upload
                or not isinstance(helpdesk, FetchesAttachments)):
            return new
        files: list[FileData] = []
        for attachment in new.attachments:
            try:
                data = helpdesk.fetch_attachment(attachment, self.attachment_max_bytes)
            except RejectedError as exc:
                bound.warning("attachment_not_fetched", operation="upload_attachment",
                              marker=new.marker, file=attachment.name, **exc.log_fields())
                continue
            files.append(FileData(name=attachment.name, content_type=attachment.content_type,
                                  data=data))
        return new.model_copy(update={"files": tuple(files)}) if files else new

    def _remove(self, action: RemoveComment, writes: _Writes, bound: Any,
                result: ApplyResult) -> None:
        """Delete a copy that must not stay; its source is then copied again if allowed."""
        if action.target is Side.TRACKER:
            writes.to_tracker(None)
        try:
            self.sides[action.target].delete_comment(action.ticket_id, action.comment_id)
        except (SkippableError, FatalError) as exc:
            # A 403 here is the tracker refusing this delete, not bad credentials.
            bound.critical("visibility_leak_unremoved", **{
                **exc.log_fields(), "side": action.target.value,
                "object_id": action.ticket_id, "comment_id": action.comment_id,
                "reason": action.reason})
            raise LeakError(f"{action.reason}, and it could not be removed ({exc.message}); "
                            "delete it by hand", removed=False, ticket_id=action.ticket_id,
                            comment_id=action.comment_id,
                            connector=self.sides[action.target].name,
                            object_id=action.ticket_id) from None
        writes.later.append(lambda: self.store.forget_copy(
            self.pair, action.conversation_id, action.comment_id))
        result.counts["leaks_removed"] += 1
        bound.error("visibility_leak_removed", side=action.target.value,
                    object_id=action.ticket_id, comment_id=action.comment_id,
                    reason=action.reason)

    def _update_comment(self, action: UpdateComment, writes: _Writes, bound: Any,
                        result: ApplyResult) -> None:
        """Rewrite a copy whose source was edited; the copy must come back as private as
        it was, or it is removed like any leaked copy."""
        if action.target is Side.TRACKER:
            writes.to_tracker(None)
        side = self.sides[action.target]
        if not side.capabilities.edit_comments:
            raise RejectedError(f"{side.name} cannot edit comments",
                                object_id=action.ticket_id)
        after = side.update_comment(action.ticket_id, action.comment_id, action.body)
        if action.visibility is Visibility.INTERNAL and after.visibility is Visibility.PUBLIC:
            self._remove(RemoveComment(
                conversation_id=action.conversation_id, target=action.target,
                ticket_id=action.ticket_id, comment_id=action.comment_id,
                reason="copy of an internal note is public after an edit"),
                writes, bound, result)
            return
        writes.later.append(lambda: record_edit(self.store, self.pair,
                                                action.conversation_id, action.edit))
        result.counts[f"comments_updated_{action.target.value}"] += 1
        bound.info("comment_updated", side=action.target.value, object_id=action.ticket_id,
                   comment_id=action.comment_id, source_id=action.edit.source_id,
                   visibility=after.visibility.value)

    def _create_issue(self, action: CreateIssue, writes: _Writes, bound: Any,
                      result: ApplyResult) -> str:
        cid, key = action.conversation_id, action.new.marker
        with self.store.atomic():
            writes.commit(self.store, self.pair)
            try:
                self.store.create_link(self.pair, cid, None, Side.HELPDESK, pending_ok=True)
            except LinkConflict as exc:  # linked elsewhere since we read it: not ours to create
                raise SkippableError(str(exc), object_id=cid) from None
            # The covered messages too: a recovered create must record them as copied,
            # or they would be sent again as notes.
            self.store.begin_intent(self.pair, key, "create_issue", cid, Side.TRACKER,
                                    {"subject": action.new.subject,
                                     "covered": [c.model_dump(mode="json")
                                                 for c in action.covered]})
        writes.to_tracker(None)
        try:
            issue = self.sides[Side.TRACKER].create_ticket(action.new)
        except RejectedError as exc:
            # Definitely not created: drop the half link so the next pass can try again.
            with self.store.atomic():
                self.store.fail_intent(self.pair, key, exc.message)
                self.store.delete_link(self.pair, cid)
            raise
        # Completed with the conversation's next journal write: until then a crash leaves
        # the intent pending and recovery finds the issue by its marker.
        def complete() -> None:
            self.store.set_link_issue(self.pair, cid, issue.id)
            for c in action.covered:
                self.store.add_comment_link(self.pair, cid, Side.HELPDESK, c.source_id,
                                            description_target(issue.id), c.visibility.value,
                                            c.fingerprint)
            self.store.complete_intent(self.pair, key, issue.id)

        writes.later.append(complete)
        writes.to_tracker(issue)
        result.counts["issues_created"] += 1
        if action.covered:
            result.counts["messages_in_description"] += len(action.covered)
        bound.info("issue_created", object_id=issue.id, marker=key,
                   messages_in_description=len(action.covered))
        return issue.id

    # -- comments ---------------------------------------------------------------------------
    def _write_comments(self, group: list[CommentWrite], issue_id: str | None,
                        actions: list[Action], writes: _Writes, bound: Any,
                        result: ApplyResult) -> None:
        """One batch of comments to one ticket. The intents of every comment the
        conversation still has to write are journalled together before the first is sent,
        in the transaction that also commits what came before."""
        if not writes.journalled:
            intents = [self._comment(a, issue_id) for a in actions
                       if isinstance(a, AddComment | PostLinkNote)]
            with self.store.atomic():
                writes.commit(self.store, self.pair)
                self.store.begin_intents(self.pair, [c.intent() for c in intents])
            writes.journal(intents)
        target = _target(group[0])
        items = [writes.planned[_marker(a)] for a in group]
        writes.sending(items)
        if target is Side.TRACKER:
            writes.to_tracker(None)
        batch = self.sides[target].create_comments(
            items[0].ticket_id,
            [self._fetchable(self._with_files(c.new, target, bound), target) for c in items])
        writes.sent(batch)
        if target is Side.TRACKER:
            writes.to_tracker(batch.ticket, made=batch.created, seen=batch.comments)
        for comment in batch.created:
            c = writes.planned[comment.marker or ""]
            result.counts[f"comments_to_{target.value}"] += 1
            bound.info("comment_created", side=target.value, object_id=c.ticket_id,
                       comment_id=comment.id, source_id=c.source_id,
                       visibility=c.new.visibility.value, notify_customer=c.new.notify_customer)
        if batch.error is not None:
            raise batch.error

    def _fetchable(self, new: NewComment, target: Side) -> NewComment:
        """Files go to Re:amaze by relay links made now (they expire): a retry gets fresh
        ones, under the same marker."""
        if target is not Side.HELPDESK or not new.attachments or self.relay is None:
            return new
        relay = self.relay
        return new.model_copy(update={"attachments": tuple(relay(a) for a in new.attachments)})

    def _comment(self, action: AddComment | PostLinkNote, issue_id: str | None) -> _Comment:
        cid = action.conversation_id
        if isinstance(action, AddComment):
            ticket_id = action.ticket_id or issue_id
            if ticket_id is None:
                raise RejectedError("comment target is unknown (issue was not created)",
                                    object_id=cid)
            return _Comment(cid, action.target, ticket_id, action.new,
                            action.source_id or action.new.marker, action.source_fingerprint,
                            action.edit)
        if issue_id is None:
            link = self.store.get_link(self.pair, cid)
            issue_id = link.issue_id if link else None
        if issue_id is None:
            raise RejectedError("link note without an issue", object_id=cid)
        url = self.sides[Side.TRACKER].ticket_url(issue_id)
        note = NewComment(body=f"Linked to {self.tracker_name} issue #{issue_id}: {url}",
                          visibility=Visibility.INTERNAL, marker=action.marker)
        return _Comment(cid, Side.HELPDESK, cid, note, action.marker, "")


CommentWrite = AddComment | PostLinkNote


def record_edit(store: StateStore, pair: str, cid: str, edit: CopyEdit) -> None:
    store.set_copy_fingerprint(pair, cid, edit.source_side, edit.source_id, edit.fingerprint)


def held_plan(plan: Plan, held: frozenset[str] | set[str]) -> Plan:
    """The plan as the applier carries it out while the writes keyed ``held`` have no
    confirmed outcome (`explain` shows this instead of writing it)."""
    return Plan(pair=plan.pair, actions=tuple(_hold(plan.actions, held)))


def _hold(actions: tuple[Action, ...], held: frozenset[str] | set[str]) -> list[Action]:
    """The plan without the writes whose key recovery has not resolved, nor any later
    comment of the same conversation to the same side (it would overtake the held one),
    nor the conversation's later field changes and link marking, nor then its snapshot.
    The reconciler puts those after the writes they depend on (the close reply before the
    conversation is closed, the orphan note before the link is marked orphaned), and the
    snapshot records them as done: applied without them, the change that called for the
    held write is no longer seen, and a write recovery then gives up on is never planned
    again. A snapshot with no held change behind it is still saved (a link's first one
    is the base later changes are seen against)."""
    if not held:
        return list(actions)
    blocked: set[tuple[str, Side]] = set()
    waiting: set[str] = set()  # conversations with a held write
    stalled: set[str] = set()  # ... and a held change the snapshot would record as done
    out: list[Action] = []
    for action in actions:
        cid = action.conversation_id
        if isinstance(action, AddComment | PostLinkNote):
            key = (cid, _target(action))
            if _marker(action) in held or key in blocked:
                blocked.add(key)
                waiting.add(cid)
                out.append(Skip(conversation_id=cid, object_id=_marker(action), reason=HELD))
                continue
        elif (cid in waiting and isinstance(action, UpdateTicket | MarkOrphaned)) or (
                cid in stalled and isinstance(action, SaveSnapshot)):
            stalled.add(cid)
            out.append(Skip(conversation_id=cid,
                            object_id=action.ticket_id if isinstance(action, UpdateTicket)
                            else cid,
                            reason=f"held: {type(action).__name__} waits for a write of this "
                                   "conversation that has no confirmed outcome yet"))
            continue
        out.append(action)
    return out


def _marker(action: CommentWrite) -> str:
    return action.new.marker if isinstance(action, AddComment) else action.marker


def _target(action: CommentWrite) -> Side:
    return action.target if isinstance(action, AddComment) else Side.HELPDESK


def _steps(actions: list[Action]) -> Iterator[Action | list[CommentWrite]]:
    """The actions in order, runs of comments to the same side joined into one batch."""
    run: list[CommentWrite] = []
    for action in actions:
        if isinstance(action, AddComment | PostLinkNote):
            if run and (_target(run[0]) is not _target(action)
                        or (isinstance(action, AddComment) and isinstance(run[0], AddComment)
                            and action.ticket_id != run[0].ticket_id)):
                yield run
                run = []
            run.append(action)
            continue
        if run:
            yield run
            run = []
        yield action
    if run:
        yield run


@dataclass(frozen=True)
class _Comment:
    conversation_id: str
    target: Side
    ticket_id: str
    new: NewComment
    source_id: str
    fingerprint: str
    edit: CopyEdit | None = None

    def intent(self) -> NewIntent:
        # The edit goes with the intent: recovery, finding the note, records it too.
        edit = {"edit": self.edit.model_dump(mode="json")} if self.edit else {}
        return NewIntent(key=self.new.marker, kind="add_comment",
                         conversation_id=self.conversation_id, target=self.target,
                         payload={"ticket_id": self.ticket_id,
                                  "source_side": self.target.other.value,
                                  "source_id": self.source_id,
                                  "visibility": self.new.visibility.value,
                                  "fingerprint": self.fingerprint, **edit})


@dataclass
class _Writes:
    """A conversation's journal bookkeeping, committed in as few transactions as the
    write-ahead rule allows: intents before their remote writes, everything else with the
    next intent transaction or at the end."""

    conversation_id: str
    fields: FieldChanges | None = None  # the field writes of the plan and their snapshot
    fields_begun: bool = False
    planned: dict[str, _Comment] = field(default_factory=dict)  # marker -> comment
    journalled: bool = False
    unsent: set[str] = field(default_factory=set)
    links: list[tuple[_Comment, str]] = field(default_factory=list)  # (comment, remote id)
    failed: dict[str, str] = field(default_factory=dict)  # marker -> error
    later: list[Callable[[], object]] = field(default_factory=list)
    tracker: TrackerWrites | None = None  # once anything was written to the issue
    # The tracker's time (``connectors.base.server_now``): its change times settle by it.
    now: Callable[[], datetime | None] = lambda: None
    _made: set[str] = field(default_factory=set)  # comments written to the issue

    def to_tracker(self, after: Ticket | None, made: Sequence[Comment] = (),
                   seen: Sequence[Comment] = ()) -> None:
        """Account for a write to the issue: called with None before it is sent, then
        with the issue as read back after it (if it was)."""
        self._made |= {c.id for c in made}
        before = self.tracker.before if self.tracker is not None else self.now()
        others = frozenset(c.id for c in seen if c.id not in self._made)
        self.tracker = TrackerWrites(before=before, after=after, others=others)

    def journal(self, comments: list[_Comment]) -> None:
        self.journalled = True
        self.planned = {c.new.marker: c for c in comments}
        self.unsent = set(self.planned)

    def sending(self, items: list[_Comment]) -> None:
        """From here on these may reach the remote: an exception of any kind leaves their
        intents pending, for recovery to look for."""
        self.unsent -= {c.new.marker for c in items}

    def sent(self, batch: CommentBatch) -> None:
        for comment in batch.created:
            self.links.append((self.planned[comment.marker or ""], comment.id))
        error = batch.error.message if batch.error is not None else "not written"
        for marker in batch.not_written:
            self.failed[marker] = error

    def pending(self) -> bool:
        return bool(self.unsent or self.links or self.failed or self.later)

    def commit(self, store: StateStore, pair: str) -> None:
        """Inside the caller's transaction; what is committed is forgotten here."""
        for marker in sorted(self.unsent):
            self.failed[marker] = "not sent: an earlier write of the conversation failed"
        self.unsent = set()
        if self.links:
            by_side: dict[Side, list[NewCommentLink]] = {}
            for c, remote_id in self.links:
                by_side.setdefault(c.target, []).append(NewCommentLink(
                    source_side=c.target.other, source_id=c.source_id, target_id=remote_id,
                    visibility=c.new.visibility.value, fingerprint=c.fingerprint))
            for links in by_side.values():
                store.add_comment_links(pair, self.conversation_id, links)
            for c, _ in self.links:
                if c.edit is not None:
                    record_edit(store, pair, self.conversation_id, c.edit)
            store.complete_intents(pair, {c.new.marker: rid for c, rid in self.links})
        for error in sorted(set(self.failed.values())):
            store.fail_intents(pair, [m for m, e in self.failed.items() if e == error], error)
        for step in self.later:
            step()
        self.links, self.failed, self.later = [], {}, []
