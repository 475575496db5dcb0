"""Fault injection and the request log of the Redmine simulator."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class Fault:
    status: int | None = None
    times: int = 1
    method: str | None = None
    path: str | None = None  # regex searched in the URL path
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    timeout: bool = False
    delay: float = 0.0
    after: bool = False
    action: Callable[[httpx.Request], None] | None = None
    hits: int = 0

    def matches(self, request: httpx.Request) -> bool:
        return (self.times > 0
                and (self.method is None or self.method.upper() == request.method)
                and (self.path is None or re.search(self.path, request.url.path) is not None))


class Faults:
    def __init__(self) -> None:
        self._rules: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, *, status: int | None = None, times: int = 1, method: str | None = None,
            path: str | None = None, headers: dict[str, str] | None = None, body: bytes = b"",
            timeout: bool = False, delay: float = 0.0, after: bool = False,
            action: Callable[[httpx.Request], None] | None = None) -> Fault:
        """Match the next ``times`` requests (by method and path regex) and answer ``status``
        with ``headers``/``body``, or raise ``httpx.ReadTimeout`` (``timeout``), after
        sleeping ``delay``; ``after=True`` lets the request be processed first (a write
        that landed but whose answer was lost); ``action`` runs before anything else."""
        fault = Fault(status=status, times=times, method=method, path=path,
                      headers=dict(headers or {}), body=body, timeout=timeout, delay=delay,
                      after=after, action=action)
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, request: httpx.Request) -> Fault | None:
        with self._lock:
            for fault in self._rules:
                if fault.matches(request):
                    fault.times -= 1
                    fault.hits += 1
                    return fault
        return None


@dataclass(frozen=True)
class SimRequest:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    status: int | None
    user: str | None
