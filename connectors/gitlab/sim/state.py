"""The GitLab simulator's data and rules, apart from HTTP (see ``server.py``).

What it keeps faithful (trackers.md §2; gitlabhq ``doc/api/issues.md``, ``notes.md``,
``project_markdown_uploads.md``, ``doc/user/permissions.md``):

* Issue ``iid`` counts per project, issue and note ids are global. Times are
  millisecond-precise (``2016-01-04T15:31:51.081Z``); every change of an issue, a note on
  it included, moves its ``updated_at``. State changes and label changes add system notes.
* Roles by access level: Guests may open issues and comment, but labels and assignees
  they give are dropped silently, and they may not edit others' issues (403). Planner and
  up may label, assign, close; Reporter and up may write and read internal notes (a
  Guest's ``internal: true`` is dropped silently: the note is public). A project the user
  is no member of is 404 when private.
* ``notes_flag``: how new the GitLab is. ``"internal"`` (15.x and later): notes answer
  both ``internal`` and ``confidential``; ``"confidential"`` (before the rename): only
  ``confidential``; ``None`` (before internal notes existed): neither field, and both
  parameters are ignored, so every note is public.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

MAX_NOTE = 1_000_000
GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 15, 20, 30, 40, 50
NotesFlag = Literal["internal", "confidential"] | None


class SimClock:
    """Wall clock of the simulator; tests move it with ``advance``. Starts an hour behind
    the real clock, like the other simulators: every change time has settled."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            self.current += timedelta(milliseconds=1)
            return self.current

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.current += timedelta(seconds=seconds)


