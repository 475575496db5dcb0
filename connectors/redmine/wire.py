"""Redmine wire models: the JSON shapes of the REST API as Redmine 5.0.4 sends them.

Field names follow shared/specs/redmine-openapi.yaml (which targets 7.0; 5.0 journals lack
``updated_on``/``updated_by``). Only identity fields are required (an issue's ``id``,
``subject``, ``status``, ``created_on``, ``updated_on``; a journal's ``id`` and
``created_on``); the rest is optional because self-hosted instances run plugins that add,
hide or null fields.

Decoding policy: a single object that fails validation raises ``BadPayloadError``; an
item of a list that fails validation is skipped with a ``redmine_item_skipped`` warning,
because one odd issue must not stop the sync of the others. Unknown fields are kept
(``extra="allow"``) so payloads stay complete for debugging.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from syncer.errors import BadPayloadError

log = structlog.get_logger("reamaze_sync.redmine")

CONNECTOR = "redmine"
M = TypeVar("M", bound=BaseModel)


class Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


class IdName(Wire):
    id: int
    name: str = ""


class StatusRef(Wire):
    id: int
    name: str = ""
    is_closed: bool = False


class JournalDetail(Wire):
    property: str
    name: str
    old_value: str | None = None
    new_value: str | None = None


class Journal(Wire):
    id: int
    user: IdName | None = None
    notes: str | None = None  # "" (no note sent) and null (after a private split) both mean none
    created_on: AwareDatetime
    private_notes: bool = False
    details: tuple[JournalDetail, ...] = ()

    @property
    def has_note(self) -> bool:
        return bool(self.notes and self.notes.strip())


class AttachmentWire(Wire):
    id: int
    filename: str
    filesize: int | None = None
    content_type: str | None = None
    description: str | None = None
    content_url: str | None = None
    author: IdName | None = None
    created_on: AwareDatetime | None = None


class CustomFieldValue(Wire):
    id: int
    name: str = ""
    value: str | list[str] | None = None  # a list for a multiple-value field


class Issue(Wire):
    id: int
    project: IdName | None = None
    tracker: IdName | None = None
    status: StatusRef
    priority: IdName | None = None
    author: IdName | None = None
    assigned_to: IdName | None = None
    subject: str
    description: str | None = None
    is_private: bool = False
    created_on: AwareDatetime
    updated_on: AwareDatetime
    closed_on: AwareDatetime | None = None
    journals: tuple[Journal, ...] | None = None
    attachments: tuple[AttachmentWire, ...] | None = None
    custom_fields: tuple[CustomFieldValue, ...] = ()
    allowed_statuses: tuple[StatusRef, ...] | None = None


class IssueStatus(StatusRef):
    """An entry of /issue_statuses.json (same fields as the status of an issue)."""


class Tracker(Wire):
    id: int
    name: str
    default_status: IdName | None = None


class Project(Wire):
    id: int
    name: str
    identifier: str
    status: int | None = None


class Membership(Wire):
    id: int | None = None
    project: IdName | None = None
    user: IdName | None = None
    group: IdName | None = None
    roles: tuple[IdName, ...] = ()


class UserWire(Wire):
    id: int
    login: str = ""
    admin: bool = False
    firstname: str = ""
    lastname: str = ""
    mail: str | None = None
    status: int | None = None
    memberships: tuple[Membership, ...] | None = None

    @property
    def display_name(self) -> str:
        return " ".join(p for p in (self.firstname, self.lastname) if p) or self.login


class RoleWire(Wire):
    id: int
    name: str
    assignable: bool | None = None
    permissions: tuple[str, ...] = ()


class Upload(Wire):
    id: int | None = None
    token: str = Field(min_length=1)


class ListPage(Wire):
    total_count: int | None = None
    offset: int | None = None
    limit: int | None = None


def _envelope(payload: Any, key: str, object_id: str | None) -> Any:
    if not isinstance(payload, Mapping) or key not in payload:
        raise BadPayloadError(f"response has no '{key}' object", connector=CONNECTOR,
                              object_id=object_id, body=str(payload)[:200])
    return payload[key]


def parse_one(model: type[M], payload: Any, key: str, *, object_id: str | None = None) -> M:
    """``{"issue": {...}}`` -> Issue; anything else is a BadPayloadError."""
    try:
        return model.model_validate(_envelope(payload, key, object_id))
    except ValidationError as exc:
        raise BadPayloadError(f"malformed {key}: {exc.errors()[0]['msg']} at "
                              f"{'.'.join(str(p) for p in exc.errors()[0]['loc'])}",
                              connector=CONNECTOR, object_id=object_id) from None


def parse_list(model: type[M], payload: Any, key: str) -> tuple[list[M], ListPage]:
    """``{"issues": [...], "total_count": ..}`` -> items (bad ones skipped) and paging meta."""
    items = _envelope(payload, key, None)
    if not isinstance(items, list):
        raise BadPayloadError(f"'{key}' is not a list", connector=CONNECTOR)
    out: list[M] = []
    for item in items:
        try:
            out.append(model.model_validate(item))
        except ValidationError as exc:
            ident = item.get("id") if isinstance(item, Mapping) else None
            log.warning("redmine_item_skipped", kind=key, item_id=ident,
                        error=exc.errors()[0]["msg"])
    try:
        meta = ListPage.model_validate({k: payload.get(k) for k in ("total_count", "offset",
                                                                     "limit")})
    except ValidationError:
        meta = ListPage()
    return out, meta
