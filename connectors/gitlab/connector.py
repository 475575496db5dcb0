"""The GitLab Issues connector: issues <-> tickets, notes <-> comments.

Choices worth knowing (the GitLab facts behind them are in shared/trackers.md §2):

* **Private comments.** Internal notes are GitLab's; Re:amaze internal notes become
  internal notes and are read back (notes.py). System notes are not comments.
* Writes GitLab does not deduplicate (issue and note creates) are sent once; after a
  timeout or 5xx their marker is looked for first (``write_once``): an issue among the
  API user's newest issues, then through ``search`` (GitLab's own database search).
* Labels and assignees from a user who may not set them are dropped silently; every
  write is read back (the PUT answer) and a dropped change becomes a ``RejectedError``
  naming the missing role, never a silent no-op.
* Rate limits: 429 with ``Retry-After`` (the shared client waits it); a 429 without it
  waits for ``RateLimit-Reset`` when given, else backs off.
* Files of a public copy (fetched by the applier into ``NewComment.files``) are uploaded
  to the project (``POST …/uploads``) and linked from the note by their project-relative
  ``/uploads/…`` path, which GitLab shows as the note's attachments; the engine's copy
  lists every file with its source link as well, so a file GitLab refuses, or one of an
  internal note (project uploads have no private flag), stays a link.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from pydantic import SecretStr

from connectors.base import Capabilities, CommentBatch, create_one_by_one
from connectors.gitlab.config import GitLabConfig
from connectors.gitlab.feed import ChangeFeed, FeedSettings, Request
from connectors.gitlab.mapping import (
    STATUSES,
    issue_to_ticket,
    note_to_comment,
    user_to_unified,
)
from connectors.gitlab.notes import NoteWriter, PrivacyCheck
from connectors.gitlab.wire import (
    CONNECTOR,
    LEVEL_NAMES,
    PLANNER,
    REPORTER,
    GlIssueWire,
    GlNoteWire,
    GlProjectWire,
    GlUploadWire,
    GlUserWire,
    parse_items,
    parse_one,
)
from connectors.hidden_marker import check_marker, embed_marker, split_marker
from connectors.http import (
    ApiClient,
    Clock,
    RetryPolicy,
    SystemClock,
    build_http_client,
    connection_budgets,
    write_once,
)
from syncer.errors import NotFoundError, RateLimitedError, RejectedError, SyncError
from syncer.markup import escape
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
    Visibility,
)
from syncer.secrets import register_secret

log = structlog.get_logger("reamaze_sync.gitlab")

_CLOSING = (TicketState.CLOSED, TicketState.SPAM)


def classify(status: int, body: bytes, headers: httpx.Headers,
             now: Callable[[], float] = time.time,
             maximum: float = 300.0) -> SyncError | None:
    """A 429 without ``Retry-After`` but with ``RateLimit-Reset`` (epoch seconds): wait
    until then. Everything else is the shared mapping's (``Retry-After`` included)."""
    if status != 429 or headers.get("retry-after"):
        return None
    try:
        wait = float(headers.get("ratelimit-reset", "")) - now()
    except ValueError:
        return None
    return RateLimitedError("rate limited until RateLimit-Reset", connector=CONNECTOR,
                            status=status, body=body, retry_after=min(max(wait, 1.0), maximum))


