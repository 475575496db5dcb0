"""Fixtures for the Redmine tests; load them with ``pytest_plugins = ["redmine_fixtures"]``.

* ``redmine_server`` (session): a real Redmine 5.0 on a free loopback port, started from
  tests/servers/redmine-start.sh and stopped at the end. Skipped with the reason when
  Redmine is not installed, unless REAMAZE_SYNC_REQUIRE_REAL_SERVERS=1 (CI), which turns
  the skip into a failure.
* ``mail_redmine`` (module): another real Redmine, with mail on and delivered as files
  (``Mailbox``), for tests about who Redmine notifies.
* ``redmine_backend``: parametrised over ``simulator`` and ``real`` (marked ``redmine``),
  the same interface on both, so one contract suite proves the simulator faithful.
* ``redmine_sim`` / ``redmine_conn``: the simulator and a connector on it, for the
  simulator-only tests (fault paths), with a clock that never really sleeps.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fakes import FakeClock
from pydantic import SecretStr
from servers.redmine_server import (
    REQUIRE_ENV,
    Mailbox,
    RedmineAdmin,
    RedmineServer,
    real_servers_required,
    redmine_missing_reason,
    start_redmine,
)

from connectors.http import SystemClock
from connectors.redmine.connector import RedmineConnector
from connectors.redmine.sim.simulator import RedmineSimulator
from connectors.redmine.sim.state import SimClock
from syncer.config import HttpSettings, RedmineConfig

SIM_URL = "http://redmine.test"
FAST_HTTP = HttpSettings(requests_per_minute=60_000, burst=1_000, max_attempts=4)
_timings: list[str] = []




def redmine_config(url: str, project: str, **overrides: Any) -> RedmineConfig:
    fields: dict[str, Any] = {"kind": "redmine", "base_url": url, "project": project,
                              "http": FAST_HTTP, **overrides}
    return RedmineConfig.model_validate(fields)


class _SharedTransport(httpx.BaseTransport):
    """One connection pool for every client of a test; closing a client leaves it open."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)

    def close(self) -> None:
        return None


class RedmineBackend:
    """A Redmine to test against: the simulator or a real server, driven the same way."""

    def __init__(self, kind: str, url: str, admin_key: str, *,
                 sim: RedmineSimulator | None = None,
                 server: RedmineServer | None = None) -> None:
        self.kind = kind
        self.url = url
        self.admin_key = admin_key
        self.sim = sim
        self.server = server
        # The real server runs one puma thread, which lingers on an idle keep-alive
        # connection: clients with separate pools wait ~200 ms per switch. One shared pool
        # keeps every request of a test on one connection (~15 ms each).
        self._pool = httpx.HTTPTransport()
        self.transport: httpx.BaseTransport = (httpx.MockTransport(sim.handle) if sim is not None
                                               else _SharedTransport(self._pool))
        self.admin = RedmineAdmin(url, admin_key, transport=self.transport)

    def close(self) -> None:
        self.admin.close()
        self._pool.close()

    def sleep(self, seconds: float) -> None:
        """Let wall time pass (Redmine timestamps have second precision)."""
        if self.sim is not None:
            self.sim.clock.advance(seconds)
        else:
            import time

            time.sleep(seconds)

    def now(self) -> datetime:
        return self.sim.clock.now() if self.sim is not None else datetime.now(UTC)

    def new_project(self, prefix: str = "p") -> str:
        identifier = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.admin.create_project(identifier)
        return identifier

    def new_user(self, project: str, role: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A user with ``role`` in ``project``: (user incl. api_key, membership)."""
        user = self.admin.create_user(f"u{uuid.uuid4().hex[:10]}")
        return user, self.admin.add_member(project, int(user["id"]), role)

    def connector(self, project: str, *, key: str | None = None,
                  **overrides: Any) -> RedmineConnector:
        cfg = redmine_config(self.url, project, **overrides)
        if self.sim is not None:
            return RedmineConnector.from_config(cfg, SecretStr(key or self.admin_key),
                                                transport=self.transport, clock=FakeClock(),
                                                now=self.sim.clock.now)
        return RedmineConnector.from_config(cfg, SecretStr(key or self.admin_key),
                                            transport=self.transport, clock=SystemClock())

    def raw(self, key: str | None = None) -> httpx.Client:
        """A plain client for checking the HTTP surface itself."""
        return httpx.Client(base_url=self.url, transport=self.transport, timeout=30,
                            headers={"X-Redmine-API-Key": key or self.admin_key})


def skip_without_redmine() -> None:
    """Skip (fail in CI, where real servers are mandatory) when Redmine cannot start here."""
    reason = redmine_missing_reason()
    if reason is not None:
        if real_servers_required():
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def redmine_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedmineServer]:
    skip_without_redmine()
    server = start_redmine(tmp_path_factory.mktemp("redmine"))
    _timings.append(f"real Redmine at {server.url} started in {server.started_in:.1f}s")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mail_redmine(tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[RedmineServer, Mailbox]]:
    """A second real Redmine whose mail goes to files, with issue notifications on (the
    session server has them off). Module-scoped: about 5 s more for the modules using it."""
    skip_without_redmine()
    base = tmp_path_factory.mktemp("redmine-mail")
    server = start_redmine(base / "server", mail_dir=base / "mail")
    _timings.append(f"real Redmine with mail at {server.url} started in "
                    f"{server.started_in:.1f}s")
    try:
        server.set_setting("notified_events", "---\n- issue_added\n- issue_updated\n")
        yield server, Mailbox(server, base / "mail")
    finally:
        server.stop()


@pytest.fixture(params=["simulator", pytest.param("real", marks=pytest.mark.redmine)])
def redmine_backend(request: pytest.FixtureRequest) -> Iterator[RedmineBackend]:
    if request.param == "real":
        server: RedmineServer = request.getfixturevalue("redmine_server")
        backend = RedmineBackend("real", server.url, server.admin_key, server=server)
    else:
        sim = RedmineSimulator(clock=SimClock())
        backend = RedmineBackend("simulator", SIM_URL, sim.admin_key, sim=sim)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def redmine_sim() -> RedmineSimulator:
    sim = RedmineSimulator(clock=SimClock(), sleep=lambda _s: None)
    sim.add_project("sync")
    return sim


@pytest.fixture
def redmine_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redmine_conn(redmine_sim: RedmineSimulator, redmine_clock: FakeClock) -> RedmineConnector:
    cfg = redmine_config(SIM_URL, "sync")
    return RedmineConnector.from_config(cfg, SecretStr(redmine_sim.admin_key),
                                        transport=httpx.MockTransport(redmine_sim.handle),
                                        clock=redmine_clock, now=redmine_sim.clock.now)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _timings:
        terminalreporter.write_line(line)
