"""The GitHub simulator's data and rules, apart from HTTP (see ``server.py``).

What it keeps faithful (trackers.md §1, the official OpenAPI description in
``tests/specs/github-rest-issues.openapi.json``, and the recordings replayed in the tests):

* Issue numbers count per repository, issue and comment ids are global; pull requests
  share the numbering and show in the issue listings with a ``pull_request`` key.
* Times have whole-second precision (``2022-07-19T04:38:37Z``); every change of an issue,
  a comment on it included, moves its ``updated_at``.
* Labels and assignees given by someone without push access are silently dropped on
  create and on update (GitHub's documented behaviour); a read-only user cannot close,
  reopen or edit someone else's issue (403).
* There are no private comments: every comment is visible to whoever sees the issue.
* Search (``/search/issues``) is eventually consistent: an issue enters the index
  ``search_lag`` seconds after its last change (0 by default; tests raise it).
"""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

MAX_BODY = 65_536


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


class GitHubError(Exception):
    """An answer other than success: status, GitHub's ``message`` and ``errors``."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}


@dataclass
class GhUser:
    id: int
    login: str
    token: str
    type: str = "User"  # "Bot" for GitHub App installations


@dataclass
class GhLabel:
    name: str
    color: str
    description: str | None = None
    default: bool = False


# What every new repository starts with (as recorded from api.github.com).
DEFAULT_LABELS = (
    ("bug", "d73a4a", "Something isn't working"),
    ("documentation", "0075ca", "Improvements or additions to documentation"),
    ("duplicate", "cfd3d7", "This issue or pull request already exists"),
    ("enhancement", "a2eeef", "New feature or request"),
    ("good first issue", "7057ff", "Good for newcomers"),
    ("help wanted", "008672", "Extra attention is needed"),
    ("invalid", "e4e669", "This doesn't seem right"),
    ("question", "d876e3", "Further information is requested"),
    ("wontfix", "ffffff", "This will not be worked on"),
)
_COLOUR = re.compile(r"^[0-9a-fA-F]{6}$")


@dataclass
class GhRepo:
    id: int
    owner: str
    name: str
    private: bool = True
    has_issues: bool = True
    # login -> "read" | "triage" | "write" | "admin"
    permissions: dict[str, str] = field(default_factory=dict)
    labels: dict[str, GhLabel] = field(default_factory=lambda: {
        name: GhLabel(name, colour, text, True) for name, colour, text in DEFAULT_LABELS})
    next_number: int = 1

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class GhIssue:
    id: int
    repo_id: int
    number: int
    title: str
    body: str | None
    author: str
    created_at: datetime
    updated_at: datetime
    state: str = "open"
    state_reason: str | None = None
    closed_at: datetime | None = None
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    is_pull_request: bool = False
    locked: bool = False


@dataclass
class GhComment:
    id: int
    repo_id: int
    number: int
    body: str
    author: str
    created_at: datetime
    updated_at: datetime


WRITE_LEVELS = ("write", "admin")
TRIAGE_LEVELS = ("triage", "write", "admin")
LEVELS = ("read", "triage", "write", "admin")


class GitHubState:
    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.users: dict[str, GhUser] = {}
        self.repos: dict[str, GhRepo] = {}
        self.issues: dict[int, GhIssue] = {}  # by global id
        self.comments: dict[int, GhComment] = {}
        self.search_lag = 0.0
        # Whether editing a comment moves its issue's ``updated_at`` (not documented either
        # way; the engine's feed must find edits when it does not).
        self.comment_edits_move_issue = True
        self._ids = 1_000

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def now(self) -> datetime:
        """Change times are whole seconds, as GitHub shows them."""
        return self.clock.now().replace(microsecond=0)

    # -- setup ------------------------------------------------------------------------------
    def add_user(self, login: str, token: str | None = None, kind: str = "User") -> GhUser:
        user = GhUser(self.next_id(), login, token or f"ghp_{secrets.token_hex(18)}", kind)
        self.users[login] = user
        return user

    def add_repo(self, owner: str, name: str, *, private: bool = True) -> GhRepo:
        repo = GhRepo(self.next_id(), owner, name, private=private)
        self.repos[repo.full_name.lower()] = repo
        return repo

    # -- lookups ----------------------------------------------------------------------------
    def user_by_token(self, token: str) -> GhUser | None:
        return next((u for u in self.users.values()
                     if secrets.compare_digest(u.token, token)), None)

    def repo_for(self, owner: str, name: str, user: GhUser) -> GhRepo:
        repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None or (repo.private and self.level(repo, user) is None):
            raise GitHubError(404, "Not Found")  # GitHub hides private repos as 404
        return repo

    def repo_by_id(self, repo_id: int) -> GhRepo:
        return next(r for r in self.repos.values() if r.id == repo_id)

    @staticmethod
    def level(repo: GhRepo, user: GhUser) -> str | None:
        if user.login == repo.owner:
            return "admin"
        found = repo.permissions.get(user.login)
        return found if found is not None else (None if repo.private else "read")

    def issue(self, repo: GhRepo, number: int) -> GhIssue:
        for issue in self.issues.values():
            if issue.repo_id == repo.id and issue.number == number:
                return issue
        raise GitHubError(404, "Not Found")

    def comment(self, repo: GhRepo, comment_id: int) -> GhComment:
        comment = self.comments.get(comment_id)
        if comment is None or comment.repo_id != repo.id:
            raise GitHubError(404, "Not Found")
        return comment

    # -- rules ------------------------------------------------------------------------------
    def create_issue(self, repo: GhRepo, user: GhUser, title: object, body: object,
                     labels: object = None, assignees: object = None,
                     pull_request: bool = False) -> GhIssue:
        if not repo.has_issues:
            raise GitHubError(410, "Issues are disabled for this repo")
        if not isinstance(title, str | int) or str(title).strip() == "":
            raise GitHubError(422, "Validation Failed",
                              [{"resource": "Issue", "code": "missing_field", "field": "title"}])
        text = _body(body, "Issue")
        now = self.now()
        issue = GhIssue(self.next_id(), repo.id, repo.next_number, str(title), text, user.login,
                        now, now, is_pull_request=pull_request)
        repo.next_number += 1
        if self.level(repo, user) in WRITE_LEVELS:  # dropped silently otherwise
            issue.labels = self._labels(repo, labels)
            issue.assignees = self._assignees(repo, assignees)
        self.issues[issue.id] = issue
        return issue

    def update_issue(self, repo: GhRepo, user: GhUser, issue: GhIssue,
                     change: dict[str, object]) -> GhIssue:
        level = self.level(repo, user)
        own = issue.author == user.login
        if level not in TRIAGE_LEVELS and not own:
            raise GitHubError(403, "Must have admin rights to Repository.")
        changed = False
        if "title" in change:
            if not isinstance(change["title"], str) or not change["title"].strip():
                raise GitHubError(422, "Validation Failed", [
                    {"resource": "Issue", "code": "missing_field", "field": "title"}])
            changed |= issue.title != change["title"]
            issue.title = change["title"]
        if "body" in change:
            issue.body = _body(change["body"], "Issue")
            changed = True
        if "state" in change:
            changed |= self._state(issue, change["state"], change.get("state_reason"))
        if level in TRIAGE_LEVELS and "labels" in change:
            labels = self._labels(repo, change["labels"])
            changed |= labels != issue.labels
            issue.labels = labels
        if level in WRITE_LEVELS and "assignees" in change:
            assignees = self._assignees(repo, change["assignees"])
            changed |= assignees != issue.assignees
            issue.assignees = assignees
        if changed:
            issue.updated_at = self.now()
        return issue

    def _state(self, issue: GhIssue, state: object, reason: object) -> bool:
        if state not in ("open", "closed"):
            raise GitHubError(422, "Validation Failed", [
                {"resource": "Issue", "code": "invalid", "field": "state"}])
        if reason is not None and reason not in ("completed", "not_planned", "duplicate",
                                                 "reopened"):
            raise GitHubError(422, "Validation Failed", [
                {"resource": "Issue", "code": "invalid", "field": "state_reason"}])
        if state == issue.state:
            return False  # state_reason is ignored unless the state changes
        issue.state = str(state)
        if state == "closed":
            issue.closed_at = self.now()
            issue.state_reason = str(reason) if reason in ("not_planned", "duplicate") \
                else "completed"
        else:
            issue.closed_at = None
            issue.state_reason = "reopened"
        return True

    def add_comment(self, repo: GhRepo, user: GhUser, issue: GhIssue, body: object) -> GhComment:
        if issue.locked and self.level(repo, user) not in WRITE_LEVELS:
            raise GitHubError(403, "Unable to create comment because issue is locked.")
        text = _body(body, "IssueComment", required=True)
        now = self.now()
        comment = GhComment(self.next_id(), repo.id, issue.number, text or "", user.login, now,
                            now)
        self.comments[comment.id] = comment
        issue.updated_at = now
        return comment

    def edit_comment(self, repo: GhRepo, user: GhUser, comment: GhComment,
                     body: object) -> GhComment:
        if comment.author != user.login and self.level(repo, user) not in WRITE_LEVELS:
            raise GitHubError(403, "Must have admin rights to Repository.")
        comment.body = _body(body, "IssueComment", required=True) or ""
        comment.updated_at = self.now()
        if self.comment_edits_move_issue:
            self.issue(repo, comment.number).updated_at = comment.updated_at
        return comment

    def delete_comment(self, repo: GhRepo, user: GhUser, comment: GhComment) -> None:
        if comment.author != user.login and self.level(repo, user) not in WRITE_LEVELS:
            raise GitHubError(403, "Must have admin rights to Repository.")
        del self.comments[comment.id]
        self.issue(repo, comment.number).updated_at = self.now()

    def _labels(self, repo: GhRepo, value: object) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise GitHubError(422, "Invalid request.\n\nFor 'properties/labels', "
                              f"{value!r} is not an array.")
        names: list[str] = []
        for item in value:
            name = item.get("name") if isinstance(item, dict) else item
            if not isinstance(name, str) or not name.strip():
                raise GitHubError(422, "Validation Failed", [
                    {"resource": "Label", "code": "invalid", "field": "name"}])
            known = next((k for k in repo.labels if k.lower() == name.lower()), None)
            if known is None:  # GitHub creates a label named on an issue
                repo.labels[name] = GhLabel(name, "ededed")
                known = name
            if known not in names:
                names.append(known)
        return names

    def _assignees(self, repo: GhRepo, value: object) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > 10:
            raise GitHubError(422, "Validation Failed", [
                {"resource": "Issue", "code": "invalid", "field": "assignees"}])
        # Logins that cannot be assigned (no access to the repo) are dropped silently.
        return [str(login) for login in dict.fromkeys(value)
                if login in self.users and self.level(repo, self.users[str(login)]) is not None]

    def label(self, repo: GhRepo, name: str) -> GhLabel:
        found = next((v for k, v in repo.labels.items() if k.lower() == name.lower()), None)
        if found is None:
            raise GitHubError(404, "Not Found")
        return found

    def save_label(self, repo: GhRepo, user: GhUser, body: dict[str, object],
                   old: GhLabel | None = None) -> GhLabel:
        if self.level(repo, user) not in WRITE_LEVELS:
            raise GitHubError(403, "Must have admin rights to Repository.")
        name = body.get("new_name", body.get("name")) if old else body.get("name")
        name = name if name is not None or old is None else old.name
        colour = body.get("color", old.color if old else "ededed")
        if not isinstance(name, str) or not name.strip():
            raise GitHubError(422, "Validation Failed", [
                {"resource": "Label", "code": "missing_field", "field": "name"}])
        if not isinstance(colour, str) or not _COLOUR.match(colour.lstrip("#")):
            raise GitHubError(422, "Validation Failed", [
                {"resource": "Label", "code": "invalid", "field": "color"}])
        clash = next((k for k in repo.labels if k.lower() == name.lower()), None)
        if clash is not None and (old is None or clash != old.name):
            raise GitHubError(422, "Validation Failed", [
                {"resource": "Label", "code": "already_exists", "field": "name"}])
        description = body.get("description", old.description if old else None)
        label = GhLabel(name, colour.lstrip("#"),
                        description if isinstance(description, str) else None)
        if old is not None:
            del repo.labels[old.name]
            for issue in self.issues.values():
                if issue.repo_id == repo.id:
                    issue.labels = [name if n == old.name else n for n in issue.labels]
        repo.labels[name] = label
        return label

    def delete_label(self, repo: GhRepo, user: GhUser, label: GhLabel) -> None:
        if self.level(repo, user) not in WRITE_LEVELS:
            raise GitHubError(403, "Must have admin rights to Repository.")
        del repo.labels[label.name]
        for issue in self.issues.values():
            if issue.repo_id == repo.id and label.name in issue.labels:
                issue.labels.remove(label.name)

    def set_locked(self, repo: GhRepo, user: GhUser, issue: GhIssue, locked: bool) -> None:
        if self.level(repo, user) not in WRITE_LEVELS:
            raise GitHubError(403, "Must have admin rights to Repository.")
        issue.locked = locked

    def searchable(self, issue: GhIssue) -> bool:
        """The index has the issue ``search_lag`` seconds after it was created."""
        return (self.clock.current - issue.created_at).total_seconds() >= self.search_lag


def _body(value: object, resource: str, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and value == ""):
        raise GitHubError(422, "Validation Failed", [
            {"resource": resource, "code": "missing_field" if value in (None, "") else "invalid",
             "field": "body"}])
    if len(value) > MAX_BODY:
        raise GitHubError(422, "Validation Failed", [
            {"resource": resource, "code": "custom", "field": "body",
             "message": f"body is too long (maximum is {MAX_BODY} characters)"}])
    return value
