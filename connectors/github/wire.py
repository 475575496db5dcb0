"""GitHub wire models: the JSON shapes of the REST API (issues, comments, users, repos).

Field names follow the official OpenAPI description (tests/specs/github-rest-issues
.openapi.json). Only what the engine relies on is required (an issue's ``number``,
``title``, ``state``, ``user``, ``created_at``, ``updated_at``; a comment's ``id``,
``user``, ``created_at``, ``updated_at``); the rest is optional, so a field GitHub drops
or nulls (a deleted user shows as ``ghost``; ``body`` is null on an empty issue) does not
stop the sync.

Decoding policy, as for the other connectors: a single object that fails validation raises
``BadPayloadError``; a list item that fails is skipped with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from syncer.errors import BadPayloadError

log = structlog.get_logger("reamaze_sync.github")

CONNECTOR = "github"
API_VERSION = "2022-11-28"  # sent as X-GitHub-Api-Version on every request
M = TypeVar("M", bound=BaseModel)


class Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class GhUserWire(Wire):
    login: str
    id: int
    type: str = "User"
    name: str | None = None


class GhAppWire(Wire):
    """``GET /app``: the app itself (its writes show as ``SLUG[bot]``)."""
    id: int
    slug: str
    name: str | None = None


class GhLabelWire(Wire):
    name: str


class GhIssueWire(Wire):
    id: int | None = None
    number: int
    title: str
    body: str | None = None
    state: str
    state_reason: str | None = None
    user: GhUserWire | None = None
    labels: tuple[GhLabelWire | str, ...] = ()
    assignees: tuple[GhUserWire, ...] | None = None
    assignee: GhUserWire | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    closed_at: AwareDatetime | None = None
    html_url: str | None = None
    pull_request: dict[str, Any] | None = None

    @property
    def is_pull_request(self) -> bool:
        return self.pull_request is not None

    def label_names(self) -> tuple[str, ...]:
        return tuple(label if isinstance(label, str) else label.name for label in self.labels)


class GhCommentWire(Wire):
    id: int
    body: str | None = None
    user: GhUserWire | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    html_url: str | None = None
    issue_url: str | None = None


class GhPermissions(Wire):
    pull: bool = False
    triage: bool = False
    push: bool = False
    maintain: bool = False
    admin: bool = False


class GhRepoWire(Wire):
    id: int
    full_name: str
    private: bool = False
    has_issues: bool = True
    permissions: GhPermissions | None = None


class GhSearchWire(Wire):
    total_count: int = 0
    incomplete_results: bool = False
    items: tuple[Mapping[str, Any], ...] = ()


def parse_one(model: type[M], payload: Any, what: str, *, object_id: str | None = None) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadPayloadError(f"malformed {what}: {first['msg']} at "
                              f"{'.'.join(str(p) for p in first['loc'])}",
                              connector=CONNECTOR, object_id=object_id) from None


def parse_items(model: type[M], payload: Any, what: str) -> list[M]:
    """A JSON array of ``model``; bad items are skipped with a warning."""
    if not isinstance(payload, list):
        raise BadPayloadError(f"{what}: expected a list", connector=CONNECTOR)
    out: list[M] = []
    for item in payload:
        try:
            out.append(model.model_validate(item))
        except ValidationError as exc:
            ident = item.get("id") if isinstance(item, Mapping) else None
            log.warning("github_item_skipped", kind=what, item_id=ident,
                        error=exc.errors()[0]["msg"])
    return out
