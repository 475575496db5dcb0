"""What the scenarios share: a virtual clock, a sandbox whose simulators run on it, the
engine wired to it, request accounting from the simulators' logs, and a CPU split between
the engine and the simulators that run in the same process.

Nothing here replaces engine code. Engines come from ``build_engine`` with transports
pointed at the simulators; the only difference from ``syncer.sandbox`` is that the
simulators and the engine share a clock the benchmark controls.
"""

from __future__ import annotations

import functools
import io
import math
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.redmine.connector import RedmineConnector
from connectors.redmine.sim.simulator import RedmineSimulator
from connectors.redmine.sim.state import SimClock
from state import StateStore
from syncer.app import Engine, build_engine
from syncer.budgets import LearnedBudgets, share_budgets
from syncer.config import parse_config
from syncer.logs import configure_logging
from syncer.sandbox import (
    BRAND,
    LOGIN,
    MARKER_KEY,
    PROJECT,
    REAMAZE_TOKEN,
    Sandbox,
    sandbox_config,
)

Handler = Callable[[httpx.Request], httpx.Response]
STAFF = "jane@acme.example"
PAIR = "bugs"


# --- time -------------------------------------------------------------------------------

class VirtualClock:
    """The engine's and the simulators' clock: this process's CPU time plus virtual waits.

    Every sleep (rate limiter, retry back-off, the daemon's poll interval) returns at once
    and moves the clock on by its length, and the CPU time really spent moves it on too.
    So an hour of polling costs only the work done in it, and rates and latencies come out
    as a wall clock would show them on an otherwise idle machine. CPU time rather than
    wall time: on a shared machine wall time would charge us for other processes. It is
    only faithful while one thread works at a time, which is how the scenarios run.
    """

    def __init__(self, epoch: datetime | None = None) -> None:
        # Far enough in the past that nothing the benchmarks do reaches the real "now".
        self.epoch = epoch or (datetime.now(UTC) - timedelta(days=120)).replace(microsecond=0)
        self._cpu0 = time.process_time()
        self._offset = 0.0
        self.slept = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return (time.process_time() - self._cpu0) + self._offset

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._offset += seconds
                self.slept += seconds

    def advance(self, seconds: float) -> None:
        """Let time pass without anything happening (not counted as sleeping)."""
        with self._lock:
            self._offset += seconds

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=self.monotonic())


C = TypeVar("C")


def following(base: type[C], clock: VirtualClock, step: timedelta, **kw: Any) -> C:
    """A simulator's clock (an instance of its ``base`` clock class) on the virtual clock:
    readings follow it and stay strictly increasing by ``step``, as the simulator's own
    clock guarantees; advancing it advances the virtual clock."""

    class Following(base):  # type: ignore[valid-type,misc]
        # What the simulator reads as "now" between two readings (its rate-limit windows)
        # is the virtual clock too, not the time of its last reading.
        @property
        def current(self) -> datetime:
            return max(clock.now(), self._last)

        @current.setter
        def current(self, value: datetime) -> None:
            self._last = value

        def now(self) -> datetime:
            with self._lock:
                self._last = max(clock.now(), self._last + step)
                return self._last  # type: ignore[no-any-return]

        def advance(self, seconds: float) -> None:
            clock.advance(seconds)

    return Following(start=clock.now(), **kw)  # type: ignore[no-any-return]


def RedmineSimClock(clock: VirtualClock) -> SimClock:
    return following(SimClock, clock, timedelta(microseconds=1),
                     tick=timedelta(microseconds=1))


# --- sandbox and engine -----------------------------------------------------------------------

