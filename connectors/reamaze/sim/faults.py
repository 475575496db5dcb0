"""Request accounting and the per-minute limit of the Re:amaze simulator.

The per-minute limit mimics Re:amaze's undisclosed "certain number per minute per API
token" with a sliding window and a ``Retry-After`` header. Fault injection is shared by
every simulator: ``connectors.simfaults``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def error_body(status: int) -> tuple[bytes, str]:
    """Re:amaze's error shape for an injected fault without an explicit body."""
    text = b'{"error": "Too Many Requests"}' if status == 429 else \
        b'{"error": "Internal Server Error"}'
    return text, "application/json; charset=utf-8"


class MinuteWindow:
    """Sliding one-minute request budget measured on the simulator's own clock."""

    def __init__(self, per_minute: int) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self._times: deque[datetime] = deque()

    def admit(self, now: datetime) -> float | None:
        """None when admitted, else the seconds until a slot frees up."""
        while self._times and (now - self._times[0]).total_seconds() >= 60:
            self._times.popleft()
        if len(self._times) < self.per_minute:
            self._times.append(now)
            return None
        return max(60 - (now - self._times[0]).total_seconds(), 0.001)

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    status: int | None = None  # None: the simulated request timed out
    json: Any = None  # the decoded request body of a write, when it was JSON
