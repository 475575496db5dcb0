"""Shared helpers for the Re:amaze tests (constants, a recording clock, builders)."""

from __future__ import annotations

from typing import Any

import httpx
from fakes import FakeClock
from pydantic import SecretStr

from connectors.reamaze.connector import ReamazeConnector
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.reamaze.sim.state import SimClock
from syncer.config import HttpSettings, ReamazeConfig

BRAND = "acme"
LOGIN = "bot@acme.example"
TOKEN = "tok-5ecret-VALUE-123"
AGENT = "agent@acme.example"


class RecordingClock(FakeClock):
    """The ApiClient's clock, moving the simulator's time with it, so a per-minute rate
    limit in the simulator sees the client's back-off."""

    def __init__(self, sim_clock: SimClock | None = None) -> None:
        super().__init__(0.0, on_sleep=sim_clock.advance if sim_clock is not None else None)
        self.sim_clock = sim_clock



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