def bench_sandbox(state_url: str, clock: VirtualClock, *,
                  config: dict[str, Any] | None = None, **pair: Any) -> Sandbox:
    """``syncer.sandbox.make_sandbox`` with both simulators on ``clock``."""
    reamaze = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN,
                               login_name="Sync Bot", clock=clock.now, sleep=clock.sleep)
    reamaze.add_staff(STAFF, "Jane Support")
    redmine = RedmineSimulator(clock=RedmineSimClock(clock), sleep=clock.sleep)
    redmine.add_project(PROJECT, name="Support bugs")
    data = config or sandbox_config(state_url, **pair)
    return Sandbox(reamaze=reamaze, redmine=redmine, config=parse_config(data),
                   environ={"REAMAZE_API_TOKEN": REAMAZE_TOKEN,
                            "REDMINE_API_KEY": redmine.admin_key,
                            "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY})


def bench_engine(sb: Sandbox, clock: VirtualClock, store: StateStore | None = None) -> Engine:
    """The real engine with ``clock`` injected into every connection.

    The Redmine connector also asks for the wall time (its feed waits until a second is
    over before vouching for it); ``build_engine`` has no parameter for that, so the
    tracker is rebuilt with the connector's own factory and ``now=clock.now``.
    """
    transports = sb.transports()
    engine = build_engine(sb.config, environ=sb.environ, transports=transports, clock=clock,
                          store=store)
    for name, cfg in sb.config.trackers.items():
        engine.trackers[name] = RedmineConnector.from_config(
            cfg, SecretStr(sb.environ["REDMINE_API_KEY"]), transport=transports[name],
            clock=clock, now=clock.now)
    # The rebuilt trackers' budgets learn and are kept like the ones build_engine made.
    engine.budgets = LearnedBudgets.of(sb.config, engine.store, engine.connections())
    engine.budgets.restore()
    if sb.config.sync.share_budgets:
        share_budgets(sb.config, engine.store, engine.trackers, now=clock.monotonic)
    return engine


@contextmanager
def quiet_production_logging() -> Iterator[None]:
    """Log as production does (JSON at info, with redaction) into a sink: the engine pays
    for its logging, the terminal stays readable."""
    sink = open(os.devnull, "w")  # noqa: SIM115 - closed below, after the scenario
    try:
        configure_logging(level="info", fmt="json", stream=sink)
        yield
    finally:
        configure_logging(level="warning", fmt="json", stream=io.StringIO())
        sink.close()


# --- seeding ---------------------------------------------------------------------------------

LOREM = ("The app crashes right after login on iOS 17.2; it started with version 4.1. "
         "Steps: open the app, sign in with SSO, tap Orders. Expected the list, got a "
         "white screen and then the home screen. Reinstalling did not help. ")


def seed_conversations(sb: Sandbox, clock: VirtualClock, n: int, *, messages: int = 5,
                       spacing_s: float = 300.0, tag: str = "bug",
                       internal_note_at: int | None = None) -> list[str]:
    """``n`` customer conversations of ``messages`` public customer messages each, spread
    over time (``spacing_s`` between conversations) as real history is; message number
    ``internal_note_at`` (1 … messages-1) an agent's internal note instead."""
    rz = sb.reamaze
    slugs: list[str] = []
    for i in range(n):
        clock.advance(spacing_s)
        slug = rz.add_conversation(f"Crash report {i}", f"#{i}/0 {LOREM}",
                                   f"customer{i}@example.com", customer_name=f"Customer {i}",
                                   tags=[tag])
        for j in range(1, messages):
            clock.advance(spacing_s / (2 * messages))
            text = f"#{i}/{j} more detail: {LOREM[: 60 + 20 * j]}"
            if j == internal_note_at:
                rz.add_staff_message(slug, text, email=STAFF, visibility=1)
            else:
                rz.add_customer_message(slug, text)
        slugs.append(slug)
    return slugs


# --- request accounting -------------------------------------------------------------------------

@dataclass
class Mark:
    """A position in both simulators' request logs."""

    reamaze: int
    redmine: int

    @classmethod
    def of(cls, sb: Sandbox) -> Mark:
        return cls(len(sb.reamaze.requests), len(sb.redmine.requests))


def classify_reamaze(method: str, path: str) -> str:
    parts = path.removeprefix("/api/v1/").removesuffix(".json").split("/")
    if parts[0] == "conversations":
        if len(parts) == 1:
            return "rz_list_conversations" if method == "GET" else "rz_create_conversation"
        if len(parts) == 2:
            return "rz_get_conversation" if method == "GET" else "rz_update_conversation"
        if parts[2] == "messages":
            return "rz_list_messages" if method == "GET" else "rz_create_message"
    if parts == ["messages"] and method == "GET":
        return "rz_list_brand_messages"  # across conversations, by tag
    return f"rz_other {method} /{parts[0]}"


def classify_redmine(method: str, path: str, query: dict[str, str], body: bytes) -> str:
    if path == "/issues.json":
        if method == "GET" and "description" in query:
            return "rm_find_by_marker"
        return "rm_list_issues" if method == "GET" else "rm_create_issue"
    if path == "/users/current.json":
        return "rm_whoami"
    if path.startswith("/issues/"):
        if method == "GET":
            return ("rm_get_issue_journals" if "journals" in query.get("include", "")
                    else "rm_get_issue")
        if method == "PUT":
            return "rm_add_note" if b'"notes"' in body else "rm_update_issue"
    if path.startswith("/journals/"):
        return "rm_update_journal"
    first = path.strip("/").split("/")[0].removesuffix(".json")
    return f"rm_other {method} /{first}"


def tally(sb: Sandbox, since: Mark) -> Counter[str]:
    """Requests the simulators answered since ``since``, by kind (429s counted apart)."""
    counts: Counter[str] = Counter()
    for r in sb.reamaze.requests[since.reamaze:]:
        counts["rz_429" if r.status == 429 else classify_reamaze(r.method, r.path)] += 1
    for q in sb.redmine.requests[since.redmine:]:
        counts["rm_429" if q.status == 429 else
               classify_redmine(q.method, q.path, q.query, q.body)] += 1
    return counts


def total_calls(counts: Counter[str]) -> int:
    return sum(counts.values())


def engine_request_count(engine: Engine) -> int:
    """Requests as the engine's own ApiClients counted them (cross-check of the logs)."""
    total = 0
    for conn in engine.connections().values():
        for attr in ("api", "api_once"):
            api = getattr(conn, attr, None)
            stats = getattr(api, "stats", None)
            if stats is not None:
                total += int(stats.requests)
    return total


# --- CPU ---------------------------------------------------------------------------------------

@dataclass
class SimCpu:
    """CPU time spent inside the simulators' handlers (they run in the engine's thread,
    so process CPU minus this is the engine's share)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def wrap(self, name: str, handler: Handler) -> Handler:
        @functools.wraps(handler)
        def timed(request: httpx.Request) -> httpx.Response:
            start = time.process_time()
            try:
                return handler(request)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.process_time() - start
        return timed

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def reset(self) -> None:
        self.seconds.clear()


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    sim_cpu_s: float

    @property
    def engine_cpu_s(self) -> float:
        return max(self.cpu_s - self.sim_cpu_s, 0.0)

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": round(self.wall_s, 4), "cpu_s": round(self.cpu_s, 4),
                "sim_cpu_s": round(self.sim_cpu_s, 4),
                "engine_cpu_s": round(self.engine_cpu_s, 4)}


@contextmanager
def measure(cpu: SimCpu) -> Iterator[list[Measured]]:
    """``with measure(cpu) as m: ...`` then ``m[0]`` holds the figures."""
    out: list[Measured] = []
    cpu.reset()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    yield out
    out.append(Measured(time.perf_counter() - wall0, time.process_time() - cpu0, cpu.total))


def http_client_cost_s(requests: int = 500) -> float:
    """CPU seconds httpx itself takes for one JSON request and response, with a transport
    that answers at once: the floor under any engine that talks HTTP through it."""
    client = httpx.Client(base_url="http://bench.invalid", transport=httpx.MockTransport(
        lambda _request: httpx.Response(200, json={"issue": {"id": 1, "subject": "x" * 80}})))
    body = {"issue": {"notes": "y" * 200, "private_notes": False}}
    with client:
        start = time.process_time()
        for _ in range(requests):
            client.put("/issues/1.json", json=body).json()
        return (time.process_time() - start) / requests


# --- statistics ---------------------------------------------------------------------------

def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported value was observed)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


@dataclass
class StoreCpu:
    """CPU time spent in the state store's public methods (outermost calls only).

    Instrumentation for the breakdown: the store instance's methods are wrapped in place,
    their behaviour is untouched."""

    seconds: float = 0.0
    calls: int = 0
    by_method: dict[str, list[float]] = field(default_factory=dict)  # name -> [s, calls]
    _depth: int = 0

    def attach(self, store: StateStore) -> None:
        for name in dir(type(store)):
            if name.startswith("_") or name in ("atomic", "close", "in_memory"):
                continue
            method = getattr(store, name)
            if callable(method):
                setattr(store, name, self._wrap(method))

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return method(*args, **kwargs)
            self._depth += 1
            start = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent = time.process_time() - start
                self.seconds += spent
                self.calls += 1
                entry = self.by_method.setdefault(method.__name__, [0.0, 0])
                entry[0] += spent
                entry[1] += 1
                self._depth -= 1
        return timed

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0
        self.by_method.clear()

    def top(self, per: int, limit: int = 8) -> list[dict[str, Any]]:
        """The costliest methods, with calls and CPU ms per ``per`` (e.g. conversations)."""
        rows = sorted(self.by_method.items(), key=lambda kv: kv[1][0], reverse=True)
        return [{"method": name, "calls_per_unit": round(calls / per, 2),
                 "cpu_ms_per_unit": round(1000 * spent / per, 2),
                 "cpu_ms_per_call": round(1000 * spent / calls, 3) if calls else 0.0}
                for name, (spent, calls) in rows[:limit]]
