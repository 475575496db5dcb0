"""Rate-limit utilisation: how close to a server's request budget the engine runs, and
how many 429s it provokes on the way.

The servers get a budget on the virtual clock: the Re:amaze simulator its own per-minute
limit (``rate_limit``), the Redmine simulator (real Redmine has none) a sliding one-minute
window in front of it that answers 429 with ``Retry-After``, like GitHub's secondary
limit. The engine is configured as an operator would: ``requests_per_minute`` set to the
documented limit. A backfill then runs for several virtual minutes; every wait (rate
limiter, ``Retry-After``) passes on the virtual clock, so minutes cost milliseconds.

Variants: the limit counted on all requests with burst 5 and with the default burst (1);
and a GitHub-style limit counted on writes only (``POST``/``PUT``). For that one the
tracker connection is configured with ``writes_per_minute`` = the server's write limit and
``requests_per_minute`` = ``WRITES_ONLY_OVERALL`` (300, the Redmine connection's default):
writes are about 55 % of the engine's Redmine requests, so 80 writes a minute need some
150 requests a minute, and 300 leaves the write budget as the one that sets the pace. With
a single budget set to the write limit, reads spent it too and only 55 % of the write limit
was used.

With ``engine_budget`` the engine is configured above the servers' limit (an operator's
guess at an unpublished limit, 50 % too high): the connections learn the real limit from
the 429s (``connectors.learned_rate``). The figures are then the 429s, when they came
(in the first ``SETTLE_MINUTES`` or later) and the rates learned.
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections import deque
from collections.abc import Collection
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    Handler,
    Mark,
    VirtualClock,
    bench_engine,
    bench_sandbox,
    quiet_production_logging,
    seed_conversations,
    tally,
)
from bench.scenarios.backfill import one_pass, verify_backfill
from syncer.config import HttpSettings
from syncer.sandbox import TRACKER, sandbox_config

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The engine's overall Redmine budget when only writes are limited: the connection's default.
WRITES_ONLY_OVERALL = 300
# Learning is judged on the 429s after this many virtual minutes.
SETTLE_MINUTES = 5.0


class WindowLimit:
    """A server's per-minute budget: a sliding 60 s window on the virtual clock."""

    def __init__(self, per_minute: int, clock: VirtualClock,
                 methods: Collection[str] | None = None) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.methods = methods
        self.admitted = 0
        self.rejected = 0
        self.rejected_at: list[float] = []
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def wrap(self, handler: Handler) -> Handler:
        def limited(request: httpx.Request) -> httpx.Response:
            if self.methods is None or request.method in self.methods:
                with self._lock:
                    now = self.clock.monotonic()
                    while self._times and now - self._times[0] >= 60:
                        self._times.popleft()
                    if len(self._times) >= self.per_minute:
                        self.rejected += 1
                        self.rejected_at.append(now)
                        wait = 60 - (now - self._times[0])
                        return httpx.Response(
                            429, json={"error": "rate limit exceeded"},
                            headers={"Retry-After": str(max(1, math.ceil(wait)))})
                    self._times.append(now)
                    self.admitted += 1
            return handler(request)
        return limited


