"""Shared helpers for the Re:amaze tests (constants, a recording clock, builders)."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from connectors.reamaze.connector import ReamazeConnector
from connectors.reamaze.sim_state import SimClock
from connectors.reamaze.simulator import ReamazeSimulator
from syncer.config import HttpSettings, ReamazeConfig

BRAND = "acme"
LOGIN = "bot@acme.example"
TOKEN = "tok-5ecret-VALUE-123"
AGENT = "agent@acme.example"


class RecordingClock:
    """The ApiClient's clock: records every sleep and moves the simulator's time with it,
    so a per-minute rate limit in the simulator sees the client's back-off."""

    def __init__(self, sim_clock: SimClock | None = None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.sim_clock = sim_clock

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.sim_clock is not None:
            self.sim_clock.advance(seconds)


def make_config(**overrides: Any) -> ReamazeConfig:
    values: dict[str, Any] = {
        "brand": BRAND, "login_email": LOGIN,
        "http": HttpSettings(requests_per_minute=60_000, burst=1000, max_attempts=8),
        "overlap_seconds": 120,
    }
    values.update(overrides)
    return ReamazeConfig(**values)


def make_connector(sim: ReamazeSimulator, clock: RecordingClock, *, token: str = TOKEN,
                   **overrides: Any) -> ReamazeConnector:
    return ReamazeConnector.from_config(make_config(**overrides), SecretStr(token),
                                        transport=httpx.MockTransport(sim.handle), clock=clock)
