"""The GitHub Issues connector: issues <-> tickets, issue comments <-> comments.

Choices worth knowing (the GitHub facts behind them are in shared/trackers.md §1):

* **No private comments.** ``Capabilities.private_comments`` is False, so the reconciler
  never plans an internal note for GitHub; ``create_comment`` refuses one all the same
  (defence in depth: a bug elsewhere must not publish an internal note).
* Writes that GitHub does not deduplicate (issue and comment creates) are sent once; after
  a timeout or 5xx their marker is looked for first (``write_once``). An issue is looked for
  among the API user's newest issues (a listing, consistent at once) and then through
  search (which lags behind writes).
* Labels and assignees from a user without push access are dropped silently by GitHub;
  every write is read back (the PATCH answer) and a dropped change becomes a
  ``RejectedError`` naming the missing permission, never a silent no-op.
* Rate limits: GitHub answers 403 (or 429) for both the primary budget
  (``x-ratelimit-remaining: 0``, wait until ``x-ratelimit-reset``) and its secondary limit
  on content creation (``retry-after``, else at least a minute): both are rate limits here,
  not authentication failures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from pydantic import SecretStr

from connectors.base import Capabilities, CommentBatch, create_one_by_one
from connectors.github.app_auth import InstallationAuth
from connectors.github.config import GitHubConfig
from connectors.github.feed import ChangeFeed, FeedSettings
from connectors.github.mapping import (
    STATUSES,
    comment_to_unified,
    issue_to_ticket,
    ticket_status,
    user_to_unified,
)
from connectors.github.wire import (
    API_VERSION,
    CONNECTOR,
    GhAppWire,
    GhCommentWire,
    GhIssueWire,
    GhRepoWire,
    GhSearchWire,
    GhUserWire,
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
    parse_retry_after,
    write_once,
)
from syncer.errors import NotFoundError, RateLimitedError, RejectedError, SyncError
from syncer.models import (
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

log = structlog.get_logger("reamaze_sync.github")

_CLOSING = (TicketState.CLOSED, TicketState.SPAM)
_SECONDARY_WAIT = 60.0  # GitHub: "wait at least one minute" when it gives no time


def classify(status: int, body: bytes, headers: httpx.Headers,
             now: Callable[[], float] = time.time,
             maximum: float = 300.0) -> SyncError | None:
    """GitHub's rate-limit answers, which come as 403 as often as 429."""
    if status not in (403, 429):
        return None
    try:
        message = str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        message = ""
    kw: dict[str, Any] = {"connector": CONNECTOR, "status": status, "body": body}
    retry_after = parse_retry_after(headers.get("retry-after"), maximum=maximum)
    if retry_after is not None:
        return RateLimitedError("rate limited (retry-after)", retry_after=retry_after, **kw)
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            wait = float(headers.get("x-ratelimit-reset", "")) - now()
        except ValueError:
            wait = _SECONDARY_WAIT
        return RateLimitedError("primary rate limit used up until x-ratelimit-reset",
                                retry_after=min(max(wait, 1.0), maximum), **kw)
    if "rate limit" in message.lower():
        return RateLimitedError("secondary rate limit", retry_after=_SECONDARY_WAIT, **kw)
    if status == 429:
        return RateLimitedError("rate limited", retry_after=None, **kw)
    return None