class Refusals:
    """When a handler answered 429, on the virtual clock."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.at: list[float] = []

    def wrap(self, handler: Handler) -> Handler:
        def recorded(request: httpx.Request) -> httpx.Response:
            response = handler(request)
            if response.status_code == 429:
                self.at.append(self.clock.monotonic())
            return response
        return recorded


def _learned(conn: object) -> float | None:
    api = getattr(conn, "api", None)
    limiter = getattr(api, "rate_limiter", None)
    return None if limiter is None else round(limiter.learned_per_minute, 2)


def run_rate_limit(n: int, *, limit: int = 80, burst: int | None = None,
                   writes_only: bool = False, messages: int = 5,
                   overall: int = WRITES_ONLY_OVERALL,
                   engine_budget: int | None = None,
                   reamaze_only: bool = False) -> dict[str, Any]:
    """Backfill ``n`` conversations against servers allowing ``limit`` requests a minute.

    ``writes_only``: the tracker limits only its writes to ``limit``; the engine's tracker
    connection gets ``writes_per_minute = limit`` and ``requests_per_minute = overall``.
    ``engine_budget``: the engine's ``requests_per_minute`` (default: ``limit``).
    ``reamaze_only``: only Re:amaze limits (as the real services do: Redmine has no limit),
    the tracker connection keeps ``overall`` requests a minute; Re:amaze sets the pace.
    """
    http: dict[str, Any] = {"requests_per_minute": engine_budget or limit}
    if burst is not None:
        http["burst"] = burst
    tracker_http = dict(http)
    if writes_only:
        tracker_http.update(requests_per_minute=overall, writes_per_minute=limit)
    if reamaze_only:
        tracker_http.update(requests_per_minute=overall)
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp, \
            quiet_production_logging():
        clock = VirtualClock()
        config = sandbox_config(f"sqlite:///{Path(tmp) / 'state.db'}")
        config["reamaze"]["http"] = dict(http)
        config["trackers"][TRACKER]["http"] = tracker_http
        sb = bench_sandbox(config["state"]["url"], clock, config=config)
        window = WindowLimit(limit, clock, WRITES if writes_only else None)
        reamaze_refusals = Refusals(clock)
        sb.wrap = lambda name, handler: (
            (handler if reamaze_only else window.wrap(handler)) if name == TRACKER
            else reamaze_refusals.wrap(handler))
        if not writes_only:
            sb.reamaze.rate_limit(limit)
        slugs = seed_conversations(sb, clock, n, messages=messages)
        clock.advance(3600)
        engine = bench_engine(sb, clock)
        try:
            mark = Mark.of(sb)
            start, slept0 = clock.monotonic(), clock.slept
            result = one_pass(engine, kind="backfill", full=True)
            minutes = (clock.monotonic() - start) / 60
            slept = clock.slept - slept0
            verify_backfill(sb, engine, slugs, messages)
            learned = {"reamaze": _learned(engine.helpdesk),
                       "redmine": _learned(engine.trackers[TRACKER])}
        finally:
            engine.close()
    calls = tally(sb, mark)
    redmine_calls = sum(v for k, v in calls.items() if k.startswith("rm_") and k != "rm_429")
    redmine_writes = sum(v for k, v in calls.items()
                         if k in ("rm_create_issue", "rm_add_note", "rm_update_issue"))
    reamaze_calls = sum(v for k, v in calls.items() if k.startswith("rz_") and k != "rz_429")
    limited = reamaze_calls if reamaze_only else redmine_writes if writes_only else redmine_calls
    rejected = window.rejected + calls.get("rz_429", 0)
    settled = start + SETTLE_MINUTES * 60
    late = sum(1 for t in [*window.rejected_at, *reamaze_refusals.at] if t >= settled)
    return {
        "conversations": n,
        "limit_per_minute": limit,
        "limit_counts": ("Re:amaze requests (Redmine unlimited)" if reamaze_only
                         else "writes (POST/PUT)" if writes_only else "all requests"),
        "engine_requests_per_minute": http["requests_per_minute"] if reamaze_only
        else tracker_http["requests_per_minute"],
        "engine_writes_per_minute": tracker_http.get("writes_per_minute"),
        "engine_burst": burst if burst is not None else HttpSettings().burst,
        "virtual_minutes": round(minutes, 2),
        "engine_waited_s": round(slept, 1),
        "redmine_requests": redmine_calls,
        "redmine_writes": redmine_writes,
        "reamaze_requests": reamaze_calls,
        "limited_per_minute": round(limited / minutes, 2),
        "utilisation": round(limited / minutes / limit, 4),
        "responses_429": rejected,
        "responses_429_after_settling": late,
        "settle_minutes": SETTLE_MINUTES,
        "learned_per_minute": learned,
        "failed_operations": len(result.failed),
        "counts": dict(sorted(result.counts.items())),
    }
