"""Writing notes (journals) without duplicates and without leaking internal content.

* A note is sent ALONE (``notes`` + ``private_notes``): combined with attribute changes
  Redmine splits it into two journals, and the split is where flags get confusing.
* The note PUT is not retried blindly: after a timeout or 5xx it may have landed, so the
  journals are searched for its marker before sending it again (a 429 was not processed
  and is simply retried after its ``Retry-After``).
* Notes to one issue go as a batch, confirmed by ONE read of the issue afterwards: the PUT
  answers 204 with no body, so that read is how the journal ids are learnt at all.
* Internal notes: refused up front when the user cannot set notes private (see guard.py);
  after writing, the flag is read back, and a note that came back public is deleted at
  once (``PUT /journals/:id.json`` with empty notes deletes a note without details) and
  reported as a ``RejectedError``. Until the server has kept one private note private
  under the current permission answer, the first internal note of a batch is read back
  alone, so a wrong answer leaks one note (removed at once), never a batch.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from connectors.base import CommentBatch
from connectors.http import ApiClient, Clock, write_once
from connectors.redmine.guard import PrivateNotesGuard
from connectors.redmine.mapping import (
    check_marker,
    embed_marker,
    issue_comments,
    journal_to_comment,
    normalise_newlines,
    split_marker,
)
from connectors.redmine.wire import CONNECTOR, Issue, Journal
from syncer.errors import (
    NotFoundError,
    RejectedError,
    SkippableError,
    SyncError,
)
from syncer.models import Comment, NewComment, Visibility

log = structlog.get_logger("reamaze_sync.redmine")


class Notes:
    def __init__(self, api: ApiClient, guard: PrivateNotesGuard,
                 clock: Clock, read_issue: Callable[[str], Issue],
                 issue_path: Callable[[str], str]) -> None:
        self.api = api
        self.guard = guard
        self.clock = clock
        self.read_issue = read_issue
        self.issue_path = issue_path

    # -- reading ----------------------------------------------------------------------
    def list(self, issue_id: str) -> list[Comment]:
        return issue_comments(self.read_issue(issue_id))

    def find(self, issue_id: str, marker: str) -> Comment | None:
        check_marker(marker)
        return next((c for c in self.list(issue_id) if c.marker == marker), None)

    def _journal_with_marker(self, issue: Issue, marker: str) -> Journal | None:
        hits = [j for j in issue.journals or ()
                if j.notes and split_marker(j.notes)[1] == marker]
        return max(hits, key=lambda j: j.id) if hits else None

    # -- writing ----------------------------------------------------------------------
    def create(self, issue_id: str, new: NewComment) -> Comment:
        batch = self.create_many(issue_id, [new])
        if batch.error is not None:
            raise batch.error
        return batch.created[0]

    def create_many(self, issue_id: str, news: Sequence[NewComment]) -> CommentBatch:
        """Write notes in order, then read the issue back once to learn their journal ids
        and check that every private note stayed private.

        Until a read-back has shown that a private note stays private (the permission
        check can be wrong: a plugin, a role changed since it was cached), a batch stops
        after its first internal note to read it back alone, so a misjudged permission
        leaks one note, removed at once, never a whole batch.
        """
        batch = CommentBatch()
        pending: Sequence[NewComment] = news
        for new in pending:
            check_marker(new.marker)
        while pending and batch.error is None:
            chunk = self._next_chunk(pending)
            pending = pending[len(chunk):]
            sent = self._send(issue_id, chunk, batch)
            if sent:
                self._read_back(issue_id, sent, batch)
        batch.not_written += [new.marker for new in pending]
        return batch

    def _next_chunk(self, pending: Sequence[NewComment]) -> Sequence[NewComment]:
        if self.guard.proven:
            return pending
        for n, new in enumerate(pending):
            if new.visibility is Visibility.INTERNAL:
                return pending[:n + 1]
        return pending

    def _send(self, issue_id: str, chunk: Sequence[NewComment],
              batch: CommentBatch) -> Sequence[NewComment]:
        """PUT the notes of ``chunk`` until one fails; the notes sent."""
        sent: builtins.list[NewComment] = []
        for n, new in enumerate(chunk):
            try:
                self._put(issue_id, new)
            except SyncError as exc:
                refused = isinstance(exc, RejectedError | SkippableError)
                batch.not_written += [c.marker for c in chunk[n if refused else n + 1:]]
                batch.error = exc
                break
            sent.append(new)
        return sent

    def _put(self, issue_id: str, new: NewComment) -> None:
        internal = new.visibility is Visibility.INTERNAL
        if internal:
            verdict = self.guard.verdict()
            if not verdict.allowed:
                log.warning("redmine_private_note_refused", connector=CONNECTOR,
                            issue_id=issue_id, marker=new.marker, reason=verdict.reason)
                raise RejectedError(
                    "internal note not sent: the Redmine API user cannot make notes private "
                    f"(needs the set_notes_private permission; {verdict.reason})",
                    connector=CONNECTOR, object_id=issue_id)
        body = {"issue": {"notes": embed_marker(new.body, new.marker),
                          "private_notes": internal}}
        path = self.issue_path(issue_id)
        write_once(
            self.api,
            lambda: self.api.request("PUT", path, json_body=body, object_id=issue_id,
                                     retry_transient=False),
            lambda: self._journal_with_marker(self.read_issue(issue_id), new.marker),
            object_id=issue_id)

    def _read_back(self, issue_id: str, sent: Sequence[NewComment],
                   batch: CommentBatch) -> None:
        """Journal ids of the notes just sent, and the leak check. A failed read leaves
        the sent notes unconfirmed (neither created nor not-written): recovery finds them
        by their markers."""
        try:
            issue = self.read_issue(issue_id)
        except SyncError as exc:
            batch.error = batch.error or exc
            return
        attachments = {str(a.id): a for a in issue.attachments or ()}
        for new in sent:
            journal = self._journal_with_marker(issue, new.marker)
            if journal is None:
                batch.not_written.append(new.marker)
                batch.error = batch.error or RejectedError(
                    "note was accepted but is not in the issue's journals",
                    connector=CONNECTOR, object_id=issue_id)
                continue
            if new.visibility is Visibility.INTERNAL:
                if not journal.private_notes:
                    leak = self._remove_leak(issue_id, journal)
                    if leak.removed:
                        batch.not_written.append(new.marker)
                    batch.error = leak.error
                    continue
                self.guard.prove()
            comment = journal_to_comment(journal, str(issue.id), attachments)
            if comment is None:  # pragma: no cover - a journal found by its marker has a note
                batch.not_written.append(new.marker)
                batch.error = batch.error or RejectedError(
                    "note came back empty", connector=CONNECTOR, object_id=issue_id)
                continue
            log.debug("redmine_comment_created", connector=CONNECTOR, issue_id=issue_id,
                     comment_id=comment.id, visibility=comment.visibility.value,
                     marker=new.marker)
            batch.created.append(comment)

    def update(self, issue_id: str, comment_id: str, body: str) -> Comment:
        issue = self.read_issue(issue_id)
        journal = next((j for j in issue.journals or () if str(j.id) == comment_id), None)
        if journal is None or not journal.has_note or journal.notes is None:
            raise NotFoundError("no such note on this issue", connector=CONNECTOR,
                                object_id=f"{issue_id}#{comment_id}")
        _, marker = split_marker(journal.notes)
        notes = embed_marker(body, marker) if marker else normalise_newlines(body).rstrip()
        if not notes.strip():
            # An empty note on a journal without details is a delete in Redmine.
            raise RejectedError("refusing to blank a note (Redmine would delete it)",
                                connector=CONNECTOR, object_id=f"{issue_id}#{comment_id}")
        self.api.request("PUT", f"/journals/{journal.id}.json",
                         json_body={"journal": {"notes": notes}},
                         object_id=f"{issue_id}#{comment_id}")
        after = self.read_issue(issue_id)
        edited = next((j for j in after.journals or () if j.id == journal.id), None)
        if edited is None:
            raise NotFoundError("note disappeared after the edit", connector=CONNECTOR,
                                object_id=f"{issue_id}#{comment_id}")
        if journal.private_notes and not edited.private_notes:
            raise self._remove_leak(issue_id, edited).error
        comment = journal_to_comment(edited, str(after.id),
                                     {str(a.id): a for a in after.attachments or ()})
        if comment is None:
            raise RejectedError("note came back empty after the edit", connector=CONNECTOR,
                                object_id=f"{issue_id}#{comment_id}")
        return comment

    # -- helpers ------------------------------------------------------------------------
    def _remove_leak(self, issue_id: str, journal: Journal) -> Leak:
        """An internal note is public on the tracker: delete it now; the error to report."""
        self.guard.revoke("a private note came back public")
        object_id = f"{issue_id}#{journal.id}"
        unremoved = RejectedError("private note came back public and could NOT be removed; "
                                  "delete it by hand", connector=CONNECTOR, object_id=object_id)
        try:
            self.api.request("PUT", f"/journals/{journal.id}.json",
                             json_body={"journal": {"notes": ""}}, object_id=object_id)
            after = self.read_issue(issue_id)
        except SyncError as exc:
            log.critical("visibility_leak_unremoved", issue_id=issue_id, journal_id=journal.id,
                         **exc.log_fields())
            unremoved.__cause__ = exc
            return Leak(removed=False, error=unremoved)
        still = next((j for j in after.journals or () if j.id == journal.id and j.has_note),
                     None)
        if still is not None:
            log.critical("visibility_leak_unremoved", connector=CONNECTOR, issue_id=issue_id,
                         journal_id=journal.id, error="note still present after delete")
            return Leak(removed=False, error=unremoved)
        log.error("visibility_leak_removed", connector=CONNECTOR, issue_id=issue_id,
                  journal_id=journal.id)
        return Leak(removed=True, error=RejectedError(
            "private note came back public; removed", connector=CONNECTOR,
            object_id=object_id))


@dataclass(frozen=True)
class Leak:
    removed: bool
    error: RejectedError
