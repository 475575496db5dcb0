"""A complete engine wired to the built-in simulators: for the demo, tests and benchmarks.

Nothing here is a test switch in production code: the engine is built by the same
``build_engine`` with each connection's transport pointed at a simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors.http import Clock
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.redmine.sim.simulator import RedmineSimulator
from state import StateStore
from syncer.app import Engine, build_engine
from syncer.config import AppConfig, parse_config

BRAND = "acme"
LOGIN = "sync-bot@acme.example"
REAMAZE_TOKEN = "demo-reamaze-token-0001"
MARKER_KEY = "demo-marker-key-not-for-production-0001"
PROJECT = "support"
TRACKER = "redmine"


def sandbox_config(state_url: str = "sqlite://", *, sync: dict[str, Any] | None = None,
                   **pair: Any) -> dict[str, Any]:
    pair_cfg: dict[str, Any] = {"name": "bugs", "tracker": TRACKER, "interval_seconds": 5,
                                "title_template": "[Re:amaze] {subject}"}
    pair_cfg.update(pair)
    return {
        "state": {"url": state_url},
        "reamaze": {"brand": BRAND, "login_email": LOGIN,
                    "base_url": f"https://{BRAND}.reamaze.io/api/v1",
                    "http": {"requests_per_minute": 100_000, "burst": 1000}},
        "trackers": {TRACKER: {"kind": "redmine", "base_url": "http://redmine.sandbox",
                               "project": PROJECT, "overlap_seconds": 2,
                               "http": {"requests_per_minute": 100_000, "burst": 1000}}},
        "pairs": [pair_cfg],
        "sync": sync or {},
    }


@dataclass
class Sandbox:
    reamaze: ReamazeSimulator
    redmine: RedmineSimulator
    config: AppConfig
    environ: dict[str, str] = field(default_factory=dict)
    wrap: Callable[[str, Callable[[httpx.Request], httpx.Response]],
                   Callable[[httpx.Request], httpx.Response]] | None = None

    def transports(self) -> dict[str, httpx.BaseTransport]:
        handlers: dict[str, Callable[[httpx.Request], httpx.Response]] = {
            "reamaze": self.reamaze.handle, TRACKER: self.redmine.handle}
        if self.wrap is not None:
            handlers = {k: self.wrap(k, h) for k, h in handlers.items()}
        return {k: httpx.MockTransport(h) for k, h in handlers.items()}

    def engine(self, store: StateStore | None = None, clock: Clock | None = None) -> Engine:
        return build_engine(self.config, environ=self.environ, transports=self.transports(),
                            store=store, clock=clock)


def make_sandbox(state_url: str = "sqlite://", *, config: dict[str, Any] | None = None,
                 sync: dict[str, Any] | None = None, **pair: Any) -> Sandbox:
    reamaze = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN,
                               login_name="Sync Bot")
    redmine = RedmineSimulator()
    redmine.add_project(PROJECT, name="Support bugs")
    data = config or sandbox_config(state_url, sync=sync, **pair)
    return Sandbox(reamaze=reamaze, redmine=redmine, config=parse_config(data),
                   environ={"REAMAZE_API_TOKEN": REAMAZE_TOKEN,
                            "REDMINE_API_KEY": redmine.admin_key,
                            "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY})
