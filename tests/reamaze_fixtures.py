"""Fixtures for the Re:amaze tests: a simulator on a controllable clock and a connector
wired to it through ``httpx.MockTransport`` (loaded with ``pytest_plugins``)."""

from __future__ import annotations

import httpx
import pytest
from reamaze_support import AGENT, BRAND, LOGIN, TOKEN, RecordingClock, make_connector

from connectors.reamaze.connector import ReamazeConnector
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.reamaze.sim.state import SimClock


@pytest.fixture
def rz_sim_clock() -> SimClock:
    return SimClock()


@pytest.fixture
def rz_sim(rz_sim_clock: SimClock) -> ReamazeSimulator:
    simulator = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=TOKEN, clock=rz_sim_clock,
                                 sleep=rz_sim_clock.advance)
    simulator.add_staff(AGENT, "Agnes Agent")
    return simulator


@pytest.fixture
def rz_clock(rz_sim_clock: SimClock) -> RecordingClock:
    return RecordingClock(rz_sim_clock)


@pytest.fixture
def rz_conn(rz_sim: ReamazeSimulator, rz_clock: RecordingClock) -> ReamazeConnector:
    return make_connector(rz_sim, rz_clock)


@pytest.fixture
def rz_raw(rz_sim: ReamazeSimulator) -> httpx.Client:
    """A plain authenticated client on the simulator, for testing its HTTP surface."""
    return httpx.Client(base_url=f"https://{BRAND}.reamaze.io/api/v1",
                        auth=httpx.BasicAuth(LOGIN, TOKEN),
                        headers={"Accept": "application/json"},
                        transport=httpx.MockTransport(rz_sim.handle))
