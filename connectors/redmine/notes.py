"""Writing notes (journals) without duplicates and without leaking internal content.

* A note is sent ALONE (``notes`` + ``private_notes``): combined with attribute changes
  Redmine splits it into two journals, and the split is where flags get confusing.
* The note PUT is not retried blindly: after a timeout or 5xx it may have landed, so the
  journals are searched for its marker before sending it again (a 429 was not processed
  and is simply retried after its ``Retry-After``).
* Notes to one issue go as a batch, confirmed by ONE read of the issue afterwards: the PUT
  answers 204 with no body, so that read is how the journal ids are learnt at all.
* Internal notes: refused up front when the user cannot set notes private (see guard.py);
  after writing, EVERY internal note is read back on its own before anything else is
  sent, and a note that came back public is deleted at once (``PUT /journals/:id.json``
  with empty notes deletes a note without details) and reported as a ``LeakError``. The
  permission can go away at any moment (a role changed, the permission removed from the
  role), so a read-back proves nothing about the next note: a batch never goes past an
  internal note unchecked, and a wrong answer leaks one note, removed at once.
* Only journals written by the API user count as ours: a marker copied into someone
  else's note is not our note.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from connectors.base import CommentBatch, never_reached
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
from connectors.redmine.wire import CONNECTOR, Issue, Journal, Upload, parse_one
from syncer.errors import (
    LeakError,
    NotFoundError,
    PrivacyUnavailableError,
    RejectedError,
    SyncError,
)
from syncer.models import Comment, NewComment, Ticket, Visibility

log = structlog.get_logger("reamaze_sync.redmine")


def upload_file(api: ApiClient, issue_id: str, filename: str, data: bytes) -> str:
    """``POST /uploads.json``: the token that attaches the file with the next issue write."""
    _, raw, _ = api.request("POST", "/uploads.json", params={"filename": filename},
                            content=data, headers={"Content-Type": "application/octet-stream"},
                            object_id=issue_id)
    return parse_one(Upload, api.decode(raw, object_id=issue_id), "upload",
                     object_id=issue_id).token


def _reason(exc: RejectedError) -> str:
    """Redmine's own words for a refused upload (``{"errors": [...]}``), or its status."""
    try:
        errors = json.loads(exc.body or "").get("errors")
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)[:200]
    return f"HTTP {exc.status}" if exc.status else exc.message


