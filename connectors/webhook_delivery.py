"""What every tracker's webhook verification answers: a ``Delivery`` reduced to the issue
it concerns, or ``WebhookRefused`` with the HTTP status to answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class WebhookRefused(Exception):
    """A delivery that must not be acted on; ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    event: str
    action: str
    repo: str
    issue_id: str | None  # None: an event that concerns no issue (a ping)
    changed_at: datetime | None


def parse_time(value: object) -> datetime | None:
    """An aware time from ISO 8601, or GitLab's older ``2013-12-03 17:15:43 UTC``."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(" UTC"):
        text = text[:-4].replace(" ", "T") + "+00:00"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
