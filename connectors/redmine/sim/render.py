"""JSON shapes of the simulator's answers, field for field as Redmine 5.0.4 renders them
(``app/views/**/*.api.rsb``; samples in shared/redmine.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from connectors.redmine.sim import data as D
from connectors.redmine.sim.state import (
    SimAttachment,
    SimIssue,
    SimJournal,
    SimMember,
    SimProject,
    SimRole,
    SimState,
    SimUser,
)

NOT_FOUND_HTML = b"""<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8" />
  <title>Redmine 404 error</title>
</head>
<body>
  <h1>Page not found</h1>
  <p>The page you were trying to access doesn't exist or has been removed.</p>
</body>
</html>
"""


def stamp(value: datetime | None) -> str | None:
    """Redmine shows times truncated to whole seconds, in UTC with a Z."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_response(status: int, payload: Any) -> httpx.Response:
    # Rails escapes <, > and & in JSON strings; non-ASCII stays UTF-8.
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return httpx.Response(status, content=text.encode("utf-8"),
                          headers={"Content-Type": "application/json; charset=utf-8"})


def empty(status: int) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="Redmine API"'
    return httpx.Response(status, content=b"", headers=headers)


def html_404() -> httpx.Response:
    return httpx.Response(404, content=NOT_FOUND_HTML,
                          headers={"Content-Type": "text/html; charset=utf-8"})


def ref(obj_id: int, name: str) -> dict[str, Any]:
    return {"id": obj_id, "name": name}


def user_ref(st: SimState, user_id: int) -> dict[str, Any]:
    user = st.users.get(user_id)
    return ref(user_id, user.name if user else "Anonymous")


def status_ref(st: SimState, status_id: int) -> dict[str, Any]:
    sid, name, closed = st.statuses[status_id]
    return {"id": sid, "name": name, "is_closed": closed}


def attachment(st: SimState, att: SimAttachment, base: str) -> dict[str, Any]:
    return {"id": att.id, "filename": att.filename, "filesize": len(att.data),
            "content_type": att.content_type, "description": att.description,
            "content_url": f"{base}/attachments/download/{att.id}/{att.filename}",
            "author": user_ref(st, att.author_id), "created_on": stamp(att.created_on)}


def journal(st: SimState, j: SimJournal) -> dict[str, Any]:
    return {"id": j.id, "user": user_ref(st, j.user_id), "notes": j.notes,
            "created_on": stamp(j.created_on), "private_notes": j.private_notes,
            "details": [dict(d) for d in j.details]}


def issue(st: SimState, i: SimIssue, viewer: SimUser, *, base: str, single: bool = False,
          include: frozenset[str] = frozenset()) -> dict[str, Any]:
    project = st.projects[i.project_id]
    tracker = dict(D.TRACKERS)[i.tracker_id]
    priority = {p[0]: p[1] for p in D.PRIORITIES}[i.priority_id]
    out: dict[str, Any] = {
        "id": i.id, "project": ref(project.id, project.name), "tracker": ref(i.tracker_id, tracker),
        "status": status_ref(st, i.status_id), "priority": ref(i.priority_id, priority),
        "author": user_ref(st, i.author_id)}
    if i.assigned_to_id is not None:
        out["assigned_to"] = user_ref(st, i.assigned_to_id)
    out.update({"subject": i.subject, "description": i.description,
                "start_date": i.start_date.isoformat(), "due_date": None, "done_ratio": 0,
                "is_private": i.is_private, "estimated_hours": None,
                "total_estimated_hours": None})
    if single:
        out.update({"spent_hours": 0.0, "total_spent_hours": 0.0})
    if i.custom_fields:
        out["custom_fields"] = [{"id": k, "name": f"Field {k}", "value": v}
                                for k, v in sorted(i.custom_fields.items())]
    out.update({"created_on": stamp(i.created_on), "updated_on": stamp(i.updated_on),
                "closed_on": stamp(i.closed_on)})
    if single and "attachments" in include:
        out["attachments"] = [attachment(st, a, base) for a in sorted(
            st.attachments.values(), key=lambda a: a.id) if a.container_id == i.id]
    if single and "journals" in include:
        out["journals"] = [journal(st, j) for j in sorted(st.journals.values(),
                                                         key=lambda j: (j.created_on, j.id))
                           if j.issue_id == i.id and st.journal_visible(viewer, j)]
    if single and "allowed_statuses" in include:
        out["allowed_statuses"] = [status_ref(st, s) for s in st.allowed_statuses(viewer, i)]
    if single and "watchers" in include:
        out["watchers"] = []
    return out


def user(st: SimState, u: SimUser, viewer: SimUser, *, listing: bool = False,
         memberships: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"id": u.id, "login": u.login, "admin": u.admin,
                           "firstname": u.firstname, "lastname": u.lastname}
    if viewer.admin:
        out["mail"] = u.mail
    out.update({"created_on": stamp(u.created_on), "updated_on": stamp(u.created_on),
                "last_login_on": None, "passwd_changed_on": None, "twofa_scheme": None})
    if not listing and (viewer.admin or viewer.id == u.id):
        out["api_key"] = u.api_key
    if not listing and viewer.admin:
        out["status"] = u.status
    if memberships:
        out["memberships"] = [
            {"id": m.id, "project": ref(m.project_id, st.projects[m.project_id].name),
             "roles": [ref(r, st.roles[r].name) for r in m.role_ids]}
            for m in sorted(st.members.values(), key=lambda m: m.id) if m.user_id == u.id]
    return out


def project(p: SimProject, *, single: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"id": p.id, "name": p.name, "identifier": p.identifier,
                           "description": None}
    if single:
        out["homepage"] = ""
    out.update({"status": 1, "is_public": p.is_public, "inherit_members": False,
                "created_on": stamp(p.created_on), "updated_on": stamp(p.updated_on)})
    return out


def membership(st: SimState, m: SimMember) -> dict[str, Any]:
    return {"id": m.id, "project": ref(m.project_id, st.projects[m.project_id].name),
            "user": user_ref(st, m.user_id),
            "roles": [ref(r, st.roles[r].name) for r in m.role_ids]}


def role(r: SimRole) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "assignable": r.assignable,
            "issues_visibility": r.issues_visibility, "time_entries_visibility": "all",
            "users_visibility": "all", "permissions": list(r.permissions)}
