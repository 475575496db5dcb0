"""Fault injection shared by every simulator.

Rules are programmed by tests and benchmarks (``sim.faults.add(status=429,
retry_after="2", times=5)``) and consulted in order before a request reaches the
simulated API; the first live rule that matches wins and spends one of its ``times``.
A rule can answer with a status and body, raise ``httpx.ReadTimeout`` (what a client sees
when the server hangs), or only delay the real answer. ``skip`` lets the first N matching
requests through, so a fault can land on page 2 of a walk. ``commit=True`` applies the
request before answering with the fault: a write that succeeded but whose response was
lost (the duplicate-create window). ``action`` runs a callback first, e.g. to change the
simulated data between two page reads.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

DefaultBody = Callable[[int], tuple[bytes, str | None]]


@dataclass(frozen=True)
class SimRequest:
    """One request as a simulator's log keeps it (``sim.requests``)."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes
    status: int | None  # None: no answer (a simulated timeout)
    user: str | None


def _empty(_status: int) -> tuple[bytes, str | None]:
    return b"", None


@dataclass
class FaultRule:
    status: int | None = None  # None: let the real answer through (after delay_s)
    times: int | None = 1  # None: forever
    method: str | None = None
    path_prefix: str | None = None  # the URL path starts with this
    path: str | None = None  # a regex searched in the URL path
    params: Mapping[str, str] | None = None  # every listed query parameter must match
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: str | None = None
    body: bytes | None = None  # None: the simulator's usual error body for the status
    content_type: str | None = None
    timeout: bool = False
    delay_s: float = 0.0
    skip: int = 0
    commit: bool = False  # the request takes effect first; only its answer is replaced/lost
    action: Callable[[httpx.Request], None] | None = None
    hits: int = 0

    def matches(self, request: httpx.Request) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method is not None and request.method.upper() != self.method.upper():
            return False
        path = request.url.path
        if self.path_prefix is not None and not path.startswith(self.path_prefix):
            return False
        if self.path is not None and re.search(self.path, path) is None:
            return False
        return all(request.url.params.get(k) == v for k, v in (self.params or {}).items())

    def response(self, default_body: DefaultBody = _empty) -> httpx.Response | None:
        if self.status is None:
            return None
        body, content_type = (self.body, self.content_type) if self.body is not None \
            else default_body(self.status)
        headers = dict(self.headers)
        if content_type or self.content_type:
            headers.setdefault("Content-Type", self.content_type or content_type or "")
        if self.retry_after is not None:
            headers["Retry-After"] = self.retry_after
        return httpx.Response(self.status, headers=headers, content=body)


class Faults:
    def __init__(self, default_body: DefaultBody = _empty) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self.default_body = default_body

    def add(self, status: int | None = None, **kw: object) -> FaultRule:
        rule = FaultRule(status=status, **kw)  # type: ignore[arg-type]
        if (rule.status is None and not rule.timeout and rule.delay_s <= 0
                and rule.action is None):
            raise ValueError("a fault needs a status, timeout=True, a delay or an action")
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
                if not rule.matches(request):
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

    def apply(self, request: httpx.Request, dispatch: Callable[[], httpx.Response],
              sleep: Callable[[float], None]) -> tuple[httpx.Response, FaultRule | None]:
        """Run one request through the rules around the simulator's ``dispatch``."""
        rule = self.take(request)
        if rule is None:
            return dispatch(), None
        if rule.action is not None:
            rule.action(request)
        if rule.delay_s > 0:
            sleep(rule.delay_s)
        real = dispatch() if rule.commit or (rule.status is None and not rule.timeout) else None
        if rule.timeout:
            raise httpx.ReadTimeout("simulated read timeout", request=request)
        answer = rule.response(self.default_body) or real
        assert answer is not None  # a rule without status always dispatched
        return answer, rule