class GitLabError(Exception):
    """An answer other than success: status and GitLab's ``message`` (or ``error``)."""

    def __init__(self, status: int, message: object, *, key: str = "message",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(str(message))
        self.status = status
        self.message = message
        self.key = key
        self.headers = headers or {}


def not_found(what: str = "Not found") -> GitLabError:
    return GitLabError(404, f"404 {what}")


@dataclass
class GlUser:
    id: int
    username: str
    name: str
    token: str
    bot: bool = False


@dataclass
class GlProject:
    id: int
    path: str  # namespace/name
    visibility: str = "private"
    issues_enabled: bool = True
    members: dict[str, int] = field(default_factory=dict)  # username -> access level
    labels: dict[str, str] = field(default_factory=dict)  # name -> colour
    next_iid: int = 1
    uploads: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # url -> file

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class GlIssue:
    id: int
    project_id: int
    iid: int
    title: str
    description: str | None
    author: str
    created_at: datetime
    updated_at: datetime
    state: str = "opened"
    closed_at: datetime | None = None
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    confidential: bool = False


@dataclass
class GlNote:
    id: int
    project_id: int
    iid: int
    body: str
    author: str
    created_at: datetime
    updated_at: datetime
    system: bool = False
    internal: bool = False


class GitLabState:
    def __init__(self, clock: SimClock, notes_flag: NotesFlag = "internal") -> None:
        self.clock = clock
        self.notes_flag = notes_flag
        self.lock = threading.RLock()
        self.users: dict[str, GlUser] = {}
        self.projects: dict[int, GlProject] = {}
        self.issues: dict[int, GlIssue] = {}
        self.notes: dict[int, GlNote] = {}
        self._ids = 1_000

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def now(self) -> datetime:
        """Change times are milliseconds, as GitLab shows them."""
        t = self.clock.now()
        return t.replace(microsecond=t.microsecond // 1000 * 1000)

    # -- setup ------------------------------------------------------------------------------
    def add_user(self, username: str, token: str | None = None, *, bot: bool = False,
                 name: str | None = None) -> GlUser:
        user = GlUser(self.next_id(), username, name or username.replace("-", " ").title(),
                      token or f"glpat-{secrets.token_urlsafe(15)}", bot)
        self.users[username] = user
        return user

    def add_project(self, path: str, *, visibility: str = "private") -> GlProject:
        project = GlProject(self.next_id(), path, visibility)
        project.labels = {"bug": "#d9534f", "feature": "#428bca"}
        self.projects[project.id] = project
        return project

    # -- lookups ----------------------------------------------------------------------------
    def user_by_token(self, token: str) -> GlUser | None:
        return next((u for u in self.users.values()
                     if secrets.compare_digest(u.token, token)), None)

    def level(self, project: GlProject, user: GlUser) -> int:
        return project.members.get(user.username, 0)

    def project_for(self, ref: str, user: GlUser) -> GlProject:
        project = (self.projects.get(int(ref)) if ref.isdigit() else
                   next((p for p in self.projects.values() if p.path.lower() == ref.lower()),
                        None))
        if project is None or (project.visibility == "private" and self.level(project, user) == 0):
            raise not_found("Project Not Found")
        return project

    def issue(self, project: GlProject, iid: int) -> GlIssue:
        for issue in self.issues.values():
            if issue.project_id == project.id and issue.iid == iid:
                return issue
        raise not_found("Issue Not Found")

    def note(self, issue: GlIssue, note_id: int, user: GlUser) -> GlNote:
        note = self.notes.get(note_id)
        if note is None or note.project_id != issue.project_id or note.iid != issue.iid \
                or not self.can_see(self.projects[issue.project_id], user, note):
            raise not_found("Note Not Found")
        return note

    def can_see(self, project: GlProject, user: GlUser, note: GlNote) -> bool:
        return not note.internal or self.level(project, user) >= REPORTER

    def notes_of(self, issue: GlIssue, user: GlUser) -> list[GlNote]:
        project = self.projects[issue.project_id]
        return [n for n in self.notes.values()
                if n.project_id == issue.project_id and n.iid == issue.iid
                and self.can_see(project, user, n)]

    # -- rules ------------------------------------------------------------------------------
    def create_issue(self, project: GlProject, user: GlUser, title: object,
                     description: object = None, labels: object = None,
                     assignee_ids: object = None) -> GlIssue:
        if not project.issues_enabled:
            raise GitLabError(403, "403 Forbidden")
        level = self.level(project, user)
        if level < GUEST and project.visibility == "private":
            raise GitLabError(403, "403 Forbidden")
        if not isinstance(title, str) or not title.strip():
            raise GitLabError(400, "title is missing", key="error")
        if len(title) > 255:
            raise GitLabError(400, {"title": ["is too long (maximum is 255 characters)"]})
        text = _text(description, "description")
        now = self.now()
        issue = GlIssue(self.next_id(), project.id, project.next_iid, title, text,
                        user.username, now, now)
        project.next_iid += 1
        if level >= PLANNER:  # dropped silently otherwise
            issue.labels = self._labels(project, labels)
            issue.assignees = self._assignees(project, assignee_ids)
        self.issues[issue.id] = issue
        return issue

    def update_issue(self, project: GlProject, user: GlUser, issue: GlIssue,
                     change: dict[str, object]) -> GlIssue:
        level = self.level(project, user)
        own = issue.author == user.username
        if level < PLANNER and not own:
            raise GitLabError(403, "403 Forbidden")
        known = {"title", "description", "state_event", "labels", "add_labels",
                 "remove_labels", "assignee_ids", "assignee_id", "confidential",
                 "discussion_locked", "milestone_id", "due_date", "weight", "issue_type"}
        if not any(k in change for k in known):
            raise GitLabError(400, "title, description, ... are missing, at least one "
                                   "parameter must be provided", key="error")
        now = self.now()
        changed = False
        if "title" in change:
            if not isinstance(change["title"], str) or not change["title"].strip():
                raise GitLabError(400, {"title": ["can't be blank"]})
            changed |= issue.title != change["title"]
            issue.title = change["title"]
        if "description" in change:
            issue.description = _text(change["description"], "description")
            changed = True
        if "state_event" in change:
            event = change["state_event"]
            if event not in ("close", "reopen"):
                raise GitLabError(400, "state_event does not have a valid value", key="error")
            target = "closed" if event == "close" else "opened"
            if issue.state != target:
                issue.state = target
                issue.closed_at = now if target == "closed" else None
                self._system_note(issue, user, "closed" if target == "closed" else "reopened")
                changed = True
        if level >= PLANNER:
            labels = list(issue.labels)
            if "labels" in change:
                labels = self._labels(project, change["labels"])
            for name in self._labels(project, change.get("add_labels")):
                if name not in labels:
                    labels.append(name)
            drop = {n.lower() for n in self._split(change.get("remove_labels"))}
            labels = [n for n in labels if n.lower() not in drop]
            if labels != issue.labels:
                added = [n for n in labels if n not in issue.labels]
                removed = [n for n in issue.labels if n not in labels]
                issue.labels = labels
                words = [w for w in (
                    f"added {' '.join('~' + n for n in added)} label" if added else "",
                    f"removed {' '.join('~' + n for n in removed)} label" if removed else "")
                    if w]
                self._system_note(issue, user, " and ".join(words))
                changed = True
            if "assignee_ids" in change or "assignee_id" in change:
                raw = change.get("assignee_ids", [change.get("assignee_id")])
                assignees = self._assignees(project, raw)
                if assignees != issue.assignees:
                    issue.assignees = assignees
                    self._system_note(issue, user, "assigned to " + ", ".join(
                        "@" + a for a in assignees) if assignees else "unassigned")
                    changed = True
        if changed:
            issue.updated_at = now
        return issue

    def _system_note(self, issue: GlIssue, user: GlUser, body: str) -> None:
        now = self.now()
        note = GlNote(self.next_id(), issue.project_id, issue.iid, body, user.username, now,
                      now, system=True)
        self.notes[note.id] = note

    def add_note(self, project: GlProject, user: GlUser, issue: GlIssue, body: object,
                 internal: object = None, confidential: object = None) -> GlNote:
        text = _text(body, "body", required=True) or ""
        if len(text) > MAX_NOTE:
            raise GitLabError(400, {"note": ["is too long (maximum is 1000000 characters)"]})
        flag = {"internal": internal if internal is not None else confidential,
                "confidential": confidential, None: None}[self.notes_flag]
        wanted = flag in (True, "true", "1", 1)
        now = self.now()
        note = GlNote(self.next_id(), project.id, issue.iid, text, user.username, now, now,
                      internal=wanted and self.level(project, user) >= REPORTER)
        self.notes[note.id] = note
        issue.updated_at = now
        return note

    def edit_note(self, project: GlProject, user: GlUser, issue: GlIssue, note: GlNote,
                  body: object) -> GlNote:
        if note.system:
            raise GitLabError(403, "403 Forbidden")
        if note.author != user.username:
            raise GitLabError(403, "403 Forbidden")
        note.body = _text(body, "body", required=True) or ""
        note.updated_at = self.now()
        issue.updated_at = note.updated_at
        return note

    def delete_note(self, project: GlProject, user: GlUser, issue: GlIssue,
                    note: GlNote) -> None:
        if note.author != user.username and self.level(project, user) < MAINTAINER:
            raise GitLabError(403, "403 Forbidden")
        del self.notes[note.id]
        issue.updated_at = self.now()

    def upload(self, project: GlProject, user: GlUser, filename: str,
               data: bytes) -> tuple[str, str]:
        if self.level(project, user) < GUEST:
            raise GitLabError(403, "403 Forbidden")
        if not filename or "/" in filename:
            raise GitLabError(400, "file is invalid", key="error")
        url = f"/uploads/{secrets.token_hex(16)}/{filename}"
        project.uploads[url] = (filename, data)
        return url, filename

    @staticmethod
    def _split(value: object) -> list[str]:
        if value is None:
            return []
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        raise GitLabError(400, "labels is invalid", key="error")

    def _labels(self, project: GlProject, value: object) -> list[str]:
        names: list[str] = []
        for name in self._split(value):
            known = next((k for k in project.labels if k.lower() == name.lower()), None)
            if known is None:  # GitLab creates a label named on an issue
                project.labels[name] = "#6699cc"
                known = name
            if known not in names:
                names.append(known)
        return names

    def _assignees(self, project: GlProject, value: object) -> list[str]:
        if value is None or value == "":
            return []
        if not isinstance(value, list):
            value = [value]
        out: list[str] = []
        for raw in value:
            try:
                uid = int(str(raw))
            except ValueError:
                raise GitLabError(400, "assignee_ids is invalid", key="error") from None
            if uid == 0:
                continue
            user = next((u for u in self.users.values() if u.id == uid), None)
            # Users who are no members cannot be assigned: dropped silently.
            if user is not None and project.members.get(user.username, 0) >= GUEST \
                    and user.username not in out:
                out.append(user.username)
        return out


def _text(value: object, name: str, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise GitLabError(400, f"{name} is missing", key="error")
    return value
