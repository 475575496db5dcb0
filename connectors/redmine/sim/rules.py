"""What Redmine 5.0.4 does with issue writes and issue queries, for the simulator.

The rules follow ``IssuesController``/``JournalsController`` and ``IssueQuery`` as observed
on a real instance: ``safe_attributes`` silently drops what the user may not set (status
outside the workflow, ``private_notes`` without ``set_notes_private``, attribute edits
without ``edit_issues``); validation failures answer 422 and save nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from connectors.redmine.sim import data as D
from connectors.redmine.sim.state import (
    SimHTTPError,
    SimIssue,
    SimJournal,
    SimState,
    SimUser,
    crlf,
)

TRUE = (True, 1, "1", "true", "True")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def create_issue(st: SimState, user: SimUser, attrs: Mapping[str, Any]) -> SimIssue:
    try:
        project = st.project_by_ref(attrs.get("project_id", ""))
    except SimHTTPError:
        project = None
    if project is None or not st.project_visible(user, project):
        # Redmine cannot pick a project, hence no tracker and no default status either.
        raise SimHTTPError(422, ["Project cannot be blank", "Tracker cannot be blank",
                                 "Status cannot be blank"])
    if not st.allowed(user, "add_issues", project):
        raise SimHTTPError(403)
    errors: list[str] = []
    subject = "" if attrs.get("subject") is None else str(attrs.get("subject"))
    if not subject.strip():
        errors.append("Subject cannot be blank")
    tracker_id = _int(attrs.get("tracker_id"))
    if tracker_id not in project.tracker_ids:  # an unknown tracker is ignored, not an error
        tracker_id = project.tracker_ids[0]
    priority_id = _int(attrs.get("priority_id")) or D.DEFAULT_PRIORITY
    if priority_id not in {p[0] for p in D.PRIORITIES}:
        errors.append("Priority cannot be blank")
    assignee = _assignee(st, attrs, author=user.id, project_id=project.id, previous=None,
                         errors=errors) if "assigned_to_id" in attrs else None
    uploads = st.take_uploads(attrs.get("uploads"))
    if errors:
        raise SimHTTPError(422, errors)
    now = st.clock.now()
    description = attrs.get("description")
    issue = SimIssue(
        id=st.next_id(st.issues), project_id=project.id, tracker_id=tracker_id,
        status_id=D.DEFAULT_STATUS,  # 5.0 ignores status_id on create without a workflow from "new"
        priority_id=priority_id, author_id=user.id, subject=subject,
        description=None if description is None else crlf(str(description)),
        start_date=now.date(), created_on=now, updated_on=now,
        assigned_to_id=assignee, custom_fields=_custom_fields(attrs))
    st.issues[issue.id] = issue
    st.attach(issue, uploads)
    return issue


def _custom_fields(attrs: Mapping[str, Any]) -> dict[int, str]:
    """``custom_fields: [{id, value}]`` (single values; others are left out)."""
    out: dict[int, str] = {}
    items = attrs.get("custom_fields")
    for item in items if isinstance(items, list) else ():
        cf = _int(item.get("id")) if isinstance(item, Mapping) else None
        if cf is not None and isinstance(item.get("value"), str):
            out[cf] = item["value"]
    return out


def _assignee(st: SimState, attrs: Mapping[str, Any], *, author: int, project_id: int,
              previous: int | None, errors: list[str]) -> int | None:
    """The new assignee id (None: unassign); an invalid one is reported in ``errors``."""
    raw = attrs["assigned_to_id"]
    if raw in (None, ""):
        return None
    wanted = _int(raw)
    if wanted is None or wanted not in st.assignable(author, st.projects[project_id], previous):
        errors.append("Assignee is invalid")
        return previous
    return wanted


def update_issue(st: SimState, user: SimUser, issue: SimIssue,
                 attrs: Mapping[str, Any]) -> None:
    project = st.projects[issue.project_id]
    may_edit = st.allowed(user, "edit_issues", project) or (
        issue.author_id == user.id and st.allowed(user, "edit_own_issues", project))
    may_note = st.allowed(user, "add_issue_notes", project)
    if not (may_edit or may_note):
        raise SimHTTPError(403)
    errors: list[str] = []
    changes: list[tuple[str, Any, Any]] = []
    if may_edit:
        if "subject" in attrs:
            subject = "" if attrs["subject"] is None else str(attrs["subject"])
            if not subject.strip():
                errors.append("Subject cannot be blank")
            elif subject != issue.subject:
                changes.append(("subject", issue.subject, subject))
        if "description" in attrs:
            desc = crlf("" if attrs["description"] is None else str(attrs["description"]))
            if desc != (issue.description or ""):
                changes.append(("description", issue.description, desc))
        if "priority_id" in attrs:
            priority = _int(attrs["priority_id"])
            if priority not in {p[0] for p in D.PRIORITIES}:
                errors.append("Priority cannot be blank")
            elif priority != issue.priority_id:
                changes.append(("priority_id", issue.priority_id, priority))
        if "assigned_to_id" in attrs:
            assignee = _assignee(st, attrs, author=issue.author_id, project_id=project.id,
                                 previous=issue.assigned_to_id, errors=errors)
            if assignee != issue.assigned_to_id:
                changes.append(("assigned_to_id", issue.assigned_to_id, assignee))
    status = _int(attrs.get("status_id"))
    if status is not None and status != issue.status_id and status in st.statuses \
            and status in st.allowed_statuses(user, issue):
        changes.append(("status_id", issue.status_id, status))
    uploads = st.take_uploads(attrs.get("uploads")) if (may_edit or may_note) else []
    if errors:
        raise SimHTTPError(422, errors)
    notes = str(attrs["notes"]) if may_note and attrs.get("notes") is not None else ""
    private = (attrs.get("private_notes") in TRUE and not user.drop_private_notes
               and st.allowed(user, "set_notes_private", project) and bool(notes.strip()))
    now = st.clock.now()
    order = ("subject", "description", "status_id", "assigned_to_id", "priority_id")
    details: list[dict[str, Any]] = []
    for name, old, new in sorted(changes, key=lambda c: order.index(c[0])):
        setattr(issue, name, new)
        details.append({"property": "attr", "name": name,
                        "old_value": None if old is None else str(old),
                        "new_value": None if new is None else str(new)})
        if name == "status_id" and st.is_closed(new) and not st.is_closed(old):
            issue.closed_on = now
    st.attach(issue, uploads)
    if may_edit:
        for cf, value in _custom_fields(attrs).items():
            if issue.custom_fields.get(cf, "") != value:
                details.append({"property": "cf", "name": str(cf),
                                "old_value": issue.custom_fields.get(cf), "new_value": value})
                issue.custom_fields[cf] = value
    details += [{"property": "attachment", "name": str(att.id), "old_value": None,
                 "new_value": att.filename} for att, _ in uploads]
    issue.updated_on = now  # even a PUT that changes nothing
    if not notes.strip() and not details:
        return
    if private and details:  # Journal#split_private_notes
        _journal(st, issue, user, None, False, details, now)
        _journal(st, issue, user, notes, True, [], now)
    else:
        _journal(st, issue, user, notes, private, details, now)


def _journal(st: SimState, issue: SimIssue, user: SimUser, notes: str | None, private: bool,
             details: list[dict[str, Any]], now: datetime) -> SimJournal:
    journal = SimJournal(st.next_id(st.journals), issue.id, user.id, notes, private, now, details)
    st.journals[journal.id] = journal
    return journal


def update_journal(st: SimState, user: SimUser, journal: SimJournal,
                   attrs: Mapping[str, Any]) -> None:
    issue = st.visible_issue(user, journal.issue_id)
    project = st.projects[issue.project_id]
    if not st.journal_visible(user, journal):
        raise SimHTTPError(404)
    if not (st.allowed(user, "edit_issue_notes", project) or (
            journal.user_id == user.id and st.allowed(user, "edit_own_issue_notes", project))):
        raise SimHTTPError(403)
    if "notes" in attrs:
        journal.notes = "" if attrs["notes"] is None else str(attrs["notes"])
    if "private_notes" in attrs and st.allowed(user, "set_notes_private", project):
        journal.private_notes = attrs["private_notes"] in TRUE
    if not (journal.notes or "").strip() and not journal.details:
        del st.journals[journal.id]  # editing a note to empty deletes it


# -- queries -------------------------------------------------------------------------------
def _floor(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def _parse_stamp(value: str) -> datetime | date:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return date.fromisoformat(value)
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}(:?\d{2}){0,2}(Z|[+-]\d{2}:?\d{2})?", value):
        raise ValueError(value)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _time_filter(raw: str, label: str) -> Callable[[datetime], bool]:
    """Redmine's date_clause: ``>=T`` is ``stored > T-1s`` and ``<=T`` is ``stored <= T``,
    both compared as strings against second-precision bounds (so effectively on floors)."""
    match = re.fullmatch(r"(>=|<=|><|=)?(.*)", raw)
    op, value = (match.group(1) or "=", match.group(2)) if match else ("=", raw)
    try:
        parts = [_parse_stamp(v) for v in value.split("|")] if op == "><" else [
            _parse_stamp(value)]
    except ValueError:
        raise SimHTTPError(422, [f"{label} is invalid"]) from None
    lower = parts[0] if op in (">=", "><", "=") else None
    upper = (parts[-1] if op in ("<=", "><") else parts[0] if op == "=" else None)

    def low(v: datetime | date) -> datetime:
        if isinstance(v, datetime):
            return v - timedelta(seconds=1)
        return datetime.combine(v, time(), tzinfo=UTC) - timedelta(seconds=1)

    def high(v: datetime | date) -> datetime:
        if isinstance(v, datetime):
            return v
        return datetime.combine(v, time(23, 59, 59), tzinfo=UTC)

    def test(stored: datetime) -> bool:
        floor = _floor(stored.astimezone(UTC))
        if lower is not None and not floor >= low(lower):
            return False
        return upper is None or floor < high(upper)

    return test


def _status_filter(raw: str | None, st: SimState) -> Callable[[SimIssue], bool]:
    if raw in (None, "", "o"):
        return lambda i: not st.is_closed(i.status_id)
    if raw == "c":
        return lambda i: st.is_closed(i.status_id)
    if raw == "*":
        return lambda i: True
    wanted = {_int(v) for v in str(raw).split("|")}
    return lambda i: i.status_id in wanted


def _text_filter(raw: str, getter: Callable[[SimIssue], str | None]) -> Callable[[SimIssue], bool]:
    if raw.startswith("!~"):
        needle = raw[2:].lower()
        return lambda i: needle not in (getter(i) or "").lower()
    needle = raw[1:].lower() if raw.startswith("~") else raw.lower()
    if raw.startswith("~"):
        return lambda i: needle in (getter(i) or "").lower()
    return lambda i: (getter(i) or "").lower() == needle


SORT_KEYS: dict[str, Callable[[SimIssue], Any]] = {
    "id": lambda i: i.id,
    "updated_on": lambda i: i.updated_on,
    "created_on": lambda i: i.created_on,
    "subject": lambda i: i.subject.lower(),
    "status": lambda i: i.status_id,
    "priority": lambda i: i.priority_id,
    "tracker": lambda i: i.tracker_id,
}


def query_issues(st: SimState, user: SimUser,
                 params: Mapping[str, str]) -> tuple[list[SimIssue], int, int, int]:
    """Visible issues matching the filters: (page, total_count, offset, limit)."""
    tests: list[Callable[[SimIssue], bool]] = [lambda i: st.issue_visible(user, i),
                                               _status_filter(params.get("status_id"), st)]
    if params.get("project_id"):
        project = st.project_by_ref(params["project_id"])
        if not st.project_visible(user, project):
            raise SimHTTPError(403)
        tests.append(lambda i: i.project_id == project.id)
    for name, label in (("updated_on", "Updated"), ("created_on", "Created")):
        if params.get(name):
            check = _time_filter(params[name], label)
            tests.append(lambda i, c=check, n=name: c(getattr(i, n)))  # type: ignore[misc]
    if params.get("description"):
        tests.append(_text_filter(params["description"], lambda i: i.description))
    if params.get("subject"):
        tests.append(_text_filter(params["subject"], lambda i: i.subject))
    if params.get("assigned_to_id"):
        who = user.id if params["assigned_to_id"] == "me" else _int(params["assigned_to_id"])
        tests.append(lambda i: i.assigned_to_id == who)
    found = [i for i in st.issues.values() if all(t(i) for t in tests)]
    criteria = [c.split(":") for c in (params.get("sort") or "").split(",") if c]
    if not any(c[0] == "id" for c in criteria):
        criteria.append(["id", "desc"])
    for crit in reversed(criteria):
        key = SORT_KEYS.get(crit[0])
        if key is not None:
            found.sort(key=key, reverse=len(crit) > 1 and crit[1] == "desc")
    limit = _int(params.get("limit")) or 25
    limit = 25 if limit < 1 else min(limit, 100)
    if params.get("offset"):
        offset = max(_int(params.get("offset")) or 0, 0)
    elif params.get("page"):
        offset = max(((_int(params.get("page")) or 1) - 1) * limit, 0)
    else:
        offset = 0
    return found[offset: offset + limit], len(found), offset, limit
