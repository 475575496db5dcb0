"""GitLab wire models: the JSON shapes of the REST v4 API (issues, notes, users,
projects, uploads).

Field names follow GitLab's API documentation (gitlabhq ``doc/api/issues.md``,
``doc/api/notes.md``, ``doc/api/projects.md``, ``doc/api/project_markdown_uploads.md``).
Only what the engine relies on is required (an issue's ``iid``, ``title``, ``state``,
``created_at``, ``updated_at``; a note's ``id``, ``created_at``); the rest is optional.
A note's ``internal`` is kept as None when the answer has no such field (GitLab before
the rename, or before internal notes): the connector must then not take the note for
private.

Decoding policy, as for the other connectors: a single object that fails validation raises
``BadPayloadError``; a list item that fails is skipped with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from syncer.errors import BadPayloadError

log = structlog.get_logger("reamaze_sync.gitlab")

CONNECTOR = "gitlab"
M = TypeVar("M", bound=BaseModel)

# GitLab's access levels (doc/api/access_requests.md): what a member may do.
GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 15, 20, 30, 40, 50
LEVEL_NAMES = {0: "no access", 5: "Minimal Access", GUEST: "Guest", PLANNER: "Planner",
               REPORTER: "Reporter", DEVELOPER: "Developer", MAINTAINER: "Maintainer",
               OWNER: "Owner"}


class Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class GlUserWire(Wire):
    id: int
    username: str
    name: str | None = None
    state: str | None = None
    bot: bool | None = None


class GlIssueWire(Wire):
    id: int | None = None
    iid: int
    project_id: int | None = None
    title: str
    description: str | None = None
    state: str
    labels: tuple[str, ...] = ()
    assignees: tuple[GlUserWire, ...] | None = None
    assignee: GlUserWire | None = None
    author: GlUserWire | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    closed_at: AwareDatetime | None = None
    web_url: str | None = None
    confidential: bool | None = None


class GlNoteWire(Wire):
    id: int
    body: str | None = None
    author: GlUserWire | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime | None = None
    system: bool = False
    noteable_iid: int | None = None
    noteable_type: str | None = None
    internal: bool | None = None
    confidential: bool | None = None

    @property
    def provably_internal(self) -> bool:
        """Hidden from non-members for sure: ``internal`` says so, or (a GitLab from
        before the rename) ``confidential`` does. Neither field: not provably private."""
        if self.internal is not None:
            return self.internal
        return self.confidential is True


class GlAccess(Wire):
    access_level: int = 0


class GlPermissions(Wire):
    project_access: GlAccess | None = None
    group_access: GlAccess | None = None

    @property
    def level(self) -> int:
        return max((a.access_level for a in (self.project_access, self.group_access)
                    if a is not None), default=0)


class GlProjectWire(Wire):
    id: int
    path_with_namespace: str
    web_url: str | None = None
    issues_enabled: bool | None = True
    visibility: str | None = None
    permissions: GlPermissions | None = None


class GlUploadWire(Wire):
    id: int | None = None
    alt: str | None = None
    url: str
    full_path: str | None = None
    markdown: str


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
            log.warning("gitlab_item_skipped", kind=what, item_id=ident,
                        error=exc.errors()[0]["msg"])
    return out
