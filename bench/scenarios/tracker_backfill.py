"""The backfill driver the GitHub and GitLab scenarios share: seeded Re:amaze history, one
``backfill`` pass against the tracker's simulator at the connection's default budgets, the
settle passes, then idle polls; requests classified by kind on both sides."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from bench.harness import (
    STAFF,
    VirtualClock,
    classify_reamaze,
    quiet_production_logging,
    seed_conversations,
)
from bench.scenarios.backfill import one_pass
from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.app import build_engine
from syncer.config import parse_config
from syncer.sandbox import BRAND, LOGIN, MARKER_KEY, REAMAZE_TOKEN, Sandbox

TRACKER = "tr"
Classify = Callable[[str, str, dict[str, str]], str]


class TrackerSim(Protocol):
    @property
    def requests(self) -> list[Any]: ...

    def transport(self) -> httpx.BaseTransport: ...


@dataclass
class TrackerBackfill:
    """What one backfill did: the requests of the backfill pass by kind, the statuses the
    tracker answered them with, its counts and virtual duration, and an idle poll's
    requests by kind."""

    calls: Counter[str]
    statuses: list[int | None]
    counts: dict[str, int]
    seconds: float
    idle: Counter[str]


def run_tracker_backfill(n: int, messages: int, idle_repeats: int, *,
                         tracker: Callable[[VirtualClock], tuple[TrackerSim, str]],
                         table: dict[str, Any], token_env: str,
                         classify: Classify) -> tuple[TrackerBackfill, TrackerSim]:
    """``tracker(clock)`` builds the simulator and returns it with the sync user's token;
    ``table`` is the pair's ``[trackers.X]`` table (default budgets)."""
    with tempfile.TemporaryDirectory(prefix="bench-tracker-") as tmp, \
            quiet_production_logging():
        clock = VirtualClock()
        rz = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN,
                              login_name="Sync Bot", clock=clock.now, sleep=clock.sleep)
        rz.add_staff(STAFF, "Jane Support")
        sim, token = tracker(clock)
        config = parse_config({
            "state": {"url": f"sqlite:///{Path(tmp) / 'state.db'}"},
            "reamaze": {"brand": BRAND, "login_email": LOGIN,
                        "base_url": f"https://{BRAND}.reamaze.io/api/v1",
                        "http": {"requests_per_minute": 100_000, "burst": 1000}},
            "trackers": {TRACKER: table},
            "pairs": [{"name": "bugs", "tracker": TRACKER, "interval_seconds": 60}]})
        # seed_conversations only needs the sandbox's Re:amaze side.
        sb = Sandbox(reamaze=rz, redmine=None, config=config,  # type: ignore[arg-type]
                     environ={})
        seed_conversations(sb, clock, n, messages=messages)
        clock.advance(3600)
        engine = build_engine(config, clock=clock, environ={
            "REAMAZE_API_TOKEN": REAMAZE_TOKEN, token_env: token,
            "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY},
            transports={"reamaze": httpx.MockTransport(rz.handle),
                        TRACKER: sim.transport()})

        def since(tr_mark: int, rz_mark: int) -> Counter[str]:
            return Counter([classify(r.method, r.path, r.query)
                            for r in sim.requests[tr_mark:]]
                           + [classify_reamaze(r.method, r.path)
                              for r in rz.requests[rz_mark:]])

        try:
            tr_mark, rz_mark = len(sim.requests), len(rz.requests)
            started = clock.monotonic()
            backfill = one_pass(engine, kind="backfill", full=True)
            took = clock.monotonic() - started
            calls = since(tr_mark, rz_mark)
            statuses = [r.status for r in sim.requests[tr_mark:]]
            for _ in range(2):  # settle: the backfill's own writes come back once
                one_pass(engine)
            clock.advance(3600)
            idle: Counter[str] = Counter()
            for _ in range(idle_repeats):
                tr_mark, rz_mark = len(sim.requests), len(rz.requests)
                one_pass(engine)
                idle = since(tr_mark, rz_mark)
                clock.advance(60)
        finally:
            engine.close()
    return TrackerBackfill(calls=calls, statuses=statuses,
                           counts=dict(sorted(backfill.counts.items())), seconds=took,
                           idle=idle), sim
