"""Fixtures shared by the tests/test_state_*.py modules.

Import them into a test module with ``from state_support import *``; ``db_url`` runs the
same test against SQLite and a throwaway PostgreSQL (see tests/servers/postgres.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from servers.postgres import postgres_server, postgres_url

from state import StateStore

# The fixtures, for `from state_support import *` (explicit imports of fixtures would be
# flagged as redefined by every test that takes them as arguments).
__all__ = ["clock", "db_url", "open_store", "postgres_server", "postgres_url", "store"]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """A settable clock, so timestamps and orderings are exact in tests."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_store(db_url: str, clock: FakeClock) -> Iterator[Callable[[], StateStore]]:
    """Open more stores on the test's database (a daemon and a CLI command, say)."""
    opened: list[StateStore] = []

    def _open() -> StateStore:
        opened.append(StateStore(db_url, clock=clock))
        return opened[-1]

    yield _open
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store: Callable[[], StateStore]) -> StateStore:
    return open_store()
