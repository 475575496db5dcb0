"""A stateful, thread-safe Redmine 5.0.4 simulator: ``handler(httpx.Request) -> httpx.Response``.

Use it with ``httpx.MockTransport(sim.handle)`` or serve it with ``connectors.loopback``.
It behaves like a real instance started by tests/servers/redmine-start.sh (login required,
REST enabled): bad or missing key -> 401 with an empty body; unknown issue -> 404 empty;
unknown route -> 404 HTML page; writes 201 (create) / 204 (update); 422 ``{"errors": []}``.
The rules live in rules.py, the JSON shapes in render.py, the data in state.py.

Test hooks: ``sim.faults.add(status=503, times=2)`` (also ``timeout=True``, ``delay=``,
``after=True`` to fail the response of a request that was processed, ``action=`` to run
something first, e.g. change data between two page requests), ``sim.requests`` (the
request log) and setup helpers that bypass HTTP (``add_project``, ``add_user``,
``add_member``, ``add_issue``, ``add_note``).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from connectors.redmine.sim import data as D
from connectors.redmine.sim import render as R
from connectors.redmine.sim.rules import create_issue, query_issues, update_issue, update_journal
from connectors.redmine.sim.state import (
    SimClock,
    SimHTTPError,
    SimIssue,
    SimJournal,
    SimMember,
    SimProject,
    SimRole,
    SimState,
    SimUser,
    crlf,
)
from connectors.simfaults import Faults, SimRequest

Route = Callable[[httpx.Request, SimUser, "re.Match[str]"], httpx.Response]


class RedmineSimulator:
    def __init__(self, *, clock: SimClock | None = None, admin_key: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.clock = clock or SimClock()
        self.admin_key = admin_key or secrets.token_hex(20)
        self.state = SimState(self.clock, self.admin_key)
        self.faults = Faults()
        self.requests: list[SimRequest] = []
        self.sleep = sleep
        self._routes: list[tuple[str, re.Pattern[str], Route]] = [
            ("GET", re.compile(r"/users/current\.json"), self._current_user),
            ("GET", re.compile(r"/users\.json"), self._list_users),
            ("POST", re.compile(r"/users\.json"), self._create_user),
            ("GET", re.compile(r"/projects\.json"), self._list_projects),
            ("POST", re.compile(r"/projects\.json"), self._create_project),
            ("GET", re.compile(r"/projects/([^/]+)\.json"), self._get_project),
            ("GET", re.compile(r"/projects/([^/]+)/memberships\.json"), self._list_members),
            ("POST", re.compile(r"/projects/([^/]+)/memberships\.json"), self._add_member),
            ("PUT", re.compile(r"/memberships/(\d+)\.json"), self._update_member),
            ("DELETE", re.compile(r"/memberships/(\d+)\.json"), self._delete_member),
            ("GET", re.compile(r"/roles\.json"), self._list_roles),
            ("GET", re.compile(r"/roles/(\d+)\.json"), self._get_role),
            ("GET", re.compile(r"/issue_statuses\.json"), self._statuses),
            ("GET", re.compile(r"/trackers\.json"), self._trackers),
            ("GET", re.compile(r"/enumerations/issue_priorities\.json"), self._priorities),
            ("GET", re.compile(r"/issues\.json"), self._list_issues),
            ("POST", re.compile(r"/issues\.json"), self._create_issue),
            ("GET", re.compile(r"/issues/(\d+)\.json"), self._get_issue),
            ("PUT", re.compile(r"/issues/(\d+)\.json"), self._update_issue),
            ("DELETE", re.compile(r"/issues/(\d+)\.json"), self._delete_issue),
            ("PUT", re.compile(r"/journals/(\d+)\.json"), self._update_journal),
            ("POST", re.compile(r"/uploads\.json"), self._upload),
            ("GET", re.compile(r"/attachments/(\d+)\.json"), self._get_attachment),
            ("GET", re.compile(r"/attachments/download/(\d+)(?:/[^/]*)?"), self._download),
        ]

    # -- entry point ----------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        user: SimUser | None = None

        def dispatch() -> httpx.Response:
            nonlocal user
            with self.state.lock:
                try:
                    route, match = self._route(request)
                    user = self._authenticate(request)
                    return route(request, user, match)
                except SimHTTPError as exc:
                    return (R.html_404() if exc.html else R.json_response(exc.status, {
                        "errors": exc.errors}) if exc.errors is not None else R.empty(exc.status))

        try:
            response, _fault = self.faults.apply(request, dispatch, self.sleep)
        except httpx.ReadTimeout:
            self._log(request, None, None)
            raise
        return self._log(request, response, user)

    def _log(self, request: httpx.Request, response: httpx.Response | None,
             user: SimUser | None) -> httpx.Response:
        query = {k: v for k, v in request.url.params.items() if k != "key"}
        entry = SimRequest(request.method, request.url.path, query, request.content,
                           response.status_code if response is not None else None,
                           user.login if user else None)
        with self.state.lock:
            self.requests.append(entry)
        return response if response is not None else R.empty(599)

    def _route(self, request: httpx.Request) -> tuple[Route, re.Match[str]]:
        path = request.url.path
        for method, pattern, route in self._routes:
            match = pattern.fullmatch(path)
            if match is not None and method == request.method:
                return route, match
        raise SimHTTPError(404, html=True)

    def _authenticate(self, request: httpx.Request) -> SimUser:
        st = self.state
        user = st.user_by_key(request.headers.get("X-Redmine-API-Key", "")) or st.user_by_key(
            request.url.params.get("key", ""))
        auth = request.headers.get("Authorization", "")
        if user is None and auth.lower().startswith("basic "):
            try:
                login, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                login, password = "", ""
            user = st.user_by_key(login)
            candidate = st.user_by_login(login)
            if user is None and candidate and password and candidate.password == password:
                user = candidate
        if user is None or user.status != 1:
            raise SimHTTPError(401)
        switch = request.headers.get("X-Redmine-Switch-User")
        if switch and user.admin:
            other = st.user_by_login(switch)
            if other is None or other.status != 1:
                raise SimHTTPError(412)
            user = other
        return user

    @staticmethod
    def _body(request: httpx.Request, key: str) -> dict[str, Any]:
        if not request.content:
            return {}
        try:
            payload = json.loads(request.content)
        except (ValueError, UnicodeDecodeError):
            raise SimHTTPError(400) from None
        inner = payload.get(key) if isinstance(payload, dict) else None
        return inner if isinstance(inner, dict) else {}

    @staticmethod
    def _base(request: httpx.Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"

    @staticmethod
    def _paged(items: list[Any], request: httpx.Request) -> tuple[list[Any], int, int]:
        params = request.url.params
        try:
            limit = int(params.get("limit", "25"))
        except ValueError:
            limit = 25
        limit = 25 if limit < 1 else min(limit, 100)
        try:
            offset = max(int(params.get("offset", "0")), 0)
        except ValueError:
            offset = 0
        return items[offset: offset + limit], offset, limit

    # -- users, projects, roles ----------------------------------------------------------------
    def _current_user(self, req: httpx.Request, me: SimUser, _: re.Match[str]) -> httpx.Response:
        include = req.url.params.get("include", "").split(",")
        return R.json_response(200, {"user": R.user(self.state, me, me,
                                                    memberships="memberships" in include)})

    def _list_users(self, req: httpx.Request, me: SimUser, _: re.Match[str]) -> httpx.Response:
        if not me.admin:
            raise SimHTTPError(403)
        users = sorted(self.state.users.values(), key=lambda u: u.id)
        page, offset, limit = self._paged(users, req)
        return R.json_response(200, {"users": [R.user(self.state, u, me, listing=True)
                                               for u in page],
                                     "total_count": len(users), "offset": offset, "limit": limit})

    def _create_user(self, req: httpx.Request, me: SimUser, _: re.Match[str]) -> httpx.Response:
        if not me.admin:
            raise SimHTTPError(403)
        body = self._body(req, "user")
        errors = [f"{label} cannot be blank" for key, label in (
            ("login", "Login"), ("firstname", "First name"), ("lastname", "Last name"),
            ("mail", "Email")) if not str(body.get(key) or "").strip()]
        if self.state.user_by_login(str(body.get("login"))):
            errors.append("Login has already been taken")
        if len(str(body.get("password") or "")) < 8:
            errors.append("Password is too short (minimum is 8 characters)")
        if errors:
            raise SimHTTPError(422, errors)
        user = self.add_user(str(body["login"]), firstname=str(body["firstname"]),
                             lastname=str(body["lastname"]), mail=str(body["mail"]),
                             admin=bool(body.get("admin")), password=str(body["password"]))
        return R.json_response(201, {"user": R.user(self.state, user, me)})

    def _list_projects(self, req: httpx.Request, me: SimUser, _: re.Match[str]) -> httpx.Response:
        projects = [p for p in sorted(self.state.projects.values(), key=lambda p: p.id)
                    if self.state.project_visible(me, p)]
        page, offset, limit = self._paged(projects, req)
        return R.json_response(200, {"projects": [R.project(p, single=False) for p in page],
                                     "total_count": len(projects), "offset": offset,
                                     "limit": limit})

    def _create_project(self, req: httpx.Request, me: SimUser, _: re.Match[str]) -> httpx.Response:
        if not me.admin:
            raise SimHTTPError(403)
        body = self._body(req, "project")
        identifier = str(body.get("identifier") or "")
        errors = [] if str(body.get("name") or "").strip() else ["Name cannot be blank"]
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,99}", identifier):
            errors.append("Identifier is invalid")
        elif any(p.identifier == identifier for p in self.state.projects.values()):
            errors.append("Identifier has already been taken")
        if errors:
            raise SimHTTPError(422, errors)
        project = self.add_project(identifier, name=str(body["name"]),
                                   public=body.get("is_public", True) not in (False, "0", "false"))
        trackers = body.get("tracker_ids")
        if isinstance(trackers, list) and trackers:
            project.tracker_ids = tuple(int(t) for t in trackers if str(t).isdigit())
        return R.json_response(201, {"project": R.project(project)})

    def _visible_project(self, me: SimUser, ref: str) -> SimProject:
        project = self.state.project_by_ref(ref)
        if not self.state.project_visible(me, project):
            raise SimHTTPError(403)
        return project

    def _get_project(self, req: httpx.Request, me: SimUser, m: re.Match[str]) -> httpx.Response:
        return R.json_response(200, {"project": R.project(self._visible_project(me, m.group(1)))})

    def _list_members(self, req: httpx.Request, me: SimUser, m: re.Match[str]) -> httpx.Response:
        project = self._visible_project(me, m.group(1))
        members = [x for x in sorted(self.state.members.values(), key=lambda x: x.id)
                   if x.project_id == project.id]
        page, offset, limit = self._paged(members, req)
        return R.json_response(200, {"memberships": [R.membership(self.state, x) for x in page],
                                     "total_count": len(members), "offset": offset,
                                     "limit": limit})

    def _add_member(self, req: httpx.Request, me: SimUser, m: re.Match[str]) -> httpx.Response:
        project = self._visible_project(me, m.group(1))
        if not self.state.allowed(me, "manage_members", project):
            raise SimHTTPError(403)
        body = self._body(req, "membership")
        user = self.state.users.get(int(body.get("user_id") or 0))
        role_ids = [int(r) for r in body.get("role_ids") or [] if int(r) in self.state.roles
                    and not self.state.roles[int(r)].builtin]
        if user is None:
            raise SimHTTPError(422, ["Principal cannot be blank"])
        if not role_ids:
            raise SimHTTPError(422, ["Role cannot be empty"])
        if self.state.membership(user, project) is not None:
            raise SimHTTPError(422, ["User has already been taken"])
        member = self.add_member(project, user, role_ids)
        return R.json_response(201, {"membership": R.membership(self.state, member)})

    def _member(self, me: SimUser, member_id: str) -> SimMember:
        member = self.state.members.get(int(member_id))
        if member is None:
            raise SimHTTPError(404)
        if not self.state.allowed(me, "manage_members", self.state.projects[member.project_id]):
            raise SimHTTPError(403)
        return member

    def _update_member(self, req: httpx.Request, me: SimUser, m: re.Match[str]) -> httpx.Response:
        member = self._member(me, m.group(1))
        role_ids = [int(r) for r in self._body(req, "membership").get("role_ids") or []]
        if not role_ids or any(r not in self.state.roles for r in role_ids):
            raise SimHTTPError(422, ["Role cannot be empty"])
        member.role_ids = role_ids
        return R.empty(204)

    def _delete_member(self, req: httpx.Request, me: SimUser, m: re.Match[str]) -> httpx.Response:
        del self.state.members[self._member(me, m.group(1)).id]
        return R.empty(204)

    def _list_roles(self, req: httpx.Request, me: SimUser, _: re.Match[str]) -> httpx.Response:
        return R.json_response(200, {"roles": [R.ref(r.id, r.name) for r in sorted(
            self.state.roles.values(), key=lambda r: r.id) if not r.builtin]})

    def _get_role(self, req: httpx.Request, me: SimUser, m: re.Match[str]) -> httpx.Response:
        role = self.state.roles.get(int(m.group(1)))
        if role is None:
            raise SimHTTPError(404)
        return R.json_response(200, {"role": R.role(role)})

    def _statuses(self, req: httpx.Request, me: SimUser, _: re.Match[str]) -> httpx.Response:
        return R.json_response(200, {"issue_statuses": [
            {"id": s[0], "name": s[1], "is_closed": s[2]} for s in D.STATUSES]})

    def _trackers(self, req: httpx.Request, me: SimUser, _: re.Match[str]) -> httpx.Response:
        default = R.ref(D.DEFAULT_STATUS, self.state.statuses[D.DEFAULT_STATUS][1])
        return R.json_response(200, {"trackers": [
            {"id": t[0], "name": t[1], "default_status": default, "description": None,
             "enabled_standard_fields": list(D.TRACKER_FIELDS)} for t in D.TRACKERS]})

    def _priorities(self, req: httpx.Request, me: SimUser, _: re.Match[str]) -> httpx.Response:
        return R.json_response(200, {"issue_priorities": [
            {"id": p[0], "name": p[1], "is_default": p[2], "active": True}
            for p in D.PRIORITIES]})

    # -- issues, journals, attachments ----------------------------------------------------------
    def _list_issues(self, req: httpx.Request, me: SimUser, _: re.Match[str]) -> httpx.Response:
        page, total, offset, limit = query_issues(self.state, me, dict(req.url.params.items()))
        base = self._base(req)
        return R.json_response(200, {"issues": [R.issue(self.state, i, me, base=base)
                                                for i in page],
                                     "total_count": total, "offset": offset, "limit": limit})

    def _create_issue(self, req: httpx.Request, me: SimUser, _: re.Match[str]) -> httpx.Response:
        issue = create_issue(self.state, me, self._body(req, "issue"))
        return R.json_response(201, {"issue": R.issue(self.state, issue, me,
                                                      base=self._base(req))})

    def _get_issue(self, req: httpx.Request, me: SimUser, m: re.Match[str]) -> httpx.Response:
        issue = self.state.visible_issue(me, int(m.group(1)))
        include = frozenset(req.url.params.get("include", "").split(","))
        return R.json_response(200, {"issue": R.issue(self.state, issue, me, base=self._base(req),
                                                      single=True, include=include)})

    def _update_issue(self, req: httpx.Request, me: SimUser, m: re.Match[str]) -> httpx.Response:
        issue = self.state.visible_issue(me, int(m.group(1)))
        update_issue(self.state, me, issue, self._body(req, "issue"))
        return R.empty(204)

    def _delete_issue(self, req: httpx.Request, me: SimUser, m: re.Match[str]) -> httpx.Response:
        issue = self.state.visible_issue(me, int(m.group(1)))
        if not self.state.allowed(me, "delete_issues", self.state.projects[issue.project_id]):
            raise SimHTTPError(403)
        self.delete_issue(issue.id)
        return R.empty(204)

    def _update_journal(self, req: httpx.Request, me: SimUser, m: re.Match[str]) -> httpx.Response:
        journal = self.state.journals.get(int(m.group(1)))
        if journal is None:
            raise SimHTTPError(404)
        update_journal(self.state, me, journal, self._body(req, "journal"))
        return R.empty(204)

    def _upload(self, req: httpx.Request, me: SimUser, _: re.Match[str]) -> httpx.Response:
        kind = req.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/octet-stream":
            raise SimHTTPError(406)  # 5.0.4 answers 406 (not 400) with an empty body
        att = self.state.upload(me, req.url.params.get("filename", ""), req.content)
        return R.json_response(201, {"upload": {"id": att.id, "token": att.token}})

    def _attachment(self, me: SimUser, att_id: str) -> Any:
        att = self.state.attachments.get(int(att_id))
        if att is None:
            raise SimHTTPError(404)
        if att.container_id is None:
            if att.author_id != me.id:
                raise SimHTTPError(404)
        else:
            self.state.visible_issue(me, att.container_id)
        return att

    def _get_attachment(self, req: httpx.Request, me: SimUser, m: re.Match[str]) -> httpx.Response:
        att = self._attachment(me, m.group(1))
        return R.json_response(200, {"attachment": R.attachment(self.state, att,
                                                                self._base(req))})

    def _download(self, req: httpx.Request, me: SimUser, m: re.Match[str]) -> httpx.Response:
        att = self._attachment(me, m.group(1))
        return httpx.Response(200, content=att.data, headers={"Content-Type": att.content_type})

    # -- setup helpers (no HTTP) -------------------------------------------------------------
    @property
    def admin(self) -> SimUser:
        return self.state.users[1]

    def add_user(self, login: str, *, admin: bool = False, firstname: str | None = None,
                 lastname: str = "User", mail: str | None = None, password: str = "",
                 drop_private_notes: bool = False) -> SimUser:
        with self.state.lock:
            user = SimUser(self.state.next_id(self.state.users, floor=4), login,
                           firstname or login.capitalize(), lastname,
                           mail or f"{login}@example.net", admin, secrets.token_hex(20),
                           self.clock.now(), password=password,
                           drop_private_notes=drop_private_notes)
            self.state.users[user.id] = user
            return user

    def add_role(self, name: str, permissions: tuple[str, ...] | list[str]) -> SimRole:
        """A custom role (the real API cannot create one; the admin UI can)."""
        with self.state.lock:
            role = SimRole(self.state.next_id(self.state.roles), name, tuple(permissions))
            self.state.roles[role.id] = role
            return role

    def add_project(self, identifier: str, *, name: str | None = None,
                    public: bool = True) -> SimProject:
        with self.state.lock:
            now = self.clock.now()
            project = SimProject(self.state.next_id(self.state.projects), identifier,
                                 name or identifier, public, now, now)
            self.state.projects[project.id] = project
            return project

    def add_member(self, project: SimProject, user: SimUser,
                   roles: list[int] | tuple[str, ...] = ("Developer",)) -> SimMember:
        by_name = {r.name: r.id for r in self.state.roles.values()}
        role_ids = [r if isinstance(r, int) else by_name[r] for r in roles]
        with self.state.lock:
            member = SimMember(self.state.next_id(self.state.members), project.id, user.id,
                               role_ids)
            self.state.members[member.id] = member
            return member

    def add_issue(self, project: SimProject, subject: str, *, description: str | None = None,
                  author: SimUser | None = None, status_id: int = D.DEFAULT_STATUS,
                  at: datetime | None = None) -> SimIssue:
        with self.state.lock:
            now = at or self.clock.now()
            issue = SimIssue(self.state.next_id(self.state.issues), project.id,
                             project.tracker_ids[0], status_id, D.DEFAULT_PRIORITY,
                             (author or self.admin).id, subject,
                             None if description is None else crlf(description), now.date(),
                             now, now)
            self.state.issues[issue.id] = issue
            return issue

    def add_note(self, issue_id: int, notes: str, *, user: SimUser | None = None,
                 private: bool = False, details: list[dict[str, Any]] | None = None) -> SimJournal:
        with self.state.lock:
            now = self.clock.now()
            journal = SimJournal(self.state.next_id(self.state.journals), issue_id,
                                 (user or self.admin).id, notes, private, now, details or [])
            self.state.journals[journal.id] = journal
            self.state.issues[issue_id].updated_on = now
            return journal

    def touch(self, issue_id: int) -> None:
        with self.state.lock:
            self.state.issues[issue_id].updated_on = self.clock.now()

    def delete_issue(self, issue_id: int) -> None:
        with self.state.lock:
            self.state.issues.pop(issue_id, None)
            for jid in [j.id for j in self.state.journals.values() if j.issue_id == issue_id]:
                del self.state.journals[jid]
            for aid in [a.id for a in self.state.attachments.values()
                        if a.container_id == issue_id]:
                del self.state.attachments[aid]
