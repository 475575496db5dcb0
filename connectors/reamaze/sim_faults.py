"""Fault injection and request accounting for the Re:amaze simulator.

Rules are programmed by tests (``sim.faults.add(status=429, retry_after="2", times=5)``)
and consulted in order before a request reaches the API logic; the first live rule that
matches wins and spends one of its ``times``. A rule can answer with a status and body,
raise ``httpx.ReadTimeout`` (what a client sees when the server hangs), or only delay the
real answer. ``skip`` lets the first N matching requests through, so a fault can land
on page 2 of a walk. ``commit=True`` applies the request before answering with the fault:
a write that succeeded but whose response was lost (the duplicate-create window).

The per-minute limit mimics Re:amaze's undisclosed "certain number per minute per API
token" with a sliding window and a ``Retry-After`` header.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx


@dataclass
class FaultRule:
    status: int | None = None  # None: let the real answer through (after delay_s)
    times: int | None = 1  # None: forever
    path_prefix: str | None = None  # matched against the URL path, e.g. "/api/v1/conversations"
    method: str | None = None
    params: Mapping[str, str] | None = None  # every listed query parameter must match
    retry_after: str | None = None
    body: bytes | None = None  # raw bytes: malformed JSON, non-UTF-8, huge bodies ...
    content_type: str = "application/json; charset=utf-8"
    timeout: bool = False
    delay_s: float = 0.0
    skip: int = 0
    commit: bool = False  # the request takes effect first; only its answer is replaced/lost
    hits: int = 0

    def matches(self, request: httpx.Request) -> bool:
        if self.method is not None and request.method.upper() != self.method.upper():
            return False
        if self.path_prefix is not None and not request.url.path.startswith(self.path_prefix):
            return False
        return all(request.url.params.get(k) == v for k, v in (self.params or {}).items())

    def response(self) -> httpx.Response | None:
        if self.status is None:
            return None
        headers = {"Content-Type": self.content_type}
        if self.retry_after is not None:
            headers["Retry-After"] = self.retry_after
        body = self.body
        if body is None:
            body = b'{"error": "Too Many Requests"}' if self.status == 429 else \
                b'{"error": "Internal Server Error"}'
        return httpx.Response(self.status, headers=headers, content=body)


class Faults:
    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, status: int | None = None, *, times: int | None = 1,
            path_prefix: str | None = None, method: str | None = None,
            params: Mapping[str, str] | None = None, retry_after: str | None = None,
            body: bytes | None = None, content_type: str = "application/json; charset=utf-8",
            timeout: bool = False, delay_s: float = 0.0, skip: int = 0,
            commit: bool = False) -> FaultRule:
        if status is None and not timeout and delay_s <= 0:
            raise ValueError("a fault needs a status, timeout=True or a delay")
        rule = FaultRule(status=status, times=times, path_prefix=path_prefix, method=method,
                         params=params, retry_after=retry_after, body=body,
                         content_type=content_type, timeout=timeout, delay_s=delay_s,
                         skip=skip, commit=commit)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, request: httpx.Request) -> FaultRule | None:
        """The rule that fires for this request, with its counters spent."""
        with self._lock:
            for rule in self._rules:
                if (rule.times is not None and rule.times <= 0) or not rule.matches(request):
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                if rule.times is not None:
                    rule.times -= 1
                rule.hits += 1
                return rule
        return None

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(r.times for r in self._rules if r.times is not None)


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
