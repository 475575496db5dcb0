"""The Redmine simulator's data and rules (no HTTP here; simulator.py routes requests).

Behaviour copied from Redmine 5.0.4 and checked against a real instance (shared/redmine.md):
times stored with microseconds and shown truncated to seconds; ids are ``max(id) + 1`` (no
AUTOINCREMENT: deleting the newest row lets its id be reused); descriptions stored with
``\\r\\n``; a bad or workflow-forbidden status is ignored; ``private_notes`` silently
dropped without ``set_notes_private``; a private note with attribute changes split into two
journals; a PUT without changes still bumps ``updated_on``.
"""

from __future__ import annotations

import hashlib
import mimetypes
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from connectors.redmine.sim import data as D


class SimHTTPError(Exception):
    """Ends a request with this status; ``errors`` gives Redmine's 422 body."""

    def __init__(self, status: int, errors: list[str] | None = None, html: bool = False) -> None:
        super().__init__(status)
        self.status = status
        self.errors = errors
        self.html = html


class SimClock:
    """The simulator's wall clock. Every reading moves it on by ``tick`` so stored times are
    distinct and sub-second, as Redmine's are; tests move it with ``advance``.

    By default it starts an hour behind the real clock: close enough that times compare
    sensibly with the engine's own (a real server's clock is not far off), far enough that
    every time it shows has settled (whole-second change times, see the runner)."""

    def __init__(self, start: datetime | None = None,
                 tick: timedelta = timedelta(milliseconds=1)) -> None:
        self.current = start or (datetime.now(UTC).replace(microsecond=400_000)
                                 - timedelta(hours=1))
        self.tick = tick
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            self.current += self.tick
            return self.current

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.current += timedelta(seconds=seconds)


@dataclass
class SimUser:
    id: int
    login: str
    firstname: str
    lastname: str
    mail: str
    admin: bool
    api_key: str
    created_on: datetime
    password: str = ""
    status: int = 1
    # Drop private_notes even when the role allows it (a plugin, a race): provokes the leak path.
    drop_private_notes: bool = False

    @property
    def name(self) -> str:
        return f"{self.firstname} {self.lastname}".strip()


@dataclass
class SimRole:
    id: int
    name: str
    permissions: tuple[str, ...]
    builtin: int = 0
    issues_visibility: str = "default"
    assignable: bool = True


@dataclass
class SimProject:
    id: int
    identifier: str
    name: str
    is_public: bool
    created_on: datetime
    updated_on: datetime
    tracker_ids: tuple[int, ...] = (1, 2, 3)


@dataclass
class SimMember:
    id: int
    project_id: int
    user_id: int
    role_ids: list[int]


@dataclass
class SimJournal:
    id: int
    issue_id: int
    user_id: int
    notes: str | None
    private_notes: bool
    created_on: datetime
    details: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SimAttachment:
    id: int
    filename: str
    data: bytes
    token: str
    author_id: int
    created_on: datetime
    content_type: str = "application/octet-stream"
    description: str = ""
    container_id: int | None = None


@dataclass
class SimIssue:
    id: int
    project_id: int
    tracker_id: int
    status_id: int
    priority_id: int
    author_id: int
    subject: str
    description: str | None
    start_date: date
    created_on: datetime
    updated_on: datetime
    assigned_to_id: int | None = None
    closed_on: datetime | None = None
    is_private: bool = False
    custom_fields: dict[int, str] = field(default_factory=dict)  # field id -> value


def crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


