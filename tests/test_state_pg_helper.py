"""The throwaway-PostgreSQL helper: skip locally, fail in CI, when the server is missing."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from servers.postgres import (
    BINDIR_ENV,
    REQUIRE_ENV,
    PostgresServer,
    find_bindir,
    missing_reason,
    require_or_skip,
)
from state_support import *  # noqa: F403  (pytest fixtures)


def test_missing_server_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the CI switch a missing server is a skip carrying the reason."""
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed here"):
        require_or_skip("not installed here")


def test_missing_server_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """With REAMAZE_SYNC_REQUIRE_REAL_SERVERS=1 a missing server is a failure."""
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="not installed here"):
        require_or_skip("not installed here")


def test_bindir_override_without_binaries_is_reported(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """Pointing the bindir override at a directory without initdb reports the server missing."""
    monkeypatch.setenv(BINDIR_ENV, str(tmp_path))
    assert find_bindir() is None
    reason = missing_reason()
    assert reason is not None and "apt-get install -y postgresql" in reason


@pytest.mark.postgres
def test_server_listens_on_loopback_and_hands_out_fresh_databases(
        postgres_server: PostgresServer) -> None:
    """The session server answers on 127.0.0.1 and each new database is separate and empty."""
    first, second = postgres_server.new_database(), postgres_server.new_database()
    assert first != second and "@127.0.0.1:" in first
    with psycopg.connect(first.replace("+psycopg", "")) as conn:
        conn.execute("CREATE TABLE marker (id int)")
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    with psycopg.connect(second.replace("+psycopg", "")) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'marker'")
        assert tables.fetchone() == (0,)