class GitHubConnector:
    name = "github"

    def __init__(self, api: ApiClient, cfg: GitHubConfig, *,
                 now: Callable[[], datetime] | None = None, skew_seconds: float = 1.0) -> None:
        self.api = api
        self.cfg = cfg
        self.repo_path = f"/repos/{cfg.repo}"
        self.web_base = cfg.web_base()
        self.now = now or (lambda: datetime.now(UTC))
        self.capabilities = Capabilities(
            private_comments=False, edit_comments=True, labels=True, assignee=True,
            attachments_upload=False, markdown_markers=True, delete_comments=True,
            markup="gfm")
        self._me: str | None = None
        # Set when authenticating as a GitHub App installation.
        self.app_auth: InstallationAuth | None = None
        self.feed = ChangeFeed(self._fetch_changes, self._ticket,
                               FeedSettings(overlap_seconds=cfg.overlap_seconds,
                                            skew_seconds=skew_seconds), self.now,
                               comments=(self._fetch_comment_changes, self._issue_or_none))

    @classmethod
    def from_config(cls, cfg: GitHubConfig, token: SecretStr, *,
                    transport: httpx.BaseTransport | None = None, clock: Clock | None = None,
                    now: Callable[[], datetime] | None = None) -> GitHubConnector:
        """``token`` is the personal/fine-grained token, or with ``app_id`` the app's
        private key (PEM), traded for installation tokens as they are needed."""
        secret = token.get_secret_value()
        register_secret(secret)
        base = str(cfg.base_url).rstrip("/")
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
        auth: InstallationAuth | None = None
        if cfg.app_id is not None and cfg.installation_id is not None:
            auth = InstallationAuth(base_url=base, app_id=cfg.app_id,
                                    installation_id=cfg.installation_id, private_key=secret,
                                    now=now)
            who = f"the GitHub App {cfg.app_id} (installation {cfg.installation_id})"
            fix = ("check app_id, installation_id, the private key, and that the app is "
                   "installed on the repository")
        else:
            headers["Authorization"] = f"Bearer {secret}"
            who, fix = "the token", "check the token and its repository permissions"
        client = build_http_client(
            base, headers=headers, auth=auth, transport=transport,
            timeout=httpx.Timeout(cfg.http.timeout_seconds,
                                  connect=min(5.0, cfg.http.timeout_seconds)))
        clock = clock or SystemClock()
        overall, writes = connection_budgets(cfg.http, clock)
        maximum = cfg.http.max_retry_after_seconds
        api = ApiClient(
            CONNECTOR, client, clock=clock, rate_limiter=overall, write_limiter=writes,
            retry=RetryPolicy(attempts=cfg.http.max_attempts, max_retry_after=maximum),
            describe_auth_failure=lambda: (f"GitHub at {base} rejected {who} or denied "
                                           f"access to {cfg.repo} ({fix})"),
            classify_error=lambda status, body, headers: classify(status, body, headers,
                                                                  maximum=maximum))
        connector = cls(api, cfg, now=now)
        connector.app_auth = auth
        return connector

    def close(self) -> None:
        self.api.client.close()

    # -- helpers ----------------------------------------------------------------------------
    def _issue_path(self, ticket_id: str) -> str:
        if not ticket_id.isascii() or not ticket_id.isdigit():
            raise NotFoundError("not a GitHub issue number", connector=CONNECTOR,
                                object_id=ticket_id[:40])
        return f"{self.repo_path}/issues/{int(ticket_id)}"

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[Any]:
        """Every page of a listing, following ``link: rel="next"`` on our own host only."""
        request: dict[str, Any] | str = {**params, "per_page": 100}
        for _ in range(10_000):
            payload, next_url = self._get_page(path, request)
            yield payload
            if next_url is None:
                return
            request = next_url
        raise RejectedError(f"GET {path}: more than 10,000 pages", connector=CONNECTOR)

    def _get_page(self, path: str, request: dict[str, Any] | str) -> tuple[Any, str | None]:
        if isinstance(request, str):
            _, raw, headers = self.api.request("GET", self._same_host(request))
        else:
            _, raw, headers = self.api.request("GET", path, params=request)
        return self.api.decode(raw), _next_link(headers.get("link"))

    def _same_host(self, url: str) -> str:
        """A next-page URL as a path on our base URL; credentials never go elsewhere."""
        target, base = httpx.URL(url), httpx.URL(str(self.cfg.base_url))
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise RejectedError(f"GitHub pointed a next page at another host ({target.host})",
                                connector=CONNECTOR)
        path = target.raw_path.decode()
        prefix = base.raw_path.decode().rstrip("/")
        return path.removeprefix(prefix) if prefix and path.startswith(prefix + "/") else path

    def _ticket(self, issue: GhIssueWire) -> Ticket:
        return issue_to_ticket(issue, web_url=self.ticket_url(str(issue.number)))

    def _read_issue(self, ticket_id: str) -> GhIssueWire:
        issue = parse_one(GhIssueWire, self.api.get_json(self._issue_path(ticket_id),
                                                         object_id=ticket_id),
                          "issue", object_id=ticket_id)
        if issue.is_pull_request:
            raise NotFoundError("a pull request, not an issue", connector=CONNECTOR,
                                object_id=ticket_id)
        return issue

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.web_base}/{self.cfg.repo}/issues/{ticket_id}"

    # -- tickets ----------------------------------------------------------------------------
    def get_ticket(self, ticket_id: str) -> Ticket:
        return self._ticket(self._read_issue(ticket_id))

    def read_ticket(self, ticket_id: str) -> tuple[Ticket, list[Comment]]:
        return self.get_ticket(ticket_id), self.list_comments(ticket_id)

    def create_ticket(self, new: NewTicket) -> Ticket:
        check_marker(new.marker)
        body: dict[str, Any] = {"title": new.subject,
                                "body": embed_marker(new.description, new.marker)}
        if new.tags:
            body["labels"] = list(new.tags)
        if new.assignee_id:
            body["assignees"] = [new.assignee_id]

        def send() -> Ticket:
            return self._ticket(parse_one(GhIssueWire, self.api.send_json(
                "POST", f"{self.repo_path}/issues", body, retry_transient=False), "issue"))

        ticket = write_once(self.api, send, lambda: self.find_ticket_by_marker(new.marker))
        log.debug("github_issue_created", connector=CONNECTOR, issue_id=ticket.id,
                  marker=new.marker)
        dropped = [k for k, ok in (("labels", set(new.tags) <= set(ticket.tags)),
                                   ("assignee", not new.assignee_id or (
                                       ticket.assignee is not None
                                       and ticket.assignee.id == new.assignee_id)))
                   if not ok]
        if dropped:  # the issue exists: a later update retries, and says why it fails
            log.warning("github_fields_dropped", connector=CONNECTOR, issue_id=ticket.id,
                        fields=dropped, reason="GitHub drops labels and assignees from users "
                                               "without push access, or unknown assignees")
        if new.state in _CLOSING:
            ticket = self.update_ticket(ticket.id, TicketUpdate(state=TicketState.CLOSED))
        return ticket

    def list_statuses(self) -> list[TicketStatus]:
        """GitHub's states, closed ones by reason: what a pair's status table may name
        (``open``, ``closed (completed)``, ``closed (not_planned)``)."""
        return list(STATUSES.values())

    def update_ticket(self, ticket_id: str, update: TicketUpdate) -> Ticket:
        issue = self._read_issue(ticket_id)
        change: dict[str, Any] = {}
        named = STATUSES.get(update.status_code or "")
        if update.status_code is not None and named is None:
            raise RejectedError(f"GitHub has no status {update.status_code!r} (known: "
                                f"{', '.join(STATUSES)})", connector=CONNECTOR,
                                object_id=ticket_id)
        if named is not None:
            if ticket_status(issue).code != named.code:
                state, _, reason = named.code.partition(":")
                change["state"] = state
                if reason:
                    change["state_reason"] = reason
        elif update.state is not None:
            closing = update.state in _CLOSING
            if (issue.state == "closed") != closing:
                change["state"] = "closed" if closing else "open"
                if closing:
                    change["state_reason"] = ("not_planned" if update.state is TicketState.SPAM
                                              else self.cfg.close_reason)
        if update.tags is not None and set(update.tags) != set(issue.label_names()):
            change["labels"] = sorted(update.tags)
        if update.assignee_id is not None:
            current = [a.login for a in issue.assignees or ()]
            wanted = [update.assignee_id] if update.assignee_id else []
            if current != wanted:
                change["assignees"] = wanted
        if not change:
            return self._ticket(issue)
        after = parse_one(GhIssueWire, self.api.send_json(
            "PATCH", self._issue_path(ticket_id), change, object_id=ticket_id), "issue",
            object_id=ticket_id)
        problems = []
        if "state" in change and (after.state != change["state"] or (
                "state_reason" in change and after.state_reason != change["state_reason"])):
            problems.append("state")
        if "labels" in change and {n.lower() for n in after.label_names()} != {
                n.lower() for n in change["labels"]}:
            problems.append("labels")
        if "assignees" in change and [a.login for a in after.assignees or ()] != \
                change["assignees"]:
            problems.append("assignee")
        if problems:
            raise RejectedError(f"GitHub ignored the change of {', '.join(problems)} (the token "
                                "needs push access to the repository; an assignee must have "
                                "access to it)", connector=CONNECTOR, object_id=ticket_id)
        return self._ticket(after)

    # -- change feed ------------------------------------------------------------------------
    def _fetch_changes(self, request: dict[str, Any] | str) -> tuple[list[GhIssueWire],
                                                                      str | None]:
        payload, next_url = self._get_page(f"{self.repo_path}/issues", request)
        return parse_items(GhIssueWire, payload, "issues"), next_url

    def _fetch_comment_changes(self, request: dict[str, Any] | str
                               ) -> tuple[list[GhCommentWire], str | None]:
        payload, next_url = self._get_page(f"{self.repo_path}/issues/comments", request)
        return parse_items(GhCommentWire, payload, "comments"), next_url

    def _issue_or_none(self, number: int) -> GhIssueWire | None:
        """The issue of a changed comment; None for a pull request or one that is gone."""
        try:
            return self._read_issue(str(number))
        except NotFoundError:
            return None

    def iter_changes(self, since: Cursor | None) -> Iterator[ChangePage]:
        return self.feed.walk(since)

    # -- comments ---------------------------------------------------------------------------
    def list_comments(self, ticket_id: str) -> list[Comment]:
        path = self._issue_path(ticket_id) + "/comments"
        return [comment_to_unified(c, ticket_id) for page in self._pages(path, {})
                for c in parse_items(GhCommentWire, page, "comments")]

    def create_comment(self, ticket_id: str, new: NewComment) -> Comment:
        if new.visibility is not Visibility.PUBLIC:
            # GitHub comments are public; the reconciler never asks, this makes sure.
            raise RejectedError("GitHub has no private comments; an internal note is never "
                                "written there", connector=CONNECTOR, object_id=ticket_id)
        check_marker(new.marker)
        path = self._issue_path(ticket_id) + "/comments"

        def send() -> Comment:
            return comment_to_unified(parse_one(GhCommentWire, self.api.send_json(
                "POST", path, {"body": embed_marker(new.body, new.marker)},
                object_id=ticket_id, retry_transient=False), "comment"), ticket_id)

        comment = write_once(self.api, send,
                             lambda: self.find_comment_by_marker(ticket_id, new.marker))
        log.debug("github_comment_created", connector=CONNECTOR, issue_id=ticket_id,
                  comment_id=comment.id, marker=new.marker)
        return comment

    def create_comments(self, ticket_id: str, news: Sequence[NewComment]) -> CommentBatch:
        return create_one_by_one(self.create_comment, ticket_id, news)

    def update_comment(self, ticket_id: str, comment_id: str, body: str) -> Comment:
        path = self._comment_path(comment_id)
        # One comment by id: reading the issue's whole comment list would cost a page a
        # hundred comments.
        found = comment_to_unified(parse_one(GhCommentWire, self.api.get_json(
            path, object_id=comment_id), "comment"), ticket_id)
        text = embed_marker(body, found.marker) if found.marker else body
        return comment_to_unified(parse_one(GhCommentWire, self.api.send_json(
            "PATCH", path, {"body": text}, object_id=ticket_id), "comment"), ticket_id)

    def _comment_path(self, comment_id: str) -> str:
        if not comment_id.isascii() or not comment_id.isdigit():
            raise NotFoundError("not a GitHub comment id", connector=CONNECTOR,
                                object_id=comment_id[:40])
        return f"{self.repo_path}/issues/comments/{int(comment_id)}"

    def delete_comment(self, ticket_id: str, comment_id: str) -> None:
        self.api.request("DELETE", self._comment_path(comment_id), object_id=ticket_id)

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
                        reason="a comment carries our marker but was not written by the API user")
        return None

    def find_ticket_by_marker(self, marker: str) -> Ticket | None:
        """The API user's oldest issue whose body ends with the marker. Its newest issues
        first (a listing: shows a create at once), then, if it has more than a page of
        them, search (which lags behind writes)."""
        check_marker(marker)
        me = self.whoami()
        recent, more = self._get_page(f"{self.repo_path}/issues", {
            "state": "all", "creator": me, "sort": "created", "direction": "desc",
            "per_page": 100})
        found = self._own_with_marker(parse_items(GhIssueWire, recent, "issues"), marker, me)
        if found is not None or more is None:
            return found  # one page held every issue the API user created: nothing older
        query = f'"{marker}" repo:{self.cfg.repo} is:issue in:body'
        for page in self._pages("/search/issues", {"q": query}):
            result = parse_one(GhSearchWire, page, "search result")
            found = self._own_with_marker(parse_items(GhIssueWire, list(result.items),
                                                      "issues"), marker, me)
            if found is not None:
                return found
        return None

    def _own_with_marker(self, issues: list[GhIssueWire], marker: str,
                         me: str) -> Ticket | None:
        for issue in sorted(issues, key=lambda i: i.number):
            if issue.is_pull_request or split_marker(issue.body or "")[1] != marker:
                continue
            if issue.user is not None and issue.user.login == me:
                return self._ticket(issue)
            log.warning("marker_not_trusted", connector=CONNECTOR, issue_id=issue.number,
                        reason="an issue carries our marker but was not created by the API user")
        return None

    # -- users, health ----------------------------------------------------------------------
    def current_user(self) -> GhUserWire:
        return parse_one(GhUserWire, self.api.get_json("/user"), "user")

    def whoami(self) -> str:
        """The login our writes show: the token's user, or ``SLUG[bot]`` for an app
        (installation tokens cannot read ``/user``)."""
        if self._me is None:
            if self.app_auth is not None:
                app = parse_one(GhAppWire, self.api.get_json("/app"), "app")
                self._me = f"{app.slug}[bot]"
            else:
                self._me = self.current_user().login
        return self._me

    def repository(self) -> GhRepoWire:
        return parse_one(GhRepoWire, self.api.get_json(self.repo_path, object_id=self.cfg.repo),
                         "repository", object_id=self.cfg.repo)

    def list_users(self) -> list[User]:
        """Who can be assigned in the repository."""
        return [user_to_unified(u) for page in self._pages(f"{self.repo_path}/assignees", {})
                for u in parse_items(GhUserWire, page, "assignees")]

    def setting_problems(self) -> list[tuple[str, str]]:
        try:
            repo = self.repository()
        except NotFoundError:
            return [("repo", f"{self.cfg.repo} does not exist or is not visible to "
                             f"{self.whoami()}")]
        if not repo.has_issues:
            return [("repo", f"{self.cfg.repo} has issues turned off")]
        return []

    def check(self) -> str:
        me = self.whoami()
        try:
            repo = self.repository()
        except NotFoundError:
            raise NotFoundError(f"GitHub repository {self.cfg.repo} does not exist or is not "
                                f"visible to {me}", connector=CONNECTOR,
                                object_id=self.cfg.repo) from None
        if self.app_auth is not None:
            granted = self.app_auth.permissions.get("issues")
            if granted != "write":
                raise RejectedError(
                    f"the GitHub App installation has issues permission {granted or 'none'} "
                    f"on {self.cfg.repo}: it needs Issues: Read and write (the app's "
                    "permissions, then accept them on the installation)", connector=CONNECTOR,
                    object_id=self.cfg.repo)
            return (f"github {self.cfg.repo} as {me} (GitHub App installation "
                    f"{self.cfg.installation_id}, issues: write; comments there are public, "
                    "so internal notes are never copied)")
        perms = repo.permissions
        if perms is None or not perms.push:
            raise RejectedError(
                f"{me} has no push access to {self.cfg.repo}: GitHub would drop labels "
                "and assignees silently and refuse to close issues others opened; give the "
                "token write access to the repository's issues", connector=CONNECTOR,
                object_id=self.cfg.repo)
        return (f"github {self.cfg.repo} as {me} (push access; comments there are "
                "public, so internal notes are never copied)")


def _next_link(header: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``link`` header."""
    for part in (header or "").split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", ""):
            return url.strip().strip("<>")
    return None