class SimState:
    def __init__(self, clock: SimClock, admin_key: str) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        created = clock.now()
        self.users: dict[int, SimUser] = {1: SimUser(1, "admin", "Redmine", "Admin",
                                                     "admin@example.net", True, admin_key,
                                                     created, password="admin")}
        self.roles = {r[0]: SimRole(r[0], r[1], r[2], builtin=r[3], issues_visibility=r[4])
                      for r in D.ROLES}
        self.projects: dict[int, SimProject] = {}
        self.members: dict[int, SimMember] = {}
        self.issues: dict[int, SimIssue] = {}
        self.journals: dict[int, SimJournal] = {}
        self.attachments: dict[int, SimAttachment] = {}
        self.statuses = {s[0]: s for s in D.STATUSES}

    # -- ids: max + 1, as SQLite without AUTOINCREMENT ----------------------------------
    @staticmethod
    def next_id(table: Iterable[int], floor: int = 0) -> int:
        return max([floor, *table]) + 1

    # -- lookups --------------------------------------------------------------------------
    def project_by_ref(self, ref: str | int) -> SimProject:
        for project in self.projects.values():
            if str(project.id) == str(ref) or project.identifier == str(ref):
                return project
        raise SimHTTPError(404)

    def user_by_login(self, login: str) -> SimUser | None:
        return next((u for u in self.users.values() if u.login == login), None)

    def user_by_key(self, key: str) -> SimUser | None:
        return next((u for u in self.users.values() if key and u.api_key == key), None)

    def membership(self, user: SimUser, project: SimProject) -> SimMember | None:
        return next((m for m in self.members.values()
                     if m.user_id == user.id and m.project_id == project.id), None)

    def roles_for(self, user: SimUser, project: SimProject) -> list[SimRole]:
        member = self.membership(user, project)
        if member is not None:
            return [self.roles[r] for r in member.role_ids]
        return [self.roles[D.NON_MEMBER_ROLE]] if project.is_public else []

    def allowed(self, user: SimUser, permission: str, project: SimProject) -> bool:
        return user.admin or any(permission in r.permissions for r in self.roles_for(user, project))

    def project_visible(self, user: SimUser, project: SimProject) -> bool:
        return user.admin or project.is_public or self.membership(user, project) is not None

    def issue_visible(self, user: SimUser, issue: SimIssue) -> bool:
        project = self.projects[issue.project_id]
        if not self.allowed(user, "view_issues", project):
            return False
        if not issue.is_private or user.admin:
            return True
        return (user.id in (issue.author_id, issue.assigned_to_id)
                or any(r.issues_visibility == "all" for r in self.roles_for(user, project)))

    def visible_issue(self, user: SimUser, issue_id: int) -> SimIssue:
        issue = self.issues.get(issue_id)
        if issue is None:
            raise SimHTTPError(404)
        if not self.issue_visible(user, issue):
            raise SimHTTPError(403)
        return issue

    def journal_visible(self, user: SimUser, journal: SimJournal) -> bool:
        issue = self.issues[journal.issue_id]
        return (not journal.private_notes or journal.user_id == user.id
                or self.allowed(user, "view_private_notes", self.projects[issue.project_id]))

    def allowed_statuses(self, user: SimUser, issue: SimIssue) -> list[int]:
        project = self.projects[issue.project_id]
        roles = list(self.roles.values()) if user.admin else self.roles_for(user, project)
        allowed = {issue.status_id}
        for role in roles:
            allowed |= D.WORKFLOW.get(role.id, {}).get(issue.status_id, frozenset())
        return sorted(allowed)

    def assignable(self, issue_author: int, project: SimProject, previous: int | None) -> set[int]:
        ids = {m.user_id for m in self.members.values() if m.project_id == project.id
               and any(self.roles[r].assignable for r in m.role_ids)}
        ids.add(issue_author)
        if previous is not None:
            ids.add(previous)
        return ids

    def is_closed(self, status_id: int) -> bool:
        return self.statuses[status_id][2]

    # -- uploads ----------------------------------------------------------------------------
    def upload(self, user: SimUser, filename: str, data: bytes) -> SimAttachment:
        if len(data) > D.MAX_ATTACHMENT_BYTES:
            raise SimHTTPError(422, ["This file cannot be uploaded because it exceeds the "
                                     "maximum allowed file size (5 MB)"])
        att_id = self.next_id(self.attachments)
        att = SimAttachment(att_id, filename, data,
                            f"{att_id}.{hashlib.sha256(data).hexdigest()}", user.id,
                            self.clock.now())
        self.attachments[att_id] = att
        return att

    def take_uploads(self, uploads: Any) -> list[tuple[SimAttachment, dict[str, Any]]]:
        if not uploads:
            return []
        found: list[tuple[SimAttachment, dict[str, Any]]] = []
        bad = 0
        for spec in uploads if isinstance(uploads, list) else []:
            token = str(spec.get("token", "")) if isinstance(spec, dict) else ""
            att = next((a for a in self.attachments.values()
                        if a.token == token and a.container_id is None), None)
            if att is None:
                bad += 1
            else:
                found.append((att, spec))
        if bad:
            raise SimHTTPError(422, [f"{bad} file(s) could not be saved."])
        return found

    @staticmethod
    def attach(issue: SimIssue, uploads: list[tuple[SimAttachment, dict[str, Any]]]) -> None:
        for att, spec in uploads:
            att.container_id = issue.id
            att.filename = str(spec.get("filename") or att.filename or "upload")
            att.content_type = str(spec.get("content_type")
                                   or mimetypes.guess_type(att.filename)[0]
                                   or "application/octet-stream")
            att.description = str(spec.get("description") or "")
