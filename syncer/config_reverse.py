"""``[pairs.reverse]``: tracker issues that get a Re:amaze conversation (reverse creation).

Off by default. An issue matches by label (trackers with labels, GitHub) or by tracker type
(Redmine, which has no labels: ``tracker_ids``). The conversation is opened for the customer
the issue names (a ``Customer: email`` line in its description) or, failing that, for
``fallback_contact``; nothing is emailed to anyone (see README, "Reverse creation").
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from connectors.settings import Strict, TrackerSettings

EMAIL_RE = r"[^@\s]+@[^@\s]+\.[^@\s]+"


class ReverseRules(Strict):
    enabled: bool = False
    labels: list[str] = []  # any of these labels on the issue (GitHub)
    tracker_ids: list[int] = []  # any of these Redmine tracker ids (Bug = 1 by default)
    # Redmine: the id of an issue custom field holding the customer's email; it is read
    # before the description's "Customer: email" line.
    contact_field_id: int | None = Field(None, ge=1)
    fallback_contact: str | None = None  # the contact when the issue names no customer
    # Channel slug of the new conversation; None: the brand's first email channel.
    category: str | None = Field(None, min_length=1)
    tags: list[str] = []  # put on the new conversation

    @field_validator("fallback_contact")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(EMAIL_RE, v):
            raise ValueError(f"{v!r} is not an email address")
        return v

    @property
    def matches_anything(self) -> bool:
        return bool(self.labels or self.tracker_ids)


def reverse_problems(section: str, pair: dict[str, Any], tracker: str,
                     model: type[TrackerSettings] | None) -> list[tuple[str, str, str]]:
    """Settings of ``[pairs.reverse]`` that would make it do nothing, or fail every issue
    it matched, without a word; each names its key. Read from plain data, so they are
    reported together with field errors elsewhere."""
    table = pair.get("reverse")
    if not isinstance(table, dict):
        return []
    where = f"{section}.reverse"
    problems: list[tuple[str, str, str]] = []
    enabled = table.get("enabled") is True
    if enabled and not (table.get("labels") or table.get("tracker_ids")):
        problems.append((where, "enabled", "true, but no issue can match: set labels "
                         "(GitHub) or tracker_ids (Redmine)"))
    if enabled and not table.get("fallback_contact"):
        problems.append((where, "fallback_contact", "required when enabled: an issue that "
                         "names no customer (no 'Customer: email' line) needs a contact; "
                         "set it to an internal address"))
    if model is None:
        return problems
    if table.get("labels") and not model.has_labels:
        problems.append((where, "labels", f"tracker {tracker!r} is a {model.kind_tag()} "
                         "tracker, which has no labels; use tracker_ids"))
    if table.get("tracker_ids") and model.kind_tag() != "redmine":
        problems.append((where, "tracker_ids", f"tracker {tracker!r} is a "
                         f"{model.kind_tag()} tracker, which has no tracker types; use "
                         "labels"))
    if table.get("contact_field_id") is not None and model.kind_tag() != "redmine":
        problems.append((where, "contact_field_id", f"tracker {tracker!r} is a "
                         f"{model.kind_tag()} tracker, which has no custom fields; name the "
                         "customer on a 'Customer: email' line of the issue"))
    return problems
