"""Re:amaze wire models: the JSON shapes of /api/v1, as tolerant as the evidence requires.

The reference (shared/reamaze-api.md) is reconstructed from truncated doc pages and client
models, so every field the sync does not strictly need is optional, and optional fields are
*lenient*: a value of the wrong type becomes None (or an empty list) instead of rejecting
the whole object. Only the identity fields are required (a conversation's ``slug`` and
``created_at``, a message's ``created_at``, a staff member's ``email``, a channel's ``slug``).

Decoding policy (documented here because callers rely on it):

* a single object that fails validation raises ``BadPayloadError``;
* an item of a list that fails validation is skipped with a ``reamaze_item_skipped``
  warning (the rest of the page is still used), because one odd conversation must not
  stop the sync of all the others.

Unknown fields are kept (``extra="allow"``) so ``raw`` payloads stay complete for debugging.
Boolean keys ending in ``?`` (``staff?``, ``image?``, ``admin?``) are aliased.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

import structlog
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from syncer.errors import BadPayloadError

log = structlog.get_logger("reamaze_sync.reamaze")

CONNECTOR = "reamaze"
M = TypeVar("M", bound=BaseModel)


def _or_none(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        return None


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(v) for v in value if v is not None and not isinstance(v, dict | list)]


def _dict_or_empty(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _id_text(value: Any) -> str | None:
    # origin_id and contact ids come back as strings or numbers (DEX); bools are not ids.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        text = str(value).strip()
        return text or None
    return None


LenientDatetime = Annotated[AwareDatetime | None, WrapValidator(_or_none)]
LenientInt = Annotated[int | None, WrapValidator(_or_none)]
LenientStr = Annotated[str | None, WrapValidator(_or_none)]
LenientBool = Annotated[bool | None, WrapValidator(_or_none)]
IdText = Annotated[str | None, WrapValidator(lambda v, _h: _id_text(v))]
StrList = Annotated[list[str], WrapValidator(lambda v, _h: _str_list(v))]
AnyDict = Annotated[dict[str, Any], WrapValidator(lambda v, _h: _dict_or_empty(v))]


def _required_text(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    text = _id_text(value)
    if text is None:
        return handler(value if isinstance(value, str) and value.strip() else None)
    return text


RequiredText = Annotated[str, WrapValidator(_required_text)]


class Wire(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class WireUser(Wire):
    """A conversation author/assignee/follower or a message sender."""

    id: IdText = None
    name: LenientStr = None
    email: LenientStr = None
    mobile: LenientStr = None
    friendly_name: LenientStr = None
    staff: LenientBool = Field(default=None, alias="staff?")


LenientUser = Annotated[WireUser | None, WrapValidator(_or_none)]


class WireCategory(Wire):
    """A channel as embedded in conversations and messages."""

    id: IdText = None
    name: LenientStr = None
    slug: LenientStr = None
    email: LenientStr = None
    channel: LenientInt = None


LenientCategory = Annotated[WireCategory | None, WrapValidator(_or_none)]


class WireBody(Wire):
    body: LenientStr = None
    created_at: LenientDatetime = None


LenientBody = Annotated[WireBody | None, WrapValidator(_or_none)]


class WireConversation(Wire):
    slug: RequiredText
    created_at: AwareDatetime
    subject: LenientStr = None
    status: Any = None  # int in practice; mapped (unknown values included) in mapping.py
    updated_at: LenientDatetime = None
    tag_list: StrList = Field(default_factory=list)
    message: LenientBody = None
    last_customer_message: LenientBody = None
    last_staff_message: LenientBody = None
    author: LenientUser = None
    assignee: LenientUser = None
    category: LenientCategory = None
    data: AnyDict = Field(default_factory=dict)
    hold_until: LenientDatetime = None
    perma_url: LenientStr = None
    message_count: LenientInt = None
    origin: LenientInt = None


class WireAttachment(Wire):
    file_file_name: LenientStr = None
    file_content_type: LenientStr = None
    file_file_size: LenientInt = None
    url: LenientStr = None
    thumb_url: LenientStr = None
    image: LenientBool = Field(default=None, alias="image?")


def _attachments(value: Any) -> list[WireAttachment]:
    if not isinstance(value, list):
        return []
    out: list[WireAttachment] = []
    for item in value:
        try:
            out.append(WireAttachment.model_validate(item))
        except ValidationError:
            log.warning("reamaze_item_skipped", kind="attachment")
    return out


class WireConversationRef(Wire):
    slug: LenientStr = None
    subject: LenientStr = None
    created_at: LenientDatetime = None
    category: LenientCategory = None


LenientConversationRef = Annotated[WireConversationRef | None, WrapValidator(_or_none)]


class WireMessage(Wire):
    created_at: AwareDatetime
    body: Annotated[str, WrapValidator(lambda v, _h: v if isinstance(v, str) else "")] = ""
    original_body: LenientStr = None  # the HTML, only with ``include=original_body``
    visibility: Any = None  # 0 public, 1 internal, 2 collision; anything else is unsafe
    origin: LenientInt = None
    origin_id: IdText = None
    user: LenientUser = None
    recipients: Annotated[list[Any], WrapValidator(lambda v, _h: v if isinstance(v, list) else [])
                          ] = Field(default_factory=list)
    attachments: Annotated[list[WireAttachment], WrapValidator(lambda v, _h: _attachments(v))
                           ] = Field(default_factory=list)
    conversation: LenientConversationRef = None


class WireContact(Wire):
    id: IdText = None  # the caller's external id
    internal_id: IdText = Field(default=None, alias="_id")
    name: LenientStr = None
    email: LenientStr = None
    mobile: LenientStr = None
    friendly_name: LenientStr = None
    data: AnyDict = Field(default_factory=dict)
    created_at: LenientDatetime = None
    updated_at: LenientDatetime = None


class WireStaff(Wire):
    email: RequiredText
    name: LenientStr = None
    display_name: LenientStr = None
    created_at: LenientDatetime = None
    role: AnyDict = Field(default_factory=dict)  # permissions hash; keys "may change" (docs)


class WireChannel(Wire):
    slug: RequiredText
    name: LenientStr = None
    email: LenientStr = None
    channel: LenientInt = None
    visibility: LenientInt = None
    created_at: LenientDatetime = None
    updated_at: LenientDatetime = None


def _error_summary(exc: ValidationError) -> list[str]:
    # Field locations and error types only: values may be customer data.
    return [".".join(str(p) for p in e["loc"]) + ":" + e["type"] for e in exc.errors()][:5]


def parse_one(model: type[M], raw: Any, *, object_id: str | None = None) -> M:
    """Validate a single object; a bad one is a BadPayloadError naming the broken fields."""
    if not isinstance(raw, Mapping):
        raise BadPayloadError(f"expected a JSON object for {model.__name__}, "
                              f"got {type(raw).__name__}", connector=CONNECTOR,
                              object_id=object_id)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise BadPayloadError(f"invalid {model.__name__}: {', '.join(_error_summary(exc))}",
                              connector=CONNECTOR, object_id=object_id) from None


def parse_items(model: type[M], items: list[Any], *, kind: str) -> list[M]:
    """Validate list items, skipping (and logging) the ones that do not fit."""
    out: list[M] = []
    for index, raw in enumerate(items):
        try:
            if not isinstance(raw, Mapping):
                raise TypeError(type(raw).__name__)
            out.append(model.model_validate(raw))
        except (ValidationError, TypeError) as exc:
            errors = _error_summary(exc) if isinstance(exc, ValidationError) else [
                f"not an object ({exc})"]
            hint = raw.get("slug") if isinstance(raw, Mapping) else None
            log.warning("reamaze_item_skipped", kind=kind, index=index,
                        slug=hint if isinstance(hint, str) else None, errors=errors)
    return out


_DATETIME = TypeAdapter(AwareDatetime)


def parse_datetime(value: Any) -> datetime | None:
    """An aware datetime from an ISO string, or None."""
    try:
        return _DATETIME.validate_python(value)
    except ValidationError:
        return None

