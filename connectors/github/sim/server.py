"""A stateful GitHub REST simulator: ``handle(httpx.Request) -> httpx.Response``.

Serve it with ``httpx.MockTransport(sim.handle)`` or ``connectors.loopback``. Answers as
api.github.com does (trackers.md §1; shapes from the official OpenAPI description,
status codes and headers from the recordings in tests/specs/github-recordings):

* ``Authorization: Bearer|token <t>``; a bad token -> 401 ``Bad credentials``; a private
  repository the user cannot see -> 404.
* Every answer carries ``x-ratelimit-limit/remaining/used/reset/resource``. The primary
  budget (``primary_per_hour``, 5,000) exhausted -> 403 ``API rate limit exceeded`` with
  ``x-ratelimit-remaining: 0``. The secondary limit on content creation
  (``secondary_per_minute``, 80 writes in any 60 s) -> 403 ``You have exceeded a secondary
  rate limit`` with ``retry-after``.
* Listings page by ``per_page`` (≤ 100, default 30) and ``page``, with a ``link`` header
  whose URLs use ``/repositories/{id}/…``, as GitHub's do.

Test hooks: ``faults`` (connectors.simfaults), ``requests`` (the log), ``state`` (data),
setup helpers ``add_user``, ``add_repo``, ``grant``, ``add_issue``, ``add_comment``.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode

import httpx

from connectors.github.sim.apps import AppRegistry
from connectors.github.sim.state import (
    LEVELS,
    GhComment,
    GhIssue,
    GhLabel,
    GhRepo,
    GhUser,
    GitHubError,
    GitHubState,
    SimClock,
)
from connectors.simfaults import Faults, SimRequest

DOCS = "https://docs.github.com/rest"
Route = Callable[[httpx.Request, GhUser, "re.Match[str]"], Any]
_WRITES = ("POST", "PATCH", "PUT", "DELETE")


def _error_body(status: int) -> tuple[bytes, str | None]:
    messages = {401: "Bad credentials", 403: "Forbidden", 404: "Not Found",
                422: "Validation Failed", 429: "Too Many Requests"}
    body = {"message": messages.get(status, "Server Error"), "documentation_url": DOCS,
            "status": str(status)}
    return json.dumps(body).encode(), "application/json; charset=utf-8"


class GitHubSimulator:
    def __init__(self, *, clock: SimClock | None = None, primary_per_hour: int = 5_000,
                 secondary_per_minute: int = 80, since_exclusive: bool = False,
                 sleep: Callable[[float], None] = time.sleep,
                 wall: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or SimClock()
        self.state = GitHubState(self.clock)
        self.apps = AppRegistry(self.state, wall)
        self.faults = Faults(_error_body)
        self.requests: list[SimRequest] = []
        self.sleep = sleep
        self.primary_per_hour = primary_per_hour
        self.secondary_per_minute = secondary_per_minute
        # GitHub documents ``since`` as "updated after"; the engine must not care whether
        # it is inclusive (the default here) or not.
        self.since_exclusive = since_exclusive
        self._used: dict[str, deque[float]] = {}
        self._writes: dict[str, deque[float]] = {}
        self._routes: list[tuple[str, re.Pattern[str], Route]] = []
        repo = r"/repos/([^/]+)/([^/]+)"
        for method, pattern, route in (
            ("GET", r"/user", self._me),
            ("GET", r"/rate_limit", self._rate_limit),
            ("GET", r"/users/([^/]+)", self._user),
            ("GET", repo, self._repo),
            ("GET", repo + r"/issues", self._list_issues),
            ("POST", repo + r"/issues", self._create_issue),
            ("GET", repo + r"/issues/comments", self._repo_comments),
            ("GET", repo + r"/issues/comments/(\d+)", self._get_comment),
            ("PATCH", repo + r"/issues/comments/(\d+)", self._edit_comment),
            ("DELETE", repo + r"/issues/comments/(\d+)", self._delete_comment),
            ("GET", repo + r"/issues/(\d+)", self._get_issue),
            ("PATCH", repo + r"/issues/(\d+)", self._update_issue),
            ("GET", repo + r"/issues/(\d+)/comments", self._list_comments),
            ("POST", repo + r"/issues/(\d+)/comments", self._create_comment),
            ("POST", repo + r"/issues/(\d+)/labels", self._add_labels),
            ("PUT", repo + r"/issues/(\d+)/lock", self._lock),
            ("DELETE", repo + r"/issues/(\d+)/lock", self._lock),
            ("GET", repo + r"/labels", self._repo_labels),
            ("GET", repo + r"/assignees", self._assignees),
            ("POST", repo + r"/labels", self._create_label),
            ("GET", repo + r"/labels/([^/]+)", self._get_label),
            ("PATCH", repo + r"/labels/([^/]+)", self._update_label),
            ("DELETE", repo + r"/labels/([^/]+)", self._delete_label),
            ("GET", r"/search/issues", self._search),
        ):
            self._routes.append((method, re.compile(pattern + r"/?"), route))

    # -- setup, bypassing HTTP --------------------------------------------------------------
    def add_user(self, login: str, token: str | None = None, kind: str = "User") -> GhUser:
        with self.state.lock:
            return self.state.add_user(login, token, kind)

    def add_repo(self, full_name: str, *, private: bool = True) -> GhRepo:
        owner, name = full_name.split("/")
        with self.state.lock:
            if owner not in self.state.users:
                self.state.add_user(owner)
            return self.state.add_repo(owner, name, private=private)

    def add_app(self, slug: str, repo: GhRepo, *,
                permissions: dict[str, str] | None = None) -> tuple[int, int, str]:
        """A GitHub App installed on ``repo``: (app id, installation id, private key PEM).
        Its bot gets write access when the app may write issues, read access otherwise."""
        granted = permissions or {"issues": "write", "metadata": "read"}
        with self.state.lock:
            app, installation, pem = self.apps.add(slug, granted)
            repo.permissions[installation.bot.login] = (
                "write" if granted.get("issues") == "write" else "read")
        return app.id, installation.id, pem

    def grant(self, repo: GhRepo, login: str, level: str) -> None:
        assert level in LEVELS, level
        with self.state.lock:
            repo.permissions[login] = level

    def revoke(self, repo: GhRepo, login: str) -> None:
        with self.state.lock:
            repo.permissions.pop(login, None)

    def add_issue(self, repo: GhRepo, login: str, title: str, body: str | None = None, *,
                  labels: list[str] | None = None, pull_request: bool = False) -> GhIssue:
        with self.state.lock:
            return self.state.create_issue(repo, self.state.users[login], title, body,
                                           labels, None, pull_request=pull_request)

    def add_comment(self, repo: GhRepo, login: str, number: int, body: str) -> GhComment:
        with self.state.lock:
            issue = self.state.issue(repo, number)
            return self.state.add_comment(repo, self.state.users[login], issue, body)

    def set_state(self, repo: GhRepo, login: str, number: int, state: str,
                  reason: str | None = None) -> GhIssue:
        with self.state.lock:
            issue = self.state.issue(repo, number)
            return self.state.update_issue(repo, self.state.users[login], issue,
                                           {"state": state, "state_reason": reason})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- entry point ------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        user: GhUser | None = None

        def dispatch() -> httpx.Response:
            nonlocal user
            with self.state.lock:
                try:
                    app_answer = self._app_endpoint(request)
                    if app_answer is not None:
                        return app_answer
                    user = self._authenticate(request)
                    limited = self._rate_limits(request, user)
                    if limited is not None:
                        return limited
                    route, match = self._route(request)
                    status, payload, extra = self._call(route, request, user, match)
                    return self._answer(status, payload, {**extra, **self._limit_headers(user)})
                except GitHubError as exc:
                    headers = {**exc.headers, **(self._limit_headers(user) if user else {})}
                    body: dict[str, Any] = {"message": exc.message, "documentation_url": DOCS,
                                            "status": str(exc.status)}
                    if exc.errors is not None:
                        body["errors"] = exc.errors
                    return self._answer(exc.status, body, headers)

        try:
            response, _fault = self.faults.apply(request, dispatch, self.sleep)
        except httpx.ReadTimeout:
            self._log(request, None, user)
            raise
        return self._log(request, response, user)

    def _log(self, request: httpx.Request, response: httpx.Response | None,
             user: GhUser | None) -> httpx.Response:
        entry = SimRequest(request.method, request.url.path, dict(request.url.params.items()),
                           request.content, response.status_code if response else None,
                           user.login if user else None)
        with self.state.lock:
            self.requests.append(entry)
        return response if response is not None else httpx.Response(599)

    @staticmethod
    def _answer(status: int, payload: Any, headers: dict[str, str]) -> httpx.Response:
        if status == 204:
            return httpx.Response(204, headers=headers)
        return httpx.Response(status, content=json.dumps(payload).encode(), headers={
            "Content-Type": "application/json; charset=utf-8",
            "X-GitHub-Media-Type": "github.v3; format=json", **headers})

    def _app_endpoint(self, request: httpx.Request) -> httpx.Response | None:
        """``/app`` and the token exchange, authenticated by the app's JWT."""
        path = request.url.path.rstrip("/")
        exchange = re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)
        if path != "/app" and exchange is None:
            return None
        app = self.apps.app_for_jwt(request.headers.get("authorization", ""))
        if path == "/app" and request.method == "GET":
            return self._answer(200, self.apps.app_json(app), {})
        if exchange is not None and request.method == "POST":
            return self._answer(201, self.apps.issue_token(app, int(exchange[1])), {})
        raise GitHubError(404, "Not Found")

    def _authenticate(self, request: httpx.Request) -> GhUser:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        bearer = scheme.lower() in ("bearer", "token") and token.strip()
        bot = self.apps.bot_for_token(token.strip()) if bearer else None
        if bot is not None:
            return bot
        user = (self.state.user_by_token(token.strip()) if bearer else None)
        if user is None:
            raise GitHubError(401, "Bad credentials")
        return user

    def _route(self, request: httpx.Request) -> tuple[Route, re.Match[str]]:
        path = request.url.path
        by_id = re.match(r"/repositories/(\d+)(/.*)?$", path)
        if by_id is not None:  # the form GitHub's own link headers use
            repo = next((r for r in self.state.repos.values() if r.id == int(by_id[1])), None)
            if repo is None:
                raise GitHubError(404, "Not Found")
            path = f"/repos/{repo.full_name}{by_id[2] or ''}"
        for method, pattern, route in self._routes:
            match = pattern.fullmatch(path)
            if match is not None and method == request.method:
                return route, match
        raise GitHubError(404, "Not Found")  # GitHub answers an unknown method 404 too

    def _call(self, route: Route, request: httpx.Request, user: GhUser,
              match: re.Match[str]) -> tuple[int, Any, dict[str, str]]:
        result = route(request, user, match)
        if isinstance(result, tuple):
            return result
        return (201 if request.method == "POST" else 200), result, {}

    # -- rate limits --------------------------------------------------------------------------
    def _rate_limits(self, request: httpx.Request, user: GhUser) -> httpx.Response | None:
        now = self.clock.current.timestamp()
        used = self._used.setdefault(user.login, deque())
        while used and used[0] <= now - 3600:
            used.popleft()
        if len(used) >= self.primary_per_hour and request.url.path != "/rate_limit":
            return self._answer(403, {
                "message": f"API rate limit exceeded for user ID {user.id}.",
                "documentation_url": DOCS + "/overview/rate-limits-for-the-rest-api"},
                self._limit_headers(user))
        if request.method in _WRITES:
            writes = self._writes.setdefault(user.login, deque())
            while writes and writes[0] <= now - 60:
                writes.popleft()
            if len(writes) >= self.secondary_per_minute:
                wait = max(1, int(writes[0] + 60 - now) + 1)
                return self._answer(403, {
                    "message": "You have exceeded a secondary rate limit. Please wait a few "
                               "minutes before you try again.",
                    "documentation_url": DOCS + "/overview/rate-limits-for-the-rest-api"},
                    {**self._limit_headers(user), "retry-after": str(wait)})
            writes.append(now)
        if request.url.path != "/rate_limit":
            used.append(now)
        return None

    def _limit_headers(self, user: GhUser | None) -> dict[str, str]:
        if user is None:
            return {}
        used = self._used.get(user.login, deque())
        reset = int((used[0] if used else self.clock.current.timestamp()) + 3600)
        return {"x-ratelimit-limit": str(self.primary_per_hour),
                "x-ratelimit-remaining": str(max(0, self.primary_per_hour - len(used))),
                "x-ratelimit-used": str(len(used)), "x-ratelimit-reset": str(reset),
                "x-ratelimit-resource": "core"}

    # -- rendering ----------------------------------------------------------------------------
    def _api(self, request: httpx.Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc.decode()}"

    def _user_json(self, request: httpx.Request, login: str) -> dict[str, Any]:
        user = self.state.users.get(login)
        uid = user.id if user else 0
        api, web = self._api(request), "https://github.com"
        return {"login": login, "id": uid, "node_id": f"U_{uid}",
                "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
                "gravatar_id": "", "url": f"{api}/users/{login}", "html_url": f"{web}/{login}",
                "followers_url": f"{api}/users/{login}/followers",
                "following_url": f"{api}/users/{login}/following{{/other_user}}",
                "gists_url": f"{api}/users/{login}/gists{{/gist_id}}",
                "starred_url": f"{api}/users/{login}/starred{{/owner}}{{/repo}}",
                "subscriptions_url": f"{api}/users/{login}/subscriptions",
                "organizations_url": f"{api}/users/{login}/orgs",
                "repos_url": f"{api}/users/{login}/repos",
                "events_url": f"{api}/users/{login}/events{{/privacy}}",
                "received_events_url": f"{api}/users/{login}/received_events",
                "type": user.type if user else "User", "site_admin": False}

    def _issue_json(self, request: httpx.Request, issue: GhIssue) -> dict[str, Any]:
        repo = self.state.repo_by_id(issue.repo_id)
        api = self._api(request)
        base = f"{api}/repos/{repo.full_name}/issues/{issue.number}"
        kind = "pull" if issue.is_pull_request else "issues"
        html = f"https://github.com/{repo.full_name}/{kind}/{issue.number}"
        assignees = [self._user_json(request, a) for a in issue.assignees]
        out: dict[str, Any] = {
            "url": base, "repository_url": f"{api}/repos/{repo.full_name}",
            "labels_url": base + "/labels{/name}", "comments_url": base + "/comments",
            "events_url": base + "/events", "html_url": html, "id": issue.id,
            "node_id": f"I_{issue.id}", "number": issue.number, "title": issue.title,
            "user": self._user_json(request, issue.author),
            "labels": [self._label_json(request, repo, n) for n in issue.labels],
            "state": issue.state, "state_reason": issue.state_reason, "locked": issue.locked,
            "assignee": assignees[0] if assignees else None, "assignees": assignees,
            "milestone": None,
            "comments": sum(1 for c in self.state.comments.values()
                            if c.repo_id == repo.id and c.number == issue.number),
            "created_at": _time(issue.created_at), "updated_at": _time(issue.updated_at),
            "closed_at": _time(issue.closed_at) if issue.closed_at else None,
            "author_association": "OWNER" if issue.author == repo.owner else "NONE",
            "active_lock_reason": None, "body": issue.body,
            "closed_by": None, "performed_via_github_app": None,
            "timeline_url": base + "/timeline", "reactions": self._reactions(base),
        }
        if issue.is_pull_request:
            out["pull_request"] = {"url": f"{api}/repos/{repo.full_name}/pulls/{issue.number}",
                                   "html_url": html, "diff_url": html + ".diff",
                                   "patch_url": html + ".patch", "merged_at": None}
        return out

    def _label_json(self, request: httpx.Request, repo: GhRepo, name: str) -> dict[str, Any]:
        label = repo.labels.get(name) or GhLabel(name, "ededed")
        ident = zlib.crc32(f"{repo.id}:{name}".encode())
        return {"id": ident, "node_id": f"LA_{ident}",
                "url": f"{self._api(request)}/repos/{repo.full_name}/labels/{quote(name)}",
                "name": name, "color": label.color, "default": label.default,
                "description": label.description}

    def _reactions(self, url: str) -> dict[str, Any]:
        return {"url": url + "/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0,
                "hooray": 0, "confused": 0, "heart": 0, "rocket": 0, "eyes": 0}

    def _comment_json(self, request: httpx.Request, comment: GhComment) -> dict[str, Any]:
        repo = self.state.repo_by_id(comment.repo_id)
        api = self._api(request)
        return {"id": comment.id, "node_id": f"IC_{comment.id}",
                "url": f"{api}/repos/{repo.full_name}/issues/comments/{comment.id}",
                "html_url": f"https://github.com/{repo.full_name}/issues/{comment.number}"
                            f"#issuecomment-{comment.id}",
                "body": comment.body, "user": self._user_json(request, comment.author),
                "created_at": _time(comment.created_at), "updated_at": _time(comment.updated_at),
                "issue_url": f"{api}/repos/{repo.full_name}/issues/{comment.number}",
                "author_association": "OWNER" if comment.author == repo.owner else "NONE",
                "performed_via_github_app": None,
                "reactions": self._reactions(
                    f"{api}/repos/{repo.full_name}/issues/comments/{comment.id}")}

    # -- paging -------------------------------------------------------------------------------
    def _page(self, request: httpx.Request, items: list[Any], path: str,
              ) -> tuple[int, list[Any], dict[str, str]]:
        params = dict(request.url.params.items())
        try:
            per_page = min(100, max(1, int(params.get("per_page", "30"))))
            page = max(1, int(params.get("page", "1")))
        except ValueError:
            raise GitHubError(422, "Validation Failed") from None
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page:page * per_page]
        links = []

        def url(n: int) -> str:
            query = {**params, "per_page": str(per_page), "page": str(n)}
            return f"{self._api(request)}{path}?{urlencode(query)}"

        if page < last:
            links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        if page > 1:
            links = [f'<{url(page - 1)}>; rel="prev"', f'<{url(1)}>; rel="first"', *links]
        return 200, chunk, ({"link": ", ".join(links)} if links else {})

    # -- routes -------------------------------------------------------------------------------
    def _me(self, request: httpx.Request, user: GhUser, _m: re.Match[str]) -> Any:
        """The authenticated user: GitHub's "private-user" shape."""
        if self.apps.is_installation(user):
            raise GitHubError(403, "Resource not accessible by integration")
        stamp = _time(self.clock.current)
        return {**self._user_json(request, user.login), "user_view_type": "private",
                "name": None, "company": None, "blog": "", "location": None, "email": None,
                "hireable": None, "bio": None, "public_repos": 0, "public_gists": 0,
                "followers": 0, "following": 0, "created_at": stamp, "updated_at": stamp,
                "private_gists": 0, "total_private_repos": 0, "owned_private_repos": 0,
                "disk_usage": 0, "collaborators": 0, "two_factor_authentication": True}

    def _user(self, request: httpx.Request, _u: GhUser, m: re.Match[str]) -> Any:
        if m.group(1) not in self.state.users:
            raise GitHubError(404, "Not Found")
        return self._user_json(request, m.group(1))

    def _rate_limit(self, _r: httpx.Request, user: GhUser, _m: re.Match[str]) -> Any:
        h = self._limit_headers(user)
        core = {"limit": int(h["x-ratelimit-limit"]), "remaining": int(h["x-ratelimit-remaining"]),
                "reset": int(h["x-ratelimit-reset"]), "used": int(h["x-ratelimit-used"])}
        return {"resources": {"core": core}, "rate": core}

    def _repo_of(self, user: GhUser, m: re.Match[str]) -> GhRepo:
        return self.state.repo_for(m.group(1), m.group(2), user)

    def _repo(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        level = self.state.level(repo, user)
        order = ("read", "triage", "write", "maintain", "admin")
        rank = order.index(level) if level in order else -1
        api, web = self._api(request), f"https://github.com/{repo.full_name}"
        base = f"{api}/repos/{repo.full_name}"
        stamp = _time(self.clock.current)
        urls = {f"{name}_url": f"{base}/{name}{suffix}" for name, suffix in (
            ("archive", "/{archive_format}{/ref}"), ("assignees", "{/user}"),
            ("blobs", "{/sha}"), ("branches", "{/branch}"),
            ("collaborators", "{/collaborator}"), ("comments", "{/number}"),
            ("commits", "{/sha}"), ("compare", "{/base}...{head}"), ("contents", "{+path}"),
            ("contributors", ""), ("deployments", ""), ("downloads", ""), ("events", ""),
            ("forks", ""), ("hooks", ""), ("issue_comment", "{/number}"),
            ("issue_events", "{/number}"), ("issues", "{/number}"), ("keys", "{/key_id}"),
            ("labels", "{/name}"), ("languages", ""), ("merges", ""),
            ("milestones", "{/number}"), ("notifications", "{?since,all,participating}"),
            ("pulls", "{/number}"), ("releases", "{/id}"), ("stargazers", ""),
            ("statuses", "/{sha}"), ("subscribers", ""), ("subscription", ""), ("tags", ""),
            ("teams", ""), ("trees", "{/sha}"))}
        for git in ("commits", "refs", "tags"):
            urls[f"git_{git}_url"] = f"{base}/git/{git}{{/sha}}"
        open_count = sum(1 for i in self.state.issues.values()
                         if i.repo_id == repo.id and i.state == "open")
        return {
            **urls, "id": repo.id, "node_id": f"R_{repo.id}", "name": repo.name,
            "full_name": repo.full_name, "private": repo.private,
            "owner": self._user_json(request, repo.owner), "html_url": web, "url": base,
            "description": None, "fork": False, "homepage": None, "language": None,
            "clone_url": web + ".git", "git_url": f"git://github.com/{repo.full_name}.git",
            "ssh_url": f"git@github.com:{repo.full_name}.git", "svn_url": web,
            "mirror_url": None, "default_branch": "main", "forks": 0, "forks_count": 0,
            "stargazers_count": 0, "watchers": 0, "watchers_count": 0, "size": 0,
            "open_issues": open_count, "open_issues_count": open_count,
            "has_issues": repo.has_issues, "has_projects": False, "has_wiki": False,
            "has_pages": False, "has_discussions": False, "archived": False, "disabled": False,
            "license": None, "pushed_at": stamp, "created_at": stamp, "updated_at": stamp,
            "network_count": 0, "subscribers_count": 0,
            "permissions": {"pull": rank >= 0, "triage": rank >= 1, "push": rank >= 2,
                            "maintain": rank >= 3, "admin": rank >= 4}}

    def _issues_query(self, request: httpx.Request, repo: GhRepo) -> list[GhIssue]:
        p = dict(request.url.params.items())
        state = p.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise GitHubError(422, "Validation Failed")
        items = [i for i in self.state.issues.values() if i.repo_id == repo.id
                 and (state == "all" or i.state == state)]
        if "since" in p:
            since = _parse_time(p["since"])
            items = [i for i in items if (i.updated_at > since if self.since_exclusive
                                          else i.updated_at >= since)]
        if "labels" in p:
            wanted = {n.strip().lower() for n in p["labels"].split(",") if n.strip()}
            items = [i for i in items if wanted <= {n.lower() for n in i.labels}]
        if "creator" in p:
            items = [i for i in items if i.author == p["creator"]]
        sort = p.get("sort", "created")
        key: Callable[[GhIssue], Any] = {
            "created": lambda i: (i.created_at, i.id), "updated": lambda i: (i.updated_at, i.id),
            "comments": lambda i: (sum(1 for c in self.state.comments.values()
                                       if c.repo_id == repo.id and c.number == i.number), i.id),
        }.get(sort) or (lambda i: (i.created_at, i.id))
        return sorted(items, key=key, reverse=p.get("direction", "desc") != "asc")

    def _list_issues(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        return self._issue_page(request, repo)

    def _issue_page(self, request: httpx.Request, repo: GhRepo) -> Any:
        status, chunk, headers = self._page(request, self._issues_query(request, repo),
                                            f"/repositories/{repo.id}/issues")
        return status, [self._issue_json(request, i) for i in chunk], headers

    def _create_issue(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        body = _json(request)
        issue = self.state.create_issue(repo, user, body.get("title"), body.get("body"),
                                        body.get("labels"), body.get("assignees"))
        return self._issue_json(request, issue)

    def _get_issue(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        return self._issue_json(request, self.state.issue(repo, int(m.group(3))))

    def _update_issue(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        issue = self.state.issue(repo, int(m.group(3)))
        self.state.update_issue(repo, user, issue, _json(request))
        return 200, self._issue_json(request, issue), {}

    def _list_comments(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        number = int(m.group(3))
        self.state.issue(repo, number)
        items = sorted((c for c in self.state.comments.values()
                        if c.repo_id == repo.id and c.number == number), key=lambda c: c.id)
        since = request.url.params.get("since")
        if since:
            items = [c for c in items if c.updated_at >= _parse_time(since)]
        status, chunk, headers = self._page(
            request, items, f"/repositories/{repo.id}/issues/{number}/comments")
        return status, [self._comment_json(request, c) for c in chunk], headers

    def _repo_comments(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        p = dict(request.url.params.items())
        items = [c for c in self.state.comments.values() if c.repo_id == repo.id]
        if "since" in p:
            items = [c for c in items if c.updated_at >= _parse_time(p["since"])]
        if "sort" in p:
            field = "updated_at" if p["sort"] == "updated" else "created_at"
            items.sort(key=lambda c: (getattr(c, field), c.id),
                       reverse=p.get("direction", "desc") == "desc")
        else:
            items.sort(key=lambda c: c.id)
        status, chunk, headers = self._page(request, items,
                                            f"/repositories/{repo.id}/issues/comments")
        return status, [self._comment_json(request, c) for c in chunk], headers

    def _create_comment(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        issue = self.state.issue(repo, int(m.group(3)))
        comment = self.state.add_comment(repo, user, issue, _json(request).get("body"))
        return self._comment_json(request, comment)

    def _get_comment(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        return self._comment_json(request, self.state.comment(repo, int(m.group(3))))

    def _edit_comment(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        comment = self.state.comment(repo, int(m.group(3)))
        self.state.edit_comment(repo, user, comment, _json(request).get("body"))
        return 200, self._comment_json(request, comment), {}

    def _delete_comment(self, _r: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        self.state.delete_comment(repo, user, self.state.comment(repo, int(m.group(3))))
        return 204, None, {}

    def _add_labels(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        issue = self.state.issue(repo, int(m.group(3)))
        body = _json(request)
        names = body.get("labels") if isinstance(body, dict) else body
        wanted = issue.labels + [n for n in (names or []) if n not in issue.labels]
        self.state.update_issue(repo, user, issue, {"labels": wanted})
        return 200, [self._label_json(request, repo, n) for n in issue.labels], {}

    def _repo_labels(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        status, chunk, headers = self._page(request, sorted(repo.labels),
                                            f"/repositories/{repo.id}/labels")
        return status, [self._label_json(request, repo, n) for n in chunk], headers

    def _create_label(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        label = self.state.save_label(repo, user, _json(request))
        return self._label_json(request, repo, label.name)

    def _get_label(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        return self._label_json(request, repo, self.state.label(repo, unquote(m.group(3))).name)

    def _update_label(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        old = self.state.label(repo, unquote(m.group(3)))
        label = self.state.save_label(repo, user, _json(request), old)
        return 200, self._label_json(request, repo, label.name), {}

    def _delete_label(self, _r: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        self.state.delete_label(repo, user, self.state.label(repo, unquote(m.group(3))))
        return 204, None, {}

    def _assignees(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        """Who can be assigned: the owner and the collaborators."""
        repo = self._repo_of(user, m)
        logins = sorted({repo.owner, *repo.permissions})
        status, chunk, headers = self._page(request, logins,
                                            f"/repositories/{repo.id}/assignees")
        return status, [self._user_json(request, login) for login in chunk], headers

    def _lock(self, request: httpx.Request, user: GhUser, m: re.Match[str]) -> Any:
        repo = self._repo_of(user, m)
        issue = self.state.issue(repo, int(m.group(3)))
        self.state.set_locked(repo, user, issue, request.method == "PUT")
        return 204, None, {}

    def _search(self, request: httpx.Request, user: GhUser, _m: re.Match[str]) -> Any:
        query = request.url.params.get("q", "")
        terms = re.findall(r'"([^"]*)"|(\S+)', query)
        words: list[str] = []
        repo: GhRepo | None = None
        kind: str | None = None
        author: str | None = None
        for quoted, bare in terms:
            if bare.startswith("repo:"):
                owner, _, name = bare[5:].partition("/")
                repo = self.state.repo_for(owner, name, user)
            elif bare in ("is:issue", "type:issue"):
                kind = "issue"
            elif bare in ("is:pr", "type:pr"):
                kind = "pr"
            elif bare.startswith("author:"):
                author = bare[7:]
            elif bare.startswith("in:"):
                continue
            else:
                words.append((quoted or bare).lower())
        if repo is None:
            raise GitHubError(422, "Validation Failed", [
                {"resource": "Search", "field": "q", "code": "invalid",
                 "message": "The listed users and repositories cannot be searched"}])
        found = [i for i in self.state.issues.values() if i.repo_id == repo.id
                 and self.state.searchable(i)
                 and (kind is None or (kind == "pr") == i.is_pull_request)
                 and (author is None or i.author == author)
                 and all(w in f"{i.title}\n{i.body or ''}".lower() for w in words)]
        found.sort(key=lambda i: i.id, reverse=True)
        status, chunk, headers = self._page(request, found, "/search/issues")
        return status, {"total_count": len(found), "incomplete_results": False,
                        "search_type": "lexical",
                        "items": [{**self._issue_json(request, i), "score": 1.0}
                                  for i in chunk]}, headers


def _json(request: httpx.Request) -> dict[str, Any]:
    if not request.content:
        return {}
    try:
        body = json.loads(request.content)
    except ValueError:
        raise GitHubError(400, "Problems parsing JSON") from None
    if not isinstance(body, dict):
        raise GitHubError(400, "Problems parsing JSON")
    return body


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GitHubError(422, "Validation Failed", [
            {"resource": "Issue", "code": "invalid", "field": "since"}]) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