class Notes:
    def __init__(self, api: ApiClient, guard: PrivateNotesGuard,
                 clock: Clock, read_issue: Callable[[str], Issue],
                 issue_path: Callable[[str], str], whoami: Callable[[], str],
                 to_ticket: Callable[[Issue], Ticket]) -> None:
        self.api = api
        self.guard = guard
        self.clock = clock
        self.read_issue = read_issue
        self.issue_path = issue_path
        self.whoami = whoami
        self.to_ticket = to_ticket

    # -- reading ----------------------------------------------------------------------
    def list(self, issue_id: str) -> list[Comment]:
        return issue_comments(self.read_issue(issue_id))

    def find(self, issue_id: str, marker: str) -> Comment | None:
        """Our note with this marker (by the API user; a copied marker is not ours)."""
        check_marker(marker)
        issue = self.read_issue(issue_id)
        journal = self._journal_with_marker(issue, marker)
        if journal is None:
            return None
        return journal_to_comment(journal, str(issue.id),
                                  {str(a.id): a for a in issue.attachments or ()})

    def _journal_with_marker(self, issue: Issue, marker: str) -> Journal | None:
        """Our journal with this marker: by the API user, the oldest if several."""
        me = self.whoami()
        hits = [j for j in issue.journals or ()
                if j.notes and split_marker(j.notes)[1] == marker
                and j.user is not None and str(j.user.id) == me]
        return min(hits, key=lambda j: j.id) if hits else None

    # -- writing ----------------------------------------------------------------------
    def create(self, issue_id: str, new: NewComment) -> Comment:
        batch = self.create_many(issue_id, [new])
        if batch.error is not None:
            raise batch.error
        return batch.created[0]

    def create_many(self, issue_id: str, news: Sequence[NewComment]) -> CommentBatch:
        """Write notes in order, reading the issue back after every internal note and after
        the last note: the read-back learns the journal ids and checks that each private
        note stayed private before the next note goes out.
        """
        batch = CommentBatch()
        pending: Sequence[NewComment] = news
        for new in pending:
            check_marker(new.marker)
        while pending and batch.error is None:
            chunk = self._next_chunk(pending)
            pending = pending[len(chunk):]
            batch.ticket, batch.comments = None, ()  # an earlier read-back is out of date
            sent = self._send(issue_id, chunk, batch)
            if sent:
                self._read_back(issue_id, sent, batch)
        batch.not_written += [new.marker for new in pending]
        return batch

    @staticmethod
    def _next_chunk(pending: Sequence[NewComment]) -> Sequence[NewComment]:
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
                batch.not_written += [c.marker for c in chunk[n if never_reached(exc) else n + 1:]]
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
                raise PrivacyUnavailableError(
                    "internal note not sent: the Redmine API user cannot make notes private "
                    f"(needs the set_notes_private permission; {verdict.reason})",
                    connector=CONNECTOR, object_id=issue_id)
        text, uploads = self._uploads(issue_id, new)
        body: dict[str, Any] = {"issue": {"notes": embed_marker(text, new.marker),
                                          "private_notes": internal}}
        if uploads:
            body["issue"]["uploads"] = uploads
        path = self.issue_path(issue_id)
        write_once(
            self.api,
            lambda: self.api.request("PUT", path, json_body=body, object_id=issue_id,
                                     retry_transient=False),
            lambda: self._journal_with_marker(self.read_issue(issue_id), new.marker),
            object_id=issue_id)

    def _uploads(self, issue_id: str, new: NewComment
                 ) -> tuple[str, builtins.list[dict[str, str]]]:
        """Upload the copy's files (one journal with the note: ``uploads`` beside ``notes``);
        a file Redmine refuses (over its size limit, a type it does not allow) is named in
        the note instead, with the reason. Never a file of an internal note: Redmine's
        attachments have no private flag."""
        if not new.files or new.visibility is Visibility.INTERNAL:
            return new.body, []
        uploads: builtins.list[dict[str, str]] = []
        refused: builtins.list[str] = []
        for f in new.files:
            try:
                token = upload_file(self.api, issue_id, f.name, f.data)
            except RejectedError as exc:
                log.warning("redmine_upload_refused", connector=CONNECTOR, issue_id=issue_id,
                            marker=new.marker, file=f.name, error=exc.message)
                refused.append(f"{f.name}: not attached, Redmine refused it "
                               f"({_reason(exc)})")
                continue
            uploads.append({"token": token, "filename": f.name,
                            "content_type": f.content_type or "application/octet-stream"})
        text = new.body + "".join(f"\n{line}" for line in refused)
        return text, uploads

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
        batch.ticket, batch.comments = self.to_ticket(issue), tuple(issue_comments(issue))
        attachments = {str(a.id): a for a in issue.attachments or ()}
        for new in sent:
            journal = self._journal_with_marker(issue, new.marker)
            if journal is None:
                batch.not_written.append(new.marker)
                batch.error = batch.error or RejectedError(
                    "note was accepted but is not in the issue's journals",
                    connector=CONNECTOR, object_id=issue_id)
                continue
            if new.visibility is Visibility.INTERNAL and not journal.private_notes:
                leak = self._remove_leak(issue_id, journal)
                if leak.removed:
                    batch.not_written.append(new.marker)
                batch.error = leak
                continue
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
            raise self._remove_leak(issue_id, edited)
        comment = journal_to_comment(edited, str(after.id),
                                     {str(a.id): a for a in after.attachments or ()})
        if comment is None:
            raise RejectedError("note came back empty after the edit", connector=CONNECTOR,
                                object_id=f"{issue_id}#{comment_id}")
        return comment

    def delete(self, issue_id: str, comment_id: str) -> None:
        """Remove a note (blank notes on a journal without details is a delete in Redmine;
        a journal that also changed fields keeps them and loses only its text), then check
        it is gone."""
        object_id = f"{issue_id}#{comment_id}"
        if not comment_id.isascii() or not comment_id.isdigit():
            raise NotFoundError("not a Redmine journal id", connector=CONNECTOR,
                                object_id=object_id[:60])
        self.api.request("PUT", f"/journals/{int(comment_id)}.json",
                         json_body={"journal": {"notes": ""}}, object_id=object_id)
        after = self.read_issue(issue_id)
        if any(str(j.id) == comment_id and j.has_note for j in after.journals or ()):
            raise RejectedError("note still present after delete", connector=CONNECTOR,
                                object_id=object_id)

    # -- helpers ------------------------------------------------------------------------
    def _remove_leak(self, issue_id: str, journal: Journal) -> LeakError:
        """An internal note is public on the tracker: delete it now; the error to report."""
        self.guard.revoke("a private note came back public")
        object_id = f"{issue_id}#{journal.id}"
        try:
            self.delete(issue_id, str(journal.id))
        except SyncError as exc:
            log.critical("visibility_leak_unremoved", issue_id=issue_id,
                         journal_id=journal.id, **exc.log_fields())
            unremoved = LeakError("private note came back public and could NOT be removed; "
                                  "delete it by hand", removed=False, ticket_id=issue_id,
                                  comment_id=str(journal.id), connector=CONNECTOR,
                                  object_id=object_id)
            unremoved.__cause__ = exc
            return unremoved
        log.error("visibility_leak_removed", connector=CONNECTOR, issue_id=issue_id,
                  journal_id=journal.id)
        return LeakError("private note came back public; removed", removed=True,
                         ticket_id=issue_id, comment_id=str(journal.id),
                         connector=CONNECTOR, object_id=object_id)
