"""Writing notes without duplicates and without leaking internal content.

* Creates are sent once (``write_once``): after a timeout or 5xx the note may have
  landed, so the issue's notes are searched for its marker before anything else.
* Internal notes (``internal: true``; ``confidential: true`` as well, the name GitLab
  used before 15.x, which the newer field overrides): refused up front when the API user
  is below Reporter in the project (``PrivacyCheck``), because GitLab shows internal
  notes only to Reporters and up and the token would not even see its own note. After
  writing, every internal note is read back on its own (``GET …/notes/:id``): a note
  whose answer does not *prove* it private (``internal`` false, or a GitLab that
  answers with neither field) is deleted at once and reported as a ``LeakError``.
* Only notes written by the API user count as ours: a marker copied into someone else's
  note is not our note.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from connectors.gitlab.wire import CONNECTOR, LEVEL_NAMES, REPORTER, GlNoteWire, parse_one
from connectors.hidden_marker import check_marker, embed_marker
from connectors.http import ApiClient, Clock, write_once
from syncer.errors import LeakError, PrivacyUnavailableError, SyncError
from syncer.models import Comment, NewComment, Visibility

log = structlog.get_logger("reamaze_sync.gitlab")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str


class PrivacyCheck:
    """Whether the API user may write internal notes (Reporter or above), cached for
    ``ttl`` seconds: it only decides whether to try; every note is read back anyway."""

    def __init__(self, level: Callable[[], int], clock: Clock, ttl: float = 60.0) -> None:
        self.level = level
        self.clock = clock
        self.ttl = ttl
        self._cached: tuple[float, Verdict] | None = None
        # Set for good when GitLab answered a note with neither ``internal`` nor
        # ``confidential``: a GitLab without internal notes; no role changes that.
        self.unsupported: str | None = None

    def verdict(self) -> Verdict:
        if self.unsupported is not None:
            return Verdict(False, self.unsupported)
        now = self.clock.monotonic()
        if self._cached is not None and now - self._cached[0] < self.ttl:
            return self._cached[1]
        level = self.level()
        verdict = Verdict(level >= REPORTER,
                          f"access level {LEVEL_NAMES.get(level, level)}; internal notes "
                          "need Reporter or above")
        self._cached = (now, verdict)
        return verdict

    def revoke(self, reason: str) -> None:
        self._cached = (self.clock.monotonic(), Verdict(False, reason))


class NoteWriter:
    def __init__(self, api: ApiClient, privacy: PrivacyCheck, notes_path: Callable[[str], str],
                 to_comment: Callable[[GlNoteWire, str], Comment],
                 find: Callable[[str, str], Comment | None]) -> None:
        self.api = api
        self.privacy = privacy
        self.notes_path = notes_path
        self.to_comment = to_comment
        self.find = find

    def create(self, ticket_id: str, new: NewComment, body: str) -> Comment:
        check_marker(new.marker)
        internal = new.visibility is Visibility.INTERNAL
        if internal:
            verdict = self.privacy.verdict()
            if not verdict.allowed:
                log.warning("gitlab_internal_note_refused", connector=CONNECTOR,
                            issue_id=ticket_id, marker=new.marker, reason=verdict.reason)
                raise PrivacyUnavailableError(
                    f"internal note not sent: the GitLab API user cannot write internal notes "
                    f"({verdict.reason})", connector=CONNECTOR, object_id=ticket_id)
        payload: dict[str, object] = {"body": embed_marker(body, new.marker)}
        if internal:
            payload |= {"internal": True, "confidential": True}
        path = self.notes_path(ticket_id)

        def send() -> Comment:
            return self.to_comment(parse_one(GlNoteWire, self.api.send_json(
                "POST", path, payload, object_id=ticket_id, retry_transient=False), "note",
                object_id=ticket_id), ticket_id)

        comment = write_once(self.api, send, lambda: self.find(ticket_id, new.marker),
                             object_id=ticket_id)
        if internal:
            self._read_back(ticket_id, comment)
        log.debug("gitlab_comment_created", connector=CONNECTOR, issue_id=ticket_id,
                  comment_id=comment.id, visibility=comment.visibility.value, marker=new.marker)
        return comment

    def _read_back(self, ticket_id: str, comment: Comment) -> None:
        if comment.visibility is not Visibility.INTERNAL:  # the create's own answer
            self._flagless(comment.raw)
            raise self.remove_leak(ticket_id, comment.id)
        note = parse_one(GlNoteWire, self.api.get_json(f"{self.notes_path(ticket_id)}/"
                                                       f"{int(comment.id)}", object_id=ticket_id),
                         "note", object_id=ticket_id)
        if not note.provably_internal:
            raise self.remove_leak(ticket_id, comment.id)

    def _flagless(self, raw: dict[str, object] | None) -> None:
        if raw is not None and raw.get("internal") is None and raw.get("confidential") is None:
            self.privacy.unsupported = ("this GitLab answers notes without an internal flag "
                                        "(a version before internal notes)")

    def remove_leak(self, ticket_id: str, note_id: str) -> LeakError:
        """An internal note is not provably private on GitLab: delete it now; the error."""
        self.privacy.revoke("an internal note came back without GitLab's internal flag")
        object_id = f"{ticket_id}#{note_id}"
        try:
            self.api.request("DELETE", f"{self.notes_path(ticket_id)}/{int(note_id)}",
                             object_id=object_id)
        except SyncError as exc:
            log.critical("visibility_leak_unremoved", issue_id=ticket_id, note_id=note_id,
                         **exc.log_fields())
            unremoved = LeakError("internal note came back public (no internal flag) and "
                                  "could NOT be removed; delete it by hand", removed=False,
                                  ticket_id=ticket_id, comment_id=note_id, connector=CONNECTOR,
                                  object_id=object_id)
            unremoved.__cause__ = exc
            return unremoved
        log.error("visibility_leak_removed", connector=CONNECTOR, issue_id=ticket_id,
                  note_id=note_id)
        return LeakError("internal note came back public (no internal flag); removed",
                         removed=True, ticket_id=ticket_id, comment_id=note_id,
                         connector=CONNECTOR, object_id=object_id)
