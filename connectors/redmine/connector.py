"""The Redmine connector: issues <-> tickets, journals with notes <-> comments.

Choices worth knowing (the Redmine facts behind them are in shared/redmine.md):

* Comments are journals with a non-empty note; pure field-change journals are not.
  Journals only come from ``GET /issues/:id.json?include=journals`` (no endpoint in 5.0).
* Status: ``is_closed`` statuses are CLOSED, all others OPEN (mapping.py). Closing uses
  ``closed_status_id`` or the first closed status; reopening ``reopened_status_id`` or the
  tracker's default status; an update naming a status id (a pair's status table) sets
  exactly that one. Redmine answers 204 and ignores a status the workflow forbids,
  so every status change is read back and a silent refusal becomes a ``RejectedError``.
  A state already satisfied sends nothing: even a no-op PUT bumps ``updated_on``.
* Creating an issue cannot set a closed status (5.0 ignores it for new issues), so a
  ticket wanted CLOSED is created, then closed.
* ``TicketUpdate.assignee_id == ""`` unassigns; tags are ignored (Redmine has no labels).
* Writes that are not idempotent (issue create, note create) are never retried blindly:
  after a timeout or 5xx the marker is searched first (notes.py).
* PUT answers are not decoded (Redmine sends 204 with no body): an odd body from a proxy
  must not turn a write that landed into an error; every write is read back instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from pydantic import SecretStr

from connectors.base import Capabilities, CommentBatch
from connectors.http import (
    ApiClient,
    Clock,
    RetryPolicy,
    SystemClock,
    connection_budgets,
    write_once,
)
from connectors.http import build_http_client as _build_http_client
from connectors.paging import OffsetPaginator, walk_pages
from connectors.redmine.config import RedmineConfig
from connectors.redmine.feed import ChangeFeed, FeedSettings
from connectors.redmine.guard import PrivateNotesGuard
from connectors.redmine.mapping import (
    attachment_to_unified,
    check_marker,
    embed_marker,
    issue_comments,
    issue_has_marker,
    issue_to_ticket,
    ticket_status,
    user_to_unified,
)
from connectors.redmine.notes import Notes, upload_file
from connectors.redmine.wire import (
    CONNECTOR,
    IdName,
    Issue,
    IssueStatus,
    ListPage,
    Membership,
    Project,
    Tracker,
    UserWire,
    parse_list,
    parse_one,
)
from syncer.errors import AuthError, NotFoundError, RejectedError
from syncer.models import (
    Attachment,
    ChangePage,
    Comment,
    Cursor,
    NewComment,
    NewTicket,
    Ticket,
    TicketState,
    TicketStatus,
    TicketUpdate,
    User,
)
from syncer.secrets import register_secret

log = structlog.get_logger("reamaze_sync.redmine")

_CLOSING = (TicketState.CLOSED, TicketState.SPAM)
_DOWNLOAD_RE = re.compile(r"/attachments/download/(\d+)/([^/?#]+)$")


class RedmineConnector:
    name = "redmine"

    def __init__(self, api: ApiClient, cfg: RedmineConfig, *,
                 now: Callable[[], datetime] | None = None, skew_seconds: float = 1.0,
                 permission_ttl: float = 60.0) -> None:
        self.api = api
        self.cfg = cfg
        self.base_url = str(cfg.base_url).rstrip("/")
        self.now = now or (lambda: datetime.now(UTC))
        self.capabilities = Capabilities(
            private_comments=True, edit_comments=True, labels=False, assignee=True,
            attachments_upload=True, markdown_markers=cfg.text_formatting == "common_mark",
            delete_comments=True, markup=cfg.text_formatting)
        self._project: Project | None = None
        self._me: str | None = None
        self._statuses: list[IssueStatus] | None = None
        self._trackers: list[Tracker] | None = None
        self.guard = PrivateNotesGuard(api, self.project, api.clock, ttl=permission_ttl)
        self.notes = Notes(api, self.guard, api.clock, self._read_issue,
                           self._issue_path, self.whoami, self._ticket)
        self.feed = ChangeFeed(self._fetch_issues, self._ticket,
                               FeedSettings(project=cfg.project,
                                            overlap_seconds=cfg.overlap_seconds,
                                            skew_seconds=skew_seconds),
                               self.now)

    @classmethod
    def from_config(cls, cfg: RedmineConfig, api_key: SecretStr, *,
                    transport: httpx.BaseTransport | None = None, clock: Clock | None = None,
                    now: Callable[[], datetime] | None = None) -> RedmineConnector:
        key = api_key.get_secret_value()
        register_secret(key)
        base = str(cfg.base_url).rstrip("/")
        client = _build_http_client(
            base, headers={"X-Redmine-API-Key": key, "Accept": "application/json"},
            transport=transport,
            timeout=httpx.Timeout(cfg.http.timeout_seconds,
                                  connect=min(5.0, cfg.http.timeout_seconds)))
        clock = clock or SystemClock()
        overall, writes = connection_budgets(cfg.http, clock)
        api = ApiClient(
            CONNECTOR, client, clock=clock, rate_limiter=overall, write_limiter=writes,
            retry=RetryPolicy(attempts=cfg.http.max_attempts,
                              max_retry_after=cfg.http.max_retry_after_seconds),
            describe_auth_failure=lambda: (f"Redmine at {base} rejected the API key or denied "
                                           "access (check the API key and the user's roles)"))
        return cls(api, cfg, now=now)

    def close(self) -> None:
        self.api.client.close()

    # -- lookups, cached per instance ---------------------------------------------------
    def project(self) -> Project:
        if self._project is None:
            self._project = parse_one(
                Project, self.api.get_json(f"/projects/{self._segment(self.cfg.project)}.json"),
                "project", object_id=self.cfg.project)
        return self._project

    def statuses(self) -> list[IssueStatus]:
        if self._statuses is None:
            self._statuses, _ = parse_list(IssueStatus, self.api.get_json("/issue_statuses.json"),
                                           "issue_statuses")
        return self._statuses

    def list_statuses(self) -> list[TicketStatus]:
        return [ticket_status(s) for s in self.statuses()]

    def _trackers_list(self) -> list[Tracker]:
        if self._trackers is None:
            self._trackers, _ = parse_list(Tracker, self.api.get_json("/trackers.json"),
                                           "trackers")
        return self._trackers

    def _closed_status_id(self) -> int:
        if self.cfg.closed_status_id is not None:
            return self.cfg.closed_status_id
        closed = [s for s in self.statuses() if s.is_closed]
        if not closed:
            raise RejectedError("Redmine has no closed issue status", connector=CONNECTOR)
        return closed[0].id

    def _reopen_status_id(self, issue: Issue) -> int:
        if self.cfg.reopened_status_id is not None:
            return self.cfg.reopened_status_id
        tracker_id = issue.tracker.id if issue.tracker else self.cfg.tracker_id
        for tracker in self._trackers_list():
            if tracker.id == tracker_id and tracker.default_status is not None:
                return tracker.default_status.id
        opened = [s for s in self.statuses() if not s.is_closed]
        if not opened:
            raise RejectedError("Redmine has no open issue status", connector=CONNECTOR)
        return opened[0].id

    # -- tickets --------------------------------------------------------------------------
    @staticmethod
    def _segment(value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
            raise NotFoundError("not a Redmine id or identifier", connector=CONNECTOR,
                                object_id=value[:40])
        return value

    def _issue_path(self, issue_id: str) -> str:
        if not issue_id.isascii() or not issue_id.isdigit():
            raise NotFoundError("not a Redmine issue id", connector=CONNECTOR,
                                object_id=issue_id[:40])
        return f"/issues/{int(issue_id)}.json"

    def _read_issue(self, issue_id: str, include: str = "journals,attachments") -> Issue:
        return parse_one(Issue, self.api.get_json(self._issue_path(issue_id),
                                                  params={"include": include} if include else None,
                                                  object_id=issue_id),
                         "issue", object_id=issue_id)

    def _ticket(self, issue: Issue) -> Ticket:
        return issue_to_ticket(issue, base_url=self.base_url)

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.base_url}/issues/{ticket_id}"

    def get_ticket(self, ticket_id: str) -> Ticket:
        return self._ticket(self._read_issue(ticket_id, include=""))

    def read_ticket(self, ticket_id: str) -> tuple[Ticket, list[Comment]]:
        """One request: the journals come with the issue."""
        issue = self._read_issue(ticket_id)
        return self._ticket(issue), issue_comments(issue)

    def create_ticket(self, new: NewTicket) -> Ticket:
        check_marker(new.marker)
        issue: dict[str, Any] = {"project_id": self.cfg.project, "subject": new.subject,
                                 "description": embed_marker(new.description, new.marker)}
        if self.cfg.tracker_id is not None:
            issue["tracker_id"] = self.cfg.tracker_id
        if self.cfg.priority_id is not None:
            issue["priority_id"] = self.cfg.priority_id
        if new.assignee_id:
            issue["assigned_to_id"] = self._user_id(new.assignee_id)
        def send() -> Ticket:
            return self._ticket(parse_one(Issue, self.api.send_json(
                "POST", "/issues.json", {"issue": issue}, retry_transient=False), "issue"))

        ticket = write_once(self.api, send, lambda: self.find_ticket_by_marker(new.marker))
        log.debug("redmine_issue_created", connector=CONNECTOR, issue_id=ticket.id,
                 marker=new.marker)
        if new.state in _CLOSING:
            ticket = self.update_ticket(ticket.id, TicketUpdate(state=TicketState.CLOSED))
        return ticket

    @staticmethod
    def _status_id(code: str) -> int:
        if not code.isascii() or not code.isdigit():
            raise RejectedError("Redmine status ids are numeric", connector=CONNECTOR,
                                object_id=code[:40])
        return int(code)

    @staticmethod
    def _user_id(value: str) -> int | str:
        if value == "":
            return ""
        if not value.isascii() or not value.isdigit():
            raise RejectedError("Redmine user ids are numeric", connector=CONNECTOR,
                                object_id=value[:40])
        return int(value)

    def update_ticket(self, ticket_id: str, update: TicketUpdate) -> Ticket:
        issue = self._read_issue(ticket_id, include="")
        change: dict[str, Any] = {}
        if update.status_code is not None:
            if str(issue.status.id) != update.status_code:
                change["status_id"] = self._status_id(update.status_code)
        elif update.state is not None and issue.status.is_closed != (update.state in _CLOSING):
            change["status_id"] = (self._closed_status_id() if update.state in _CLOSING
                                   else self._reopen_status_id(issue))
        if update.assignee_id is not None:
            current = str(issue.assigned_to.id) if issue.assigned_to else ""
            if update.assignee_id != current:
                change["assigned_to_id"] = self._user_id(update.assignee_id)
        if not change:
            return self._ticket(issue)
        self.api.request("PUT", self._issue_path(ticket_id), json_body={"issue": change},
                         object_id=ticket_id)
        after = self._read_issue(ticket_id, include="")
        if "status_id" in change and after.status.id != change["status_id"]:
            log.warning("redmine_status_ignored", connector=CONNECTOR, issue_id=ticket_id,
                        wanted=change["status_id"], actual=after.status.id)
            raise RejectedError(
                f"Redmine ignored the status change to {change['status_id']} (unknown status "
                "or not allowed by the workflow for this user)", connector=CONNECTOR,
                object_id=ticket_id)
        if "assigned_to_id" in change:
            now = str(after.assigned_to.id) if after.assigned_to else ""
            if now != str(change["assigned_to_id"]):
                raise RejectedError("Redmine ignored the assignee change", connector=CONNECTOR,
                                    object_id=ticket_id)
        return self._ticket(after)

    # -- change feed ----------------------------------------------------------------------
    def _fetch_issues(self, params: Mapping[str, Any]) -> tuple[list[Issue], ListPage]:
        return parse_list(Issue, self.api.get_json("/issues.json", params=params), "issues")

    def iter_changes(self, since: Cursor | None) -> Iterator[ChangePage]:
        return self.feed.walk(since)

    # -- comments -------------------------------------------------------------------------
    def list_comments(self, ticket_id: str) -> list[Comment]:
        return self.notes.list(ticket_id)

    def create_comment(self, ticket_id: str, new: NewComment) -> Comment:
        return self.notes.create(ticket_id, new)

    def create_comments(self, ticket_id: str, news: Sequence[NewComment]) -> CommentBatch:
        return self.notes.create_many(ticket_id, news)

    def update_comment(self, ticket_id: str, comment_id: str, body: str) -> Comment:
        return self.notes.update(ticket_id, comment_id, body)

    def delete_comment(self, ticket_id: str, comment_id: str) -> None:
        self.notes.delete(ticket_id, comment_id)

    def find_comment_by_marker(self, ticket_id: str, marker: str) -> Comment | None:
        return self.notes.find(ticket_id, marker)

    def find_ticket_by_marker(self, marker: str) -> Ticket | None:
        """The oldest issue of the project created by the API user whose description ends
        with the marker (``~`` = contains). Anyone can type a marker into an issue; only
        the API user's own issue can be the one the engine created."""
        check_marker(marker)
        params = {"project_id": self.cfg.project, "status_id": "*", "description": "~" + marker,
                  "sort": "id", "limit": 100}
        issues, _ = self._fetch_issues(params)
        mine = [i for i in issues if issue_has_marker(i, marker)]
        if not mine:
            return None
        me = self.whoami()
        for issue in sorted(mine, key=lambda i: i.id):
            if issue.author is not None and str(issue.author.id) == me:
                return self._ticket(issue)
            log.warning("marker_not_trusted", connector=CONNECTOR, issue_id=issue.id,
                        reason="an issue carries our marker but was not created by the API user")
        return None

    # -- attachments ------------------------------------------------------------------------
    def upload_attachment(self, ticket_id: str, filename: str, content_type: str,
                          data: bytes) -> Attachment:
        """Attach a file to the issue. Redmine attachments have no private flag: whoever
        can see the issue can see the file, so never upload what came from an internal note."""
        path = self._issue_path(ticket_id)
        token = upload_file(self.api, ticket_id, filename, data)
        before = {a.id for a in self._read_issue(ticket_id, include="attachments").attachments
                  or ()}
        self.api.request("PUT", path, json_body={"issue": {"uploads": [
            {"token": token, "filename": filename, "content_type": content_type}]}},
            object_id=ticket_id)
        after = self._read_issue(ticket_id, include="attachments").attachments or ()
        added = [a for a in after if a.id not in before and a.filename == filename]
        if not added:
            raise RejectedError("upload was accepted but is not attached", connector=CONNECTOR,
                                object_id=ticket_id)
        return attachment_to_unified(max(added, key=lambda a: a.id))

    def list_attachments(self, ticket_id: str) -> list[Attachment]:
        issue = self._read_issue(ticket_id, include="attachments")
        return [attachment_to_unified(a) for a in issue.attachments or ()]

    def download_attachment(self, attachment: Attachment) -> bytes:
        """Fetch an attachment through our own base URL: the key never goes to another host."""
        match = _DOWNLOAD_RE.search(httpx.URL(attachment.url or "").path)
        if match is None:
            raise RejectedError("not a Redmine attachment URL", connector=CONNECTOR,
                                object_id=attachment.name)
        _, body, _ = self.api.request(
            "GET", f"/attachments/download/{match.group(1)}/{match.group(2)}",
            object_id=attachment.name)
        return body

    # -- users, health ----------------------------------------------------------------------
    def current_user(self) -> UserWire:
        return parse_one(UserWire, self.api.get_json("/users/current.json"), "user")

    def whoami(self) -> str:
        if self._me is None:
            self._me = self.guard.user_id or str(self.current_user().id)
        return self._me

    def list_users(self) -> list[User]:
        """All users when the API user is an admin, else the members of the project."""
        if self.current_user().admin:
            return [user_to_unified(u) for page in self._pages("/users.json", "users")
                    for u in parse_list(UserWire, page, "users")[0]]
        members: dict[str, User] = {}
        path = f"/projects/{self._segment(self.cfg.project)}/memberships.json"
        for page in self._pages(path, "memberships"):
            for m in parse_list(Membership, page, "memberships")[0]:
                if m.user is not None:
                    members[str(m.user.id)] = User(id=str(m.user.id), name=m.user.name)
        return list(members.values())

    def _pages(self, path: str, key: str) -> Iterator[Mapping[str, Any]]:
        def fetch(params: dict[str, Any]) -> Any:
            return self.api.get_json(path, params=params)

        for page, _items in walk_pages(fetch, OffsetPaginator(limit=100), key,
                                       connector=CONNECTOR, listing=f"GET {path}"):
            yield page

    def setting_problems(self) -> list[tuple[str, str]]:
        """The configured project and ids this server does not have, as (key, message).

        For `check`, which lists them all at once: otherwise each surfaces on its own, the
        project at the first pass, a tracker or priority as a 422 on the first issue create,
        a status as a refused status change when an issue first closes, maybe weeks later.
        Only what is configured is looked up.
        """
        problems: list[tuple[str, str]] = []
        project = self._project_problem()
        if project is not None:
            problems.append(("project", project))
        tracker_id, priority_id = self.cfg.tracker_id, self.cfg.priority_id
        if tracker_id is not None:
            trackers = [(t.id, t.name) for t in self._trackers_list()]
            if tracker_id not in dict(trackers):
                problems.append(("tracker_id", f"{tracker_id} does not exist "
                                 f"(known: {_listing(trackers)})"))
        if priority_id is not None:
            rows, _ = parse_list(IdName, self.api.get_json(
                "/enumerations/issue_priorities.json"), "issue_priorities")
            priorities = [(p.id, p.name) for p in rows]
            if priority_id not in dict(priorities):
                problems.append(("priority_id", f"{priority_id} does not exist "
                                 f"(known: {_listing(priorities)})"))
        problems += self._status_problems()
        return problems

    def _project_problem(self) -> str | None:
        try:
            self.project()
            return None
        except NotFoundError:
            pass
        except AuthError as exc:
            if exc.status != 403:  # 401: the key itself; check() says so
                raise
        # A private project answers 403 to non-members and an unknown one 404: either way
        # the operator needs the user's name and what it can see.
        me = self.current_user()
        visible, _ = parse_list(Project, self.api.get_json(
            "/projects.json", params={"limit": 100}), "projects")
        names = ", ".join(p.identifier for p in visible[:_SHOWN])
        more = f", … ({len(visible) - _SHOWN} more)" if len(visible) > _SHOWN else ""
        return (f"{self.cfg.project!r} does not exist or is not visible to {me.login} "
                f"(visible: {names or 'none'}{more})")

    def _status_problems(self) -> list[tuple[str, str]]:
        closing, reopening = self.cfg.closed_status_id, self.cfg.reopened_status_id
        if closing is None and reopening is None:
            return []
        statuses = {s.id: s for s in self.statuses()}
        closed = [(s.id, s.name) for s in statuses.values() if s.is_closed]
        opened = [(s.id, s.name) for s in statuses.values() if not s.is_closed]
        every = _listing([(s.id, s.name) for s in statuses.values()])
        problems: list[tuple[str, str]] = []
        for key, wanted, must_close in (("closed_status_id", closing, True),
                                        ("reopened_status_id", reopening, False)):
            if wanted is None:
                continue
            status = statuses.get(wanted)
            if status is None:
                problems.append((key, f"{wanted} does not exist (known: {every})"))
            elif must_close and not status.is_closed:
                problems.append((key, f"{status.id} {status.name} is not a closed status "
                                 f"(closed: {_listing(closed)})"))
            elif not must_close and status.is_closed:
                problems.append((key, f"{status.id} {status.name} is a closed status; reopening "
                                 f"needs an open one (open: {_listing(opened)})"))
        return problems

    def check(self) -> str:
        me = self.current_user()
        try:
            self.project()
        except NotFoundError:
            raise NotFoundError(f"Redmine project {self.cfg.project!r} does not exist or is not "
                                f"visible to {me.login}", connector=CONNECTOR,
                                object_id=self.cfg.project) from None
        verdict = self.guard.verdict()
        if not verdict.allowed:
            # Internal notes would be refused one by one (never sent public): a setup
            # problem the operator must hear about before the first run, not in a week.
            raise RejectedError(
                f"{me.login} cannot make notes private in project {self.cfg.project!r} "
                f"({verdict.reason}); Re:amaze internal notes would not be copied. Give the "
                "user a role with the 'Set notes as private' permission in that project",
                connector=CONNECTOR, object_id=self.cfg.project)
        return f"redmine {self.base_url} as {me.login} (may write private notes)"


_SHOWN = 12  # known values listed in a problem; a server may have hundreds


def _listing(items: Sequence[tuple[int, str]]) -> str:
    """``1 Bug, 2 Feature``: what the server knows, for a message about a wrong id."""
    shown = ", ".join(f"{i} {name}" for i, name in items[:_SHOWN]) or "none"
    return shown + (f", … ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")
