"""A stateful GitLab REST v4 simulator: ``handle(httpx.Request) -> httpx.Response``.

Serve it with ``httpx.MockTransport(sim.handle)`` or ``connectors.loopback``. Answers as
GitLab does (trackers.md §2, gitlabhq ``doc/api/*.md``):

* Paths under ``/api/v4``; a project is named by id or by its URL-encoded path
  (``acme%2Fapp``). ``PRIVATE-TOKEN: <t>`` or ``Authorization: Bearer <t>``; a bad token
  -> 401 ``{"message": "401 Unauthorized"}``; a private project the user is no member
  of -> 404 ``{"message": "404 Project Not Found"}``.
* Every answer carries ``RateLimit-Limit/Observed/Remaining/Reset/ResetTime``
  (``requests_per_minute`` per user, 2,000 as on GitLab.com). Over it, or over the note
  creation limit (``notes_per_minute``, 60) or the issue creation limit
  (``issues_per_minute``, 200) -> 429 ``Retry later`` with ``Retry-After``.
* Listings page by ``page``/``per_page`` (default 20, at most 100) with ``x-page``,
  ``x-per-page``, ``x-next-page``, ``x-prev-page``, ``link`` and, up to ``count_limit``
  items (10,000), ``x-total``/``x-total-pages`` and ``rel="last"``; over it those are
  left out, as GitLab does for large lists.

Test hooks: ``faults`` (connectors.simfaults), ``requests`` (the log), ``state`` (data),
setup helpers ``add_user``, ``add_project``, ``grant``, ``add_issue``, ``add_note``,
``set_state``.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import json
import re
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlencode

import httpx

from connectors.gitlab.sim.state import (
    REPORTER,
    GitLabError,
    GitLabState,
    GlIssue,
    GlNote,
    GlProject,
    GlUser,
    NotesFlag,
    SimClock,
    not_found,
)
from connectors.simfaults import Faults, SimRequest

PREFIX = "/api/v4"
Route = Callable[[httpx.Request, GlUser, "re.Match[str]"], Any]
_WRITES = ("POST", "PUT", "DELETE")


def _error_body(status: int) -> tuple[bytes, str | None]:
    if status == 429:
        return b"Retry later\n", "text/plain"
    messages = {400: "400 Bad request", 401: "401 Unauthorized", 403: "403 Forbidden",
                404: "404 Not Found", 409: "409 Conflict", 422: "422 Unprocessable Entity"}
    body = {"message": messages.get(status, "500 Internal Server Error")}
    return json.dumps(body).encode(), "application/json"


class GitLabSimulator:
    def __init__(self, *, clock: SimClock | None = None, requests_per_minute: int = 2_000,
                 notes_per_minute: int = 60, issues_per_minute: int = 200,
                 count_limit: int = 10_000, notes_flag: NotesFlag = "internal",
                 web_url: str = "https://gitlab.com",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.clock = clock or SimClock()
        self.state = GitLabState(self.clock, notes_flag)
        self.faults = Faults(_error_body)
        self.requests: list[SimRequest] = []
        self.sleep = sleep
        self.web_url = web_url
        self.requests_per_minute = requests_per_minute
        self.limits = {"notes": notes_per_minute, "issues": issues_per_minute}
        self.count_limit = count_limit
        self._used: dict[str, deque[float]] = {}
        self._creates: dict[tuple[str, str], deque[float]] = {}
        project = r"/projects/([^/]+)"
        issue = project + r"/issues/(\d+)"
        self._routes: list[tuple[str, re.Pattern[str], Route]] = []
        for method, pattern, route in (
            ("GET", r"/user", self._me),
            ("GET", r"/users", self._users),
            ("GET", r"/users/(\d+)", self._user),
            ("GET", project, self._project),
            ("GET", project + r"/members/all", self._members),
            ("GET", project + r"/labels", self._labels),
            ("GET", project + r"/issues", self._list_issues),
            ("POST", project + r"/issues", self._create_issue),
            ("GET", issue, self._get_issue),
            ("PUT", issue, self._update_issue),
            ("GET", issue + r"/notes", self._list_notes),
            ("POST", issue + r"/notes", self._create_note),
            ("GET", issue + r"/notes/(\d+)", self._get_note),
            ("PUT", issue + r"/notes/(\d+)", self._edit_note),
            ("DELETE", issue + r"/notes/(\d+)", self._delete_note),
            ("POST", project + r"/uploads", self._upload),
        ):
            self._routes.append((method, re.compile(pattern + r"/?"), route))

    # -- setup, bypassing HTTP --------------------------------------------------------------
    def add_user(self, username: str, token: str | None = None, *, bot: bool = False,
                 name: str | None = None) -> GlUser:
        with self.state.lock:
            return self.state.add_user(username, token, bot=bot, name=name)

    def add_project(self, path: str, *, visibility: str = "private") -> GlProject:
        with self.state.lock:
            return self.state.add_project(path, visibility=visibility)

    def grant(self, project: GlProject, username: str, level: int) -> None:
        with self.state.lock:
            if level:
                project.members[username] = level
            else:
                project.members.pop(username, None)

    def add_issue(self, project: GlProject, username: str, title: str,
                  description: str | None = None, *, labels: list[str] | None = None
                  ) -> GlIssue:
        with self.state.lock:
            return self.state.create_issue(project, self.state.users[username], title,
                                           description, labels)

    def add_note(self, project: GlProject, username: str, iid: int, body: str, *,
                 internal: bool = False) -> GlNote:
        with self.state.lock:
            issue = self.state.issue(project, iid)
            return self.state.add_note(project, self.state.users[username], issue, body,
                                       internal=internal)

    def set_state(self, project: GlProject, username: str, iid: int, state: str) -> GlIssue:
        with self.state.lock:
            issue = self.state.issue(project, iid)
            return self.state.update_issue(project, self.state.users[username], issue, {
                "state_event": "close" if state == "closed" else "reopen"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- entry point ------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        user: GlUser | None = None

        def dispatch() -> httpx.Response:
            nonlocal user
            with self.state.lock:
                try:
                    user = self._authenticate(request)
                    limited = self._rate_limits(request, user)
                    if limited is not None:
                        return limited
                    route, match = self._route(request)
                    status, payload, extra = self._call(route, request, user, match)
                    return self._answer(status, payload, {**extra, **self._limit_headers(user)})
                except GitLabError as exc:
                    headers = {**exc.headers, **(self._limit_headers(user) if user else {})}
                    return self._answer(exc.status, {exc.key: exc.message}, headers)

        try:
            response, _fault = self.faults.apply(request, dispatch, self.sleep)
        except httpx.ReadTimeout:
            self._log(request, None, user)
            raise
        return self._log(request, response, user)

    def _log(self, request: httpx.Request, response: httpx.Response | None,
             user: GlUser | None) -> httpx.Response:
        entry = SimRequest(request.method, request.url.path, dict(request.url.params.items()),
                           request.content, response.status_code if response else None,
                           user.username if user else None)
        with self.state.lock:
            self.requests.append(entry)
        return response if response is not None else httpx.Response(599)

    @staticmethod
    def _answer(status: int, payload: Any, headers: dict[str, str]) -> httpx.Response:
        if status == 204:
            return httpx.Response(204, headers=headers)
        return httpx.Response(status, content=json.dumps(payload).encode(), headers={
            "Content-Type": "application/json", **headers})

    def _authenticate(self, request: httpx.Request) -> GlUser:
        token = request.headers.get("private-token", "").strip()
        if not token:
            scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
            token = bearer.strip() if scheme.lower() == "bearer" else ""
        user = self.state.user_by_token(token) if token else None
        if user is None:
            raise GitLabError(401, "401 Unauthorized")
        return user

    def _route(self, request: httpx.Request) -> tuple[Route, re.Match[str]]:
        # The raw path: a project path is one URL-encoded segment (acme%2Fapp).
        path = request.url.raw_path.decode().partition("?")[0]
        if not path.startswith(PREFIX + "/"):
            raise not_found()
        path = path[len(PREFIX):]
        for method, pattern, route in self._routes:
            match = pattern.fullmatch(path)
            if match is not None and method == request.method:
                return route, match
        raise GitLabError(404, "404 Not Found", key="error")

    def _call(self, route: Route, request: httpx.Request, user: GlUser,
              match: re.Match[str]) -> tuple[int, Any, dict[str, str]]:
        result = route(request, user, match)
        if isinstance(result, tuple):
            return result
        return (201 if request.method == "POST" else 200), result, {}

    # -- rate limits --------------------------------------------------------------------------
    def _rate_limits(self, request: httpx.Request, user: GlUser) -> httpx.Response | None:
        now = self.clock.current.timestamp()
        used = self._used.setdefault(user.username, deque())
        while used and used[0] <= now - 60:
            used.popleft()
        if len(used) >= self.requests_per_minute:
            return self._throttled(used[0] + 60 - now, user)
        kind = self._create_kind(request)
        if kind is not None:
            made = self._creates.setdefault((user.username, kind), deque())
            while made and made[0] <= now - 60:
                made.popleft()
            if len(made) >= self.limits[kind]:
                return self._throttled(made[0] + 60 - now, user)
            made.append(now)
        used.append(now)
        return None

    @staticmethod
    def _create_kind(request: httpx.Request) -> str | None:
        if request.method != "POST":
            return None
        path = request.url.raw_path.decode().partition("?")[0].rstrip("/")
        if re.search(r"/issues/\d+/notes$", path):
            return "notes"
        if path.endswith("/issues"):
            return "issues"
        return None

    def _throttled(self, wait: float, user: GlUser) -> httpx.Response:
        headers = {**self._limit_headers(user), "Retry-After": str(max(1, int(wait) + 1)),
                   "Content-Type": "text/plain"}
        return httpx.Response(429, content=b"Retry later\n", headers=headers)

    def _limit_headers(self, user: GlUser | None) -> dict[str, str]:
        if user is None:
            return {}
        used = self._used.get(user.username, deque())
        now = self.clock.current.timestamp()
        reset = int((used[0] if used else now) + 60)
        return {"RateLimit-Name": "throttle_authenticated_api",
                "RateLimit-Limit": str(self.requests_per_minute),
                "RateLimit-Observed": str(len(used)),
                "RateLimit-Remaining": str(max(0, self.requests_per_minute - len(used))),
                "RateLimit-Reset": str(reset),
                "RateLimit-ResetTime": email.utils.formatdate(reset, usegmt=True)}

    # -- rendering ----------------------------------------------------------------------------
    def _user_json(self, username: str) -> dict[str, Any]:
        user = self.state.users.get(username)
        uid = user.id if user else 0
        return {"id": uid, "username": username, "name": user.name if user else username,
                "state": "active", "locked": False,
                "avatar_url": f"https://secure.gravatar.com/avatar/{uid}?s=80&d=identicon",
                "web_url": f"{self.web_url}/{username}"}

    def _issue_json(self, issue: GlIssue) -> dict[str, Any]:
        project = self.state.projects[issue.project_id]
        web = f"{self.web_url}/{project.path}/-/issues/{issue.iid}"
        assignees = [self._user_json(a) for a in issue.assignees]
        notes = sum(1 for n in self.state.notes.values()
                    if n.project_id == project.id and n.iid == issue.iid and not n.system)
        api = f"{self.web_url}{PREFIX}/projects/{project.id}"
        return {
            "id": issue.id, "iid": issue.iid, "project_id": project.id, "title": issue.title,
            "description": issue.description, "state": issue.state,
            "created_at": _time(issue.created_at), "updated_at": _time(issue.updated_at),
            "closed_at": _time(issue.closed_at) if issue.closed_at else None,
            "closed_by": None, "labels": list(issue.labels), "milestone": None,
            "assignees": assignees, "assignee": assignees[0] if assignees else None,
            "author": self._user_json(issue.author), "type": "ISSUE", "issue_type": "issue",
            "user_notes_count": notes, "merge_requests_count": 0, "upvotes": 0,
            "downvotes": 0, "due_date": None, "confidential": issue.confidential,
            "discussion_locked": None, "web_url": web,
            "time_stats": {"time_estimate": 0, "total_time_spent": 0,
                           "human_time_estimate": None, "human_total_time_spent": None},
            "task_completion_status": {"count": 0, "completed_count": 0},
            "has_tasks": False, "references": {
                "short": f"#{issue.iid}", "relative": f"#{issue.iid}",
                "full": f"{project.path}#{issue.iid}"},
            "severity": "UNKNOWN", "moved_to_id": None, "service_desk_reply_to": None,
            "_links": {"self": f"{api}/issues/{issue.iid}",
                       "notes": f"{api}/issues/{issue.iid}/notes",
                       "award_emoji": f"{api}/issues/{issue.iid}/award_emoji",
                       "project": api, "closed_as_duplicate_of": None}}

    def _note_json(self, note: GlNote) -> dict[str, Any]:
        issue = next(i for i in self.state.issues.values()
                     if i.project_id == note.project_id and i.iid == note.iid)
        out: dict[str, Any] = {
            "id": note.id, "type": None, "body": note.body, "attachment": None,
            "author": self._user_json(note.author), "created_at": _time(note.created_at),
            "updated_at": _time(note.updated_at), "system": note.system,
            "noteable_id": issue.id, "noteable_type": "Issue", "project_id": note.project_id,
            "resolvable": False, "noteable_iid": note.iid, "commands_changes": {},
            "imported": False, "imported_from": "none"}
        if self.state.notes_flag == "internal":
            out |= {"confidential": note.internal, "internal": note.internal}
        elif self.state.notes_flag == "confidential":
            out["confidential"] = note.internal
        return out

    def _project_json(self, project: GlProject, user: GlUser) -> dict[str, Any]:
        level = self.state.level(project, user)
        namespace, _, name = project.path.rpartition("/")
        return {
            "id": project.id, "name": name, "path": name, "path_with_namespace": project.path,
            "name_with_namespace": project.path.replace("/", " / "),
            "description": None, "default_branch": "main", "visibility": project.visibility,
            "web_url": f"{self.web_url}/{project.path}",
            "http_url_to_repo": f"{self.web_url}/{project.path}.git",
            "namespace": {"id": project.id - 1, "name": namespace, "path": namespace,
                          "kind": "group", "full_path": namespace},
            "issues_enabled": project.issues_enabled, "archived": False,
            "created_at": _time(self.clock.current),
            "last_activity_at": _time(self.clock.current),
            "open_issues_count": sum(1 for i in self.state.issues.values()
                                     if i.project_id == project.id and i.state == "opened"),
            "permissions": {"project_access": ({"access_level": level,
                                                "notification_level": 3} if level else None),
                            "group_access": None}}

    # -- paging -------------------------------------------------------------------------------
    def _page(self, request: httpx.Request, items: list[Any],
              ) -> tuple[int, list[Any], dict[str, str]]:
        params = dict(request.url.params.multi_items())
        try:
            per_page = min(100, max(1, int(params.get("per_page", "20"))))
            page = max(1, int(params.get("page", "1")))
        except ValueError:
            raise GitLabError(400, "page is invalid", key="error") from None
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page:page * per_page]
        base = f"{request.url.scheme}://{request.url.netloc.decode()}" \
               f"{request.url.raw_path.decode().partition('?')[0]}"

        def url(n: int) -> str:
            return f"{base}?{urlencode({**params, 'per_page': str(per_page), 'page': str(n)})}"

        counted = len(items) <= self.count_limit
        headers = {"x-page": str(page), "x-per-page": str(per_page),
                   "x-next-page": str(page + 1) if page < last else "",
                   "x-prev-page": str(page - 1) if page > 1 else ""}
        links = []
        if page > 1:
            links.append(f'<{url(page - 1)}>; rel="prev"')
        if page < last:
            links.append(f'<{url(page + 1)}>; rel="next"')
        links.append(f'<{url(1)}>; rel="first"')
        if counted:
            links.append(f'<{url(last)}>; rel="last"')
            headers |= {"x-total": str(len(items)), "x-total-pages": str(last)}
        headers["link"] = ", ".join(links)
        return 200, chunk, headers

    # -- routes -------------------------------------------------------------------------------
    def _project_of(self, user: GlUser, m: re.Match[str]) -> GlProject:
        return self.state.project_for(unquote(m.group(1)), user)

    def _issue_of(self, user: GlUser, m: re.Match[str]) -> tuple[GlProject, GlIssue]:
        project = self._project_of(user, m)
        return project, self.state.issue(project, int(m.group(2)))

    def _me(self, _r: httpx.Request, user: GlUser, _m: re.Match[str]) -> Any:
        stamp = _time(self.clock.current)
        return {**self._user_json(user.username), "bio": "", "location": None,
                "public_email": None, "created_at": stamp, "bot": user.bot,
                "is_admin": False, "two_factor_enabled": False, "external": False}

    def _users(self, request: httpx.Request, _u: GlUser, _m: re.Match[str]) -> Any:
        wanted = request.url.params.get("username")
        found = [u.username for u in self.state.users.values()
                 if wanted is None or u.username.lower() == wanted.lower()]
        status, chunk, headers = self._page(request, sorted(found))
        return status, [self._user_json(u) for u in chunk], headers

    def _user(self, _r: httpx.Request, _u: GlUser, m: re.Match[str]) -> Any:
        user = next((u for u in self.state.users.values() if u.id == int(m.group(1))), None)
        if user is None:
            raise not_found("User Not Found")
        return self._user_json(user.username)

    def _project(self, _r: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        return self._project_json(self._project_of(user, m), user)

    def _members(self, request: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        project = self._project_of(user, m)
        status, chunk, headers = self._page(request, sorted(project.members))
        return status, [{**self._user_json(u), "access_level": project.members[u]}
                        for u in chunk], headers

    def _labels(self, request: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        project = self._project_of(user, m)
        status, chunk, headers = self._page(request, sorted(project.labels))
        return status, [{"id": abs(hash((project.id, n))) % 10**6, "name": n,
                         "color": project.labels[n], "description": None} for n in chunk], \
            headers

    def _list_issues(self, request: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        project = self._project_of(user, m)
        p = request.url.params
        state = p.get("state", "all")
        if state not in ("opened", "closed", "all"):
            raise GitLabError(400, "state does not have a valid value", key="error")
        items = [i for i in self.state.issues.values() if i.project_id == project.id
                 and (state == "all" or i.state == state)]
        for key in ("updated_after", "updated_before", "created_after", "created_before"):
            if key in p:  # both bounds inclusive, as GitLab documents them
                when = _parse_time(p[key], key)
                field, _, side = key.partition("_")
                items = [i for i in items if (getattr(i, f"{field}_at") >= when
                                              if side == "after"
                                              else getattr(i, f"{field}_at") <= when)]
        if "author_id" in p:
            author = next((u.username for u in self.state.users.values()
                           if str(u.id) == p["author_id"]), None)
            items = [i for i in items if i.author == author]
        if "labels" in p:
            wanted = {n.strip().lower() for n in p["labels"].split(",") if n.strip()}
            items = [i for i in items if wanted <= {n.lower() for n in i.labels}]
        iids = p.get_list("iids[]")
        if iids:
            items = [i for i in items if str(i.iid) in iids]
        if "search" in p:
            words = p["search"].lower()
            fields = p.get("in", "title,description").split(",")
            items = [i for i in items if any(
                words in (getattr(i, f, None) or "").lower() for f in fields
                if f in ("title", "description"))]
        order = p.get("order_by", "created_at")
        if order not in ("created_at", "updated_at", "priority", "due_date", "relative_position",
                         "label_priority", "milestone_due", "popularity", "weight", "title"):
            raise GitLabError(400, "order_by does not have a valid value", key="error")
        field = "updated_at" if order == "updated_at" else "created_at"
        items.sort(key=lambda i: (getattr(i, field), i.id), reverse=p.get("sort", "desc") != "asc")
        status, chunk, headers = self._page(request, items)
        return status, [self._issue_json(i) for i in chunk], headers

    def _create_issue(self, request: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        project = self._project_of(user, m)
        body = _body(request)
        issue = self.state.create_issue(project, user, body.get("title"),
                                        body.get("description"), body.get("labels"),
                                        body.get("assignee_ids", body.get("assignee_id")))
        return self._issue_json(issue)

    def _get_issue(self, _r: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        return self._issue_json(self._issue_of(user, m)[1])

    def _update_issue(self, request: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        project, issue = self._issue_of(user, m)
        self.state.update_issue(project, user, issue, _body(request))
        return self._issue_json(issue)

    def _list_notes(self, request: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        _, issue = self._issue_of(user, m)
        p = request.url.params
        field = "updated_at" if p.get("order_by") == "updated_at" else "created_at"
        items = sorted(self.state.notes_of(issue, user), key=lambda n: (getattr(n, field), n.id),
                       reverse=p.get("sort", "desc") != "asc")
        status, chunk, headers = self._page(request, items)
        return status, [self._note_json(n) for n in chunk], headers

    def _create_note(self, request: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        project, issue = self._issue_of(user, m)
        body = _body(request)
        note = self.state.add_note(project, user, issue, body.get("body"),
                                   body.get("internal"), body.get("confidential"))
        return self._note_json(note)

    def _get_note(self, _r: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        _, issue = self._issue_of(user, m)
        return self._note_json(self.state.note(issue, int(m.group(3)), user))

    def _edit_note(self, request: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        project, issue = self._issue_of(user, m)
        note = self.state.note(issue, int(m.group(3)), user)
        self.state.edit_note(project, user, issue, note, _body(request).get("body"))
        return self._note_json(note)

    def _delete_note(self, _r: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        project, issue = self._issue_of(user, m)
        self.state.delete_note(project, user, issue, self.state.note(issue, int(m.group(3)),
                                                                    user))
        return 204, None, {}

    def _upload(self, request: httpx.Request, user: GlUser, m: re.Match[str]) -> Any:
        project = self._project_of(user, m)
        filename, data = _multipart_file(request)
        url, alt = self.state.upload(project, user, filename, data)
        image = filename.lower().endswith((".png", ".jpg", ".jpeg", ".gif", ".webp"))
        return {"id": self.state.next_id(), "alt": alt, "url": url,
                "full_path": f"/-/project/{project.id}{url}",
                "markdown": f"{'!' if image else ''}[{alt}]({url})"}

    def can_read_internal(self, project: GlProject, user: GlUser) -> bool:
        return self.state.level(project, user) >= REPORTER


def _body(request: httpx.Request) -> dict[str, Any]:
    """JSON, or form fields (python-gitlab and curl send either); query parameters too."""
    out: dict[str, Any] = dict(request.url.params.items())
    if not request.content:
        return out
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/x-www-form-urlencoded"):
        form = httpx.QueryParams(request.content.decode())
        for key in form:
            values = form.get_list(key)
            out[key.removesuffix("[]")] = values if key.endswith("[]") else values[-1]
        return out
    try:
        body = json.loads(request.content)
    except ValueError:
        raise GitLabError(400, "400 Bad request - body is not valid JSON") from None
    if not isinstance(body, dict):
        raise GitLabError(400, "400 Bad request")
    return {**out, **body}


def _multipart_file(request: httpx.Request) -> tuple[str, bytes]:
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        raise GitLabError(400, "file is missing", key="error")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {kind}\r\n\r\n".encode() + request.content)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            return str(part.get_filename() or ""), payload if isinstance(payload, bytes) else b""
    raise GitLabError(400, "file is missing", key="error")


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GitLabError(400, f"{name} is invalid", key="error") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
