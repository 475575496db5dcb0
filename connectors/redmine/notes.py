"""Writing notes (journals) without duplicates and without leaking internal content.

* A note is sent ALONE (``notes`` + ``private_notes``): combined with attribute changes
  Redmine splits it into two journals, and the split is where flags get confusing.
* The note PUT is not retried blindly: after a timeout or 5xx it may have landed, so the
  journals are searched for its marker before sending it again (a 429 was not processed
  and is simply retried after its ``Retry-After``).
* Internal notes: refused up front when the user cannot set notes private (see guard.py);
  after writing, the flag is read back, and a note that came back public is deleted at
  once (``PUT /journals/:id.json`` with empty notes deletes a note without details) and
  reported as a ``RejectedError``.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

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
        check_marker(new.marker)
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
        issue = self.read_issue(issue_id)
        journal = self._journal_with_marker(issue, new.marker)
        if journal is None:
            raise RejectedError("note was accepted but is not in the issue's journals",
                                connector=CONNECTOR, object_id=issue_id)
        if internal and not journal.private_notes:
            self._remove_leak(issue_id, journal)
        comment = journal_to_comment(journal, str(issue.id),
                                     {str(a.id): a for a in issue.attachments or ()})
        if comment is None:  # pragma: no cover - a journal found by its marker has a note
            raise RejectedError("note came back empty", connector=CONNECTOR, object_id=issue_id)
        log.info("redmine_comment_created", connector=CONNECTOR, issue_id=issue_id,
                 comment_id=comment.id, visibility=comment.visibility.value, marker=new.marker)
        return comment

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
            self._remove_leak(issue_id, edited)
        comment = journal_to_comment(edited, str(after.id),
                                     {str(a.id): a for a in after.attachments or ()})
        if comment is None:
            raise RejectedError("note came back empty after the edit", connector=CONNECTOR,
                                object_id=f"{issue_id}#{comment_id}")
        return comment

    # -- helpers ------------------------------------------------------------------------
    def _remove_leak(self, issue_id: str, journal: Journal) -> None:
        """An internal note is public on the tracker: delete it now, then fail loudly."""
        self.guard.revoke("a private note came back public")
        object_id = f"{issue_id}#{journal.id}"
        try:
            self.api.request("PUT", f"/journals/{journal.id}.json",
                             json_body={"journal": {"notes": ""}}, object_id=object_id)
            after = self.read_issue(issue_id)
        except SyncError as exc:
            log.critical("visibility_leak_unremoved", issue_id=issue_id, journal_id=journal.id,
                         **exc.log_fields())
            raise RejectedError("private note came back public and could NOT be removed; "
                                "delete it by hand", connector=CONNECTOR,
                                object_id=object_id) from exc
        still = next((j for j in after.journals or () if j.id == journal.id and j.has_note),
                     None)
        if still is not None:
            log.critical("visibility_leak_unremoved", connector=CONNECTOR, issue_id=issue_id,
                         journal_id=journal.id, error="note still present after delete")
            raise RejectedError("private note came back public and could NOT be removed; "
                                "delete it by hand", connector=CONNECTOR, object_id=object_id)
        log.error("visibility_leak_removed", connector=CONNECTOR, issue_id=issue_id,
                  journal_id=journal.id)
        raise RejectedError("private note came back public; removed", connector=CONNECTOR,
                            object_id=object_id)