class GitLabConnector:
    name = "gitlab"

    def __init__(self, api: ApiClient, cfg: GitLabConfig, *,
                 now: Callable[[], datetime] | None = None, skew_seconds: float = 1.0) -> None:
        self.api = api
        self.cfg = cfg
        self.project_path = f"/projects/{cfg.project_ref()}"
        self.web_base = cfg.web_base()
        self.now = now or (lambda: datetime.now(UTC))
        self.capabilities = Capabilities(
            private_comments=True, edit_comments=True, labels=True, assignee=True,
            attachments_upload=True, markdown_markers=True, delete_comments=True,
            markup="glfm")
        self._me: GlUserWire | None = None
        self._user_ids: dict[str, int] = {}
        self.privacy = PrivacyCheck(self.access_level, api.clock)
        self.notes = NoteWriter(api, self.privacy, self._notes_path, self._comment,
                                self.find_comment_by_marker)
        self.feed = ChangeFeed(self._fetch_changes, self._ticket,
                               FeedSettings(overlap_seconds=cfg.overlap_seconds,
                                            skew_seconds=skew_seconds), self.now)

    @classmethod
    def from_config(cls, cfg: GitLabConfig, token: SecretStr, *,
                    transport: httpx.BaseTransport | None = None, clock: Clock | None = None,
                    now: Callable[[], datetime] | None = None) -> GitLabConnector:
        secret = token.get_secret_value()
        register_secret(secret)
        base = str(cfg.base_url).rstrip("/")
        client = build_http_client(
            base, headers={"PRIVATE-TOKEN": secret, "Accept": "application/json"},
            transport=transport,
            timeout=httpx.Timeout(cfg.http.timeout_seconds,
                                  connect=min(5.0, cfg.http.timeout_seconds)))
        clock = clock or SystemClock()
        overall, writes = connection_budgets(cfg.http, clock)
        maximum = cfg.http.max_retry_after_seconds
        api = ApiClient(
            CONNECTOR, client, clock=clock, rate_limiter=overall, write_limiter=writes,
            retry=RetryPolicy(attempts=cfg.http.max_attempts, max_retry_after=maximum),
            describe_auth_failure=lambda: (f"GitLab at {base} rejected the token or denied "
                                           f"access to project {cfg.project} (check the token, "
                                           "its scope 'api' and the user's role)"),
            classify_error=lambda status, body, headers: classify(status, body, headers,
                                                                  maximum=maximum))
        return cls(api, cfg, now=now)

    def close(self) -> None:
        self.api.client.close()

    # -- helpers ----------------------------------------------------------------------------
    def _issue_path(self, ticket_id: str) -> str:
        if not ticket_id.isascii() or not ticket_id.isdigit():
            raise NotFoundError("not a GitLab issue iid", connector=CONNECTOR,
                                object_id=ticket_id[:40])
        return f"{self.project_path}/issues/{int(ticket_id)}"

    def _notes_path(self, ticket_id: str) -> str:
        return self._issue_path(ticket_id) + "/notes"

    def _note_path(self, ticket_id: str, comment_id: str) -> str:
        if not comment_id.isascii() or not comment_id.isdigit():
            raise NotFoundError("not a GitLab note id", connector=CONNECTOR,
                                object_id=comment_id[:40])
        return f"{self._notes_path(ticket_id)}/{int(comment_id)}"

    def _get_page(self, path: str, request: Request) -> tuple[Any, Request | None]:
        """One page, and how to ask for the next: ``link: rel="next"`` (on our own host
        only), else ``x-next-page``; neither: the last page. ``x-total`` is not needed."""
        if isinstance(request, str):
            _, raw, headers = self.api.request("GET", self._same_host(request))
        else:
            _, raw, headers = self.api.request("GET", path, params=request)
        link = _next_link(headers.get("link"))
        following: Request | None = link
        if following is None and not isinstance(request, str):
            page = (headers.get("x-next-page") or "").strip()
            following = {**request, "page": int(page)} if page.isdigit() else None
        return self.api.decode(raw), following

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[Any]:
        request: Request = {**params, "per_page": 100}
        for _ in range(10_000):
            payload, following = self._get_page(path, request)
            yield payload
            if following is None or not payload:
                return
            request = following
        raise RejectedError(f"GET {path}: more than 10,000 pages", connector=CONNECTOR)

    def _same_host(self, url: str) -> str:
        """A next-page URL as a path on our base URL; the token never goes elsewhere."""
        target, base = httpx.URL(url), httpx.URL(str(self.cfg.base_url))
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise RejectedError(f"GitLab pointed a next page at another host ({target.host})",
                                connector=CONNECTOR)
        path = target.raw_path.decode()
        prefix = base.raw_path.decode().rstrip("/")
        return path.removeprefix(prefix) if prefix and path.startswith(prefix + "/") else path

    def _ticket(self, issue: GlIssueWire) -> Ticket:
        return issue_to_ticket(issue, web_url=self.ticket_url(str(issue.iid)))

    def _comment(self, note: GlNoteWire, ticket_id: str) -> Comment:
        return note_to_comment(note, ticket_id, self.project_web_url())

    def project_web_url(self) -> str:
        return f"{self.web_base}/{self.cfg.project}"

    def _read_issue(self, ticket_id: str) -> GlIssueWire:
        return parse_one(GlIssueWire, self.api.get_json(self._issue_path(ticket_id),
                                                        object_id=ticket_id),
                         "issue", object_id=ticket_id)

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.project_web_url()}/-/issues/{ticket_id}"

    def _user_id(self, username: str) -> int:
        if username not in self._user_ids:
            found = parse_items(GlUserWire, self.api.get_json(
                "/users", params={"username": username}), "users")
            match = next((u for u in found if u.username.lower() == username.lower()), None)
            if match is None:
                raise RejectedError(f"GitLab has no user {username!r}", connector=CONNECTOR,
                                    object_id=username)
            self._user_ids[username] = match.id
        return self._user_ids[username]

    # -- tickets ----------------------------------------------------------------------------
    def get_ticket(self, ticket_id: str) -> Ticket:
        return self._ticket(self._read_issue(ticket_id))

    def read_ticket(self, ticket_id: str) -> tuple[Ticket, list[Comment]]:
        return self.get_ticket(ticket_id), self.list_comments(ticket_id)

    def create_ticket(self, new: NewTicket) -> Ticket:
        check_marker(new.marker)
        body: dict[str, Any] = {"title": new.subject,
                                "description": embed_marker(new.description, new.marker)}
        if new.tags:
            body["labels"] = ",".join(new.tags)
        if new.assignee_id:
            body["assignee_ids"] = [self._user_id(new.assignee_id)]

        def send() -> Ticket:
            return self._ticket(parse_one(GlIssueWire, self.api.send_json(
                "POST", f"{self.project_path}/issues", body, retry_transient=False), "issue"))

        ticket = write_once(self.api, send, lambda: self.find_ticket_by_marker(new.marker))
        log.debug("gitlab_issue_created", connector=CONNECTOR, issue_id=ticket.id,
                  marker=new.marker)
        dropped = [k for k, ok in (("labels", {t.lower() for t in new.tags}
                                    <= {t.lower() for t in ticket.tags}),
                                   ("assignee", not new.assignee_id or (
                                       ticket.assignee is not None
                                       and ticket.assignee.id == new.assignee_id)))
                   if not ok]
        if dropped:  # the issue exists: a later update retries, and says why it fails
            log.warning("gitlab_fields_dropped", connector=CONNECTOR, issue_id=ticket.id,
                        fields=dropped, reason="GitLab drops labels and assignees from users "
                                               "below Planner/Reporter, or unknown assignees")
        if new.state in _CLOSING:
            ticket = self.update_ticket(ticket.id, TicketUpdate(state=TicketState.CLOSED))
        return ticket

    def list_statuses(self) -> list[TicketStatus]:
        return list(STATUSES.values())

    def update_ticket(self, ticket_id: str, update: TicketUpdate) -> Ticket:
        issue = self._read_issue(ticket_id)
        change: dict[str, Any] = {}
        named = STATUSES.get(update.status_code or "")
        if update.status_code is not None and named is None:
            raise RejectedError(f"GitLab has no status {update.status_code!r} (known: "
                                f"{', '.join(STATUSES)})", connector=CONNECTOR,
                                object_id=ticket_id)
        closing: bool | None = None
        if named is not None:
            closing = named.state is TicketState.CLOSED
        elif update.state is not None:
            closing = update.state in _CLOSING
        if closing is not None and (issue.state == "closed") != closing:
            change["state_event"] = "close" if closing else "reopen"
        if update.tags is not None and {t.lower() for t in update.tags} != {
                t.lower() for t in issue.labels}:
            change["labels"] = ",".join(sorted(update.tags))
        wanted_assignee: list[str] | None = None
        if update.assignee_id is not None:
            current = [a.username for a in issue.assignees or ()]
            wanted_assignee = [update.assignee_id] if update.assignee_id else []
            if current != wanted_assignee:
                change["assignee_ids"] = [self._user_id(u) for u in wanted_assignee]
        if not change:
            return self._ticket(issue)
        after = parse_one(GlIssueWire, self.api.send_json(
            "PUT", self._issue_path(ticket_id), change, object_id=ticket_id), "issue",
            object_id=ticket_id)
        problems = []
        if "state_event" in change and (after.state == "closed") != (
                change["state_event"] == "close"):
            problems.append("state")
        if "labels" in change and {n.lower() for n in after.labels} != {
                n.lower() for n in update.tags or ()}:
            problems.append("labels")
        if "assignee_ids" in change and [a.username for a in after.assignees or ()] != \
                wanted_assignee:
            problems.append("assignee")
        if problems:
            raise RejectedError(f"GitLab ignored the change of {', '.join(problems)} (the token "
                                "needs the Planner or Reporter role in the project; an assignee "
                                "must be a member)", connector=CONNECTOR, object_id=ticket_id)
        return self._ticket(after)

    # -- change feed ------------------------------------------------------------------------
    def _fetch_changes(self, request: Request) -> tuple[list[GlIssueWire], Request | None]:
        payload, following = self._get_page(f"{self.project_path}/issues", request)
        return parse_items(GlIssueWire, payload, "issues"), following

    def iter_changes(self, since: Cursor | None) -> Iterator[ChangePage]:
        return self.feed.walk(since)

    # -- comments ---------------------------------------------------------------------------
    def list_comments(self, ticket_id: str) -> list[Comment]:
        return [self._comment(n, ticket_id)
                for page in self._pages(self._notes_path(ticket_id),
                                        {"sort": "asc", "order_by": "created_at"})
                for n in parse_items(GlNoteWire, page, "notes") if not n.system]

    def create_comment(self, ticket_id: str, new: NewComment) -> Comment:
        self._issue_path(ticket_id)
        body = self._with_uploads(ticket_id, new)
        return self.notes.create(ticket_id, new, body)

    def create_comments(self, ticket_id: str, news: Sequence[NewComment]) -> CommentBatch:
        return create_one_by_one(self.create_comment, ticket_id, news)

    def update_comment(self, ticket_id: str, comment_id: str, body: str) -> Comment:
        path = self._note_path(ticket_id, comment_id)
        found = self._comment(parse_one(GlNoteWire, self.api.get_json(
            path, object_id=comment_id), "note"), ticket_id)
        text = embed_marker(body, found.marker) if found.marker else body
        edited = self._comment(parse_one(GlNoteWire, self.api.send_json(
            "PUT", path, {"body": text}, object_id=ticket_id), "note"), ticket_id)
        if found.visibility is not edited.visibility:  # an edit must not publish a note
            raise self.notes.remove_leak(ticket_id, comment_id)
        return edited

    def delete_comment(self, ticket_id: str, comment_id: str) -> None:
        self.api.request("DELETE", self._note_path(ticket_id, comment_id), object_id=ticket_id)

    def find_comment_by_marker(self, ticket_id: str, marker: str) -> Comment | None:
        check_marker(marker)
        me = self.whoami()
        for comment in self.list_comments(ticket_id):
            if comment.marker != marker:
                continue
            if comment.author.id == me:
                return comment
            log.warning("marker_not_trusted", connector=CONNECTOR, issue_id=ticket_id,
                        comment_id=comment.id,
                        reason="a note carries our marker but was not written by the API user")
        return None

    def find_ticket_by_marker(self, marker: str) -> Ticket | None:
        """The API user's oldest issue whose description ends with the marker: its newest
        issues first (one page; when that is all of them, nothing else to look at), then
        GitLab's search over descriptions."""
        check_marker(marker)
        me = self.current_user()
        recent, more = self._get_page(f"{self.project_path}/issues", {
            "scope": "all", "author_id": me.id, "order_by": "created_at", "sort": "desc",
            "per_page": 100})
        found = self._own_with_marker(parse_items(GlIssueWire, recent, "issues"), marker,
                                      me.username)
        if found is not None or more is None:  # that page held every issue of the user
            return found
        for page in self._pages(f"{self.project_path}/issues", {
                "scope": "all", "search": marker, "in": "description"}):
            found = self._own_with_marker(parse_items(GlIssueWire, page, "issues"), marker,
                                          me.username)
            if found is not None:
                return found
        return None

    def _own_with_marker(self, issues: list[GlIssueWire], marker: str,
                         me: str) -> Ticket | None:
        for issue in sorted(issues, key=lambda i: i.iid):
            if split_marker(issue.description or "")[1] != marker:
                continue
            if issue.author is not None and issue.author.username == me:
                return self._ticket(issue)
            log.warning("marker_not_trusted", connector=CONNECTOR, issue_id=issue.iid,
                        reason="an issue carries our marker but was not created by the API user")
        return None

    # -- attachments ------------------------------------------------------------------------
    def _with_uploads(self, ticket_id: str, new: NewComment) -> str:
        """The note's text with its files uploaded and linked (a public copy only), and
        links to files already in this project's uploads."""
        own = self.project_web_url() + "/uploads/"
        uploaded = [a for a in new.attachments if a.url and a.url.startswith(own)]
        refused: list[str] = []
        if new.visibility is Visibility.PUBLIC:
            for f in new.files:
                try:
                    uploaded.append(self.upload_attachment(
                        ticket_id, f.name, f.content_type or "application/octet-stream",
                        f.data))
                except RejectedError as exc:
                    log.warning("gitlab_upload_refused", connector=CONNECTOR,
                                issue_id=ticket_id, marker=new.marker, file=f.name,
                                error=exc.message)
                    refused.append(f"{escape('glfm', f.name)}: not attached, GitLab refused "
                                   f"it (HTTP {exc.status})")
        links = []
        for a in uploaded:
            if not a.url or "\n" in a.url or ">" in a.url:
                continue
            target = a.url[len(own) - len("/uploads/"):]
            links.append(f"- [{escape('glfm', a.name)}]({target})")
        extra = [*links, *refused]
        return new.body if not extra else new.body.rstrip() + "\n\n" + "\n".join(extra)

    def upload_attachment(self, ticket_id: str, filename: str, content_type: str,
                          data: bytes) -> Attachment:
        """Put a file into the project's uploads; its link goes into a note or the
        description. Uploads of a project are reachable by whoever can see the project
        (and by their secret URL), so never upload what came from an internal note."""
        self._issue_path(ticket_id)
        request = self.api.client.build_request(
            "POST", f"{self.project_path}/uploads",
            files={"file": (filename, data, content_type)})
        _, raw, _ = self.api.request("POST", f"{self.project_path}/uploads",
                                     content=request.read(),
                                     headers={"Content-Type": request.headers["content-type"]},
                                     object_id=ticket_id)
        upload = parse_one(GlUploadWire, self.api.decode(raw, object_id=ticket_id), "upload",
                           object_id=ticket_id)
        return Attachment(name=upload.alt or filename, content_type=content_type,
                          size=len(data), url=self.project_web_url() + upload.url)

    # -- users, health ----------------------------------------------------------------------
    def current_user(self) -> GlUserWire:
        if self._me is None:
            self._me = parse_one(GlUserWire, self.api.get_json("/user"), "user")
        return self._me

    def whoami(self) -> str:
        return self.current_user().username

    def project(self) -> GlProjectWire:
        return parse_one(GlProjectWire, self.api.get_json(self.project_path,
                                                          object_id=self.cfg.project),
                         "project", object_id=self.cfg.project)

    def access_level(self) -> int:
        perms = self.project().permissions
        return perms.level if perms is not None else 0

    def list_users(self) -> list[User]:
        """Who can be assigned: the project's members, inherited ones included."""
        return [user_to_unified(u)
                for page in self._pages(f"{self.project_path}/members/all", {})
                for u in parse_items(GlUserWire, page, "members")]

    def setting_problems(self) -> list[tuple[str, str]]:
        try:
            project = self.project()
        except NotFoundError:
            me = self.current_user()
            return [("project", f"{self.cfg.project} does not exist or is not visible to "
                                f"{me.username}")]
        if project.issues_enabled is False:
            return [("project", f"{self.cfg.project} has issues turned off")]
        return []

    def check(self) -> str:
        me = self.current_user()
        try:
            project = self.project()
        except NotFoundError:
            raise NotFoundError(f"GitLab project {self.cfg.project} does not exist or is not "
                                f"visible to {me.username}", connector=CONNECTOR,
                                object_id=self.cfg.project) from None
        if project.issues_enabled is False:
            raise RejectedError(f"GitLab project {self.cfg.project} has issues turned off",
                                connector=CONNECTOR, object_id=self.cfg.project)
        level = project.permissions.level if project.permissions is not None else 0
        name = LEVEL_NAMES.get(level, str(level))
        missing = []
        if level < PLANNER:
            missing.append("labels, assignees and closing others' issues need Planner "
                           "(or Reporter)")
        if level < REPORTER:
            missing.append("internal notes need Reporter: without it the sync refuses to "
                           "copy internal notes")
        if missing:
            raise RejectedError(
                f"{me.username} is {name} in {self.cfg.project}: " + "; ".join(missing)
                + "; give the token's user the Reporter role (or higher) in the project",
                connector=CONNECTOR, object_id=self.cfg.project)
        return (f"gitlab {self.cfg.project} as {me.username} ({name}; may write internal "
                "notes)")


def _next_link(header: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``link`` header."""
    for part in (header or "").split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", ""):
            return url.strip().strip("<>")
    return None
