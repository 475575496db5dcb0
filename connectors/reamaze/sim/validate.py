"""Request validation for the simulator's write endpoints (reference §5.3, §5.4, §5.6).

Each validator collects every problem and raises ``Invalid`` (422 with Rails-style
``{"errors": {field: [messages]}}``) or returns a typed, checked write. Where clients
disagree with the docs the simulator is lenient the way Rails would be: an unwrapped
message body, ``suppress_notification`` or ``suppress_notifications``, a PUT ``assignee``
as a ``{"email"}`` hash or a bare email string, booleans and integers sent as strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, TypeAdapter, ValidationError

from connectors.reamaze.sim.http import JSON, Invalid
from connectors.reamaze.sim.state import SimPerson, SimState

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
URL_RE = re.compile(r"^https?://[^\s/]+\S*$")
_AWARE = TypeAdapter(AwareDatetime)


def parse_when(value: Any) -> datetime | None:
    """An ISO-8601 time; a bare date or a naive time is read as UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        text += "T00:00:00Z"
    try:
        return _AWARE.validate_python(text)
    except ValidationError:
        try:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            return None


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _flag(name: str, *sources: JSON) -> bool:
    for src in sources:
        for key in (name, name.rstrip("s")):
            if key in src:
                return as_bool(src[key])
    return False


def _urls(msg: JSON, errors: dict[str, list[str]]) -> list[str]:
    urls: list[str] = []
    single = msg.get("attachment")
    many = msg.get("attachments")
    if single is not None:
        urls.append(single if isinstance(single, str) else "")
    if many is not None:
        if isinstance(many, list):
            urls.extend(u if isinstance(u, str) else "" for u in many)
        else:
            urls.append("")
    if any(not URL_RE.match(u) for u in urls):
        errors.setdefault("attachment", []).append("must be a URL Re:amaze can fetch")
    return urls


def _recipients(msg: JSON, errors: dict[str, list[str]]) -> list[str]:
    value = msg.get("recipients")
    if value is None:
        return []
    if not isinstance(value, list) or not all(
            isinstance(v, str) and EMAIL_RE.match(v) for v in value):
        errors.setdefault("recipients", []).append("must be a list of email addresses")
        return []
    return list(value)


@dataclass
class ConversationWrite:
    subject: str | None = None
    category: str | None = None
    message_body: str = ""
    user: JSON | None = None
    tags: list[str] | None = None
    status: int | None = None
    hold_until: datetime | None = None
    data: dict[str, Any] | None = None
    assignee: SimPerson | None = None
    attachment_urls: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    suppress_autoresolve: bool = False
    suppress_notifications: bool = False


def validate_conversation_write(state: SimState, body: JSON, *,
                                creating: bool) -> ConversationWrite:
    conv = body.get("conversation")
    if not isinstance(conv, dict):
        raise Invalid({"conversation": ["is missing"]})
    errors: dict[str, list[str]] = {}
    out = ConversationWrite()
    subject = conv.get("subject")
    out.subject = subject if isinstance(subject, str) and subject.strip() else None

    category = conv.get("category")
    if category is not None or creating:
        channel = state.channels.get(category) if isinstance(category, str) else None
        if channel is None:
            errors["category"] = ["can't be blank" if category is None else "not found"]
        elif not creating and channel.channel != 1:
            errors["category"] = ["conversations can only move to an email channel"]
        else:
            out.category = channel.slug

    if creating:
        msg = conv.get("message")
        msg = msg if isinstance(msg, dict) else {}
        text = msg.get("body")
        if not isinstance(text, str) or not text.strip():
            errors["message"] = ["body can't be blank"]
        else:
            out.message_body = text
        out.attachment_urls = _urls(msg, errors)
        out.recipients = _recipients(msg, errors)
        out.suppress_autoresolve = _flag("suppress_autoresolve", msg, conv)
        out.suppress_notifications = _flag("suppress_notifications", msg, conv)
        user = conv.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("email"), str) \
                or not EMAIL_RE.match(user["email"]):
            errors["user"] = ["email is invalid"]
        else:
            out.user = user

    if conv.get("status") is not None:
        status = as_int(conv["status"])
        if status is None or not 0 <= status <= 9:
            errors["status"] = ["is not included in the list"]
        out.status = status
    if conv.get("hold_until") is not None:
        out.hold_until = parse_when(conv["hold_until"])
        if out.hold_until is None:
            errors["hold_until"] = ["is not a valid time"]
    if out.status == 5 and out.hold_until is None and "hold_until" not in errors:
        errors["hold_until"] = ["can't be blank when the status is On Hold"]

    tags = conv.get("tag_list")
    if isinstance(tags, str):
        out.tags = [t.strip() for t in tags.split(",") if t.strip()]
    elif isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        out.tags = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
    elif tags is not None:
        errors["tag_list"] = ["must be a list of strings"]

    data = conv.get("data")
    if data is not None:
        if isinstance(data, dict) and all(
                isinstance(v, str | int | float | bool) or v is None for v in data.values()):
            out.data = {str(k): v for k, v in data.items()}
        else:
            errors["data"] = ["must be a flat object"]

    assignee = conv.get("assignee")
    email = assignee.get("email") if isinstance(assignee, dict) else assignee
    if email is not None:
        staff = state.staff.get(email.lower()) if isinstance(email, str) else None
        if staff is None:
            errors["assignee"] = ["is not a staff member"]
        out.assignee = staff
    if errors:
        raise Invalid(errors)
    return out


@dataclass
class MessageWrite:
    body: str
    visibility: int
    user_email: str | None = None
    user_name: str | None = None
    origin_id: str | None = None
    attachment_urls: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    suppress_autoresolve: bool = False
    suppress_notifications: bool = False
    suppress_surveys: bool = False


def validate_message_write(body: JSON) -> MessageWrite:
    # Re:amaze's WordPress plugin posts the fields without the "message" wrapper.
    msg = body["message"] if isinstance(body.get("message"), dict) else body
    errors: dict[str, list[str]] = {}
    text = msg.get("body")
    if not isinstance(text, str) or not text.strip():
        errors["body"] = ["can't be blank"]
    raw_vis = msg.get("visibility", 0)
    visibility = as_int(raw_vis) if raw_vis is not None else 0
    if visibility not in (0, 1):
        errors["visibility"] = ["is not included in the list (0 regular, 1 internal note)"]
    user = msg.get("user")
    user_email = user_name = None
    if user is not None:
        if not isinstance(user, dict) or not isinstance(user.get("email"), str) \
                or not EMAIL_RE.match(user["email"]):
            errors["user"] = ["email is invalid"]
        else:
            user_email = user["email"]
            user_name = user.get("name") if isinstance(user.get("name"), str) else None
    origin_id = msg.get("origin_id")
    if origin_id is not None and (isinstance(origin_id, bool)
                                  or not isinstance(origin_id, str | int)):
        errors["origin_id"] = ["must be a string"]
    urls = _urls(msg, errors)
    recipients = _recipients(msg, errors)
    if errors:
        raise Invalid(errors)
    return MessageWrite(
        body=str(text), visibility=int(visibility or 0), user_email=user_email,
        user_name=user_name, origin_id=None if origin_id is None else str(origin_id),
        attachment_urls=urls, recipients=recipients,
        suppress_autoresolve=_flag("suppress_autoresolve", msg, body),
        suppress_notifications=_flag("suppress_notifications", msg, body),
        suppress_surveys=_flag("suppress_surveys", msg, body))
