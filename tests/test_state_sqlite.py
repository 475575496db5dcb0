"""SQLite specifics: WAL, durability across reopen, several stores on one file, in-memory
stores, and how state URLs are read."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from state import StateStore
from state.engine import parse_url, safe_url
from syncer.errors import ConfigError
from syncer.models import Cursor
from syncer.plan import Side, Snapshot

H, T = Side.HELPDESK, Side.TRACKER
CURSOR = Cursor(watermark=datetime(2026, 1, 2, tzinfo=UTC), seen=("x",))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def test_file_database_uses_wal_and_foreign_keys(path: Path) -> None:
    """A file store switches the database to WAL and enforces foreign keys."""
    s = StateStore(f"sqlite:///{path}")
    try:
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with s.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        s.close()


def test_everything_survives_close_and_reopen(path: Path) -> None:
    """Every kind of state written before close is there after reopening the file."""
    url = f"sqlite:///{path}"
    s = StateStore(url)
    s.create_link("p", "conv-1", "101", H)
    s.add_comment_link("p", "conv-1", T, "j1", "m1", "internal", "fp")
    s.save_snapshot("p", "conv-1", Snapshot(tracker_labels=("bug",)))
    s.save_cursor("p", H, CURSOR)
    s.begin_intent("p", "rs-1", "add_comment", "conv-1", H, {"body": "hi"})
    run = s.start_run("p", "poll")
    s.finish_run(run, {"comments": 1}, None)
    s.record_failure("p", T, "102", "bad")
    s.close()

    again = StateStore(url)
    try:
        link = again.get_link("p", "conv-1")
        assert link is not None and link.issue_id == "101"
        assert [c.target_id for c in link.comment_links] == ["m1"]
        assert link.snapshot == Snapshot(tracker_labels=("bug",))
        assert again.get_cursor("p", H) == CURSOR
        assert [i.key for i in again.pending_intents("p")] == ["rs-1"]
        last = again.last_run("p")
        assert last is not None and last.counts == {"comments": 1}
        assert [f.object_id for f in again.list_failures()] == ["102"]
    finally:
        again.close()


def test_two_stores_on_one_file_write_concurrently(path: Path) -> None:
    """A daemon and a CLI command writing read-then-write transactions at once lose nothing."""
    url = f"sqlite:///{path}"
    stores = [StateStore(url), StateStore(url)]
    errors: list[BaseException] = []
    rounds = 40

    def work(n: int, s: StateStore) -> None:
        try:
            for i in range(rounds):
                conversation = f"conv-{n}-{i}"
                with s.atomic():
                    assert s.get_link("p", conversation) is None  # read first, then write
                    s.create_link("p", conversation, f"{n}-{i}", H)
                    s.add_comment_link("p", conversation, H, "m", "j", "public", "fp")
                    s.record_failure("p", H, "shared", f"from {n}")
                    s.save_cursor("p", Side.HELPDESK if n else Side.TRACKER, CURSOR)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n, s)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        for s in stores:
            assert s.count_links("p") == 2 * rounds
            assert s.list_failures("p")[0].attempts == 2 * rounds
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert raw.execute("SELECT count(*) FROM comment_links").fetchone()[0] == 2 * rounds
    finally:
        for s in stores:
            s.close()


def test_reader_is_not_blocked_and_writer_waits(path: Path) -> None:
    """While one store holds a write transaction, another reads at once and its write waits
    for the lock instead of failing."""
    url = f"sqlite:///{path}"
    daemon, cli = StateStore(url), StateStore(url)
    wrote = threading.Event()
    errors: list[BaseException] = []

    def cli_write() -> None:
        try:
            cli.set_failure_skipped("p", H, "conv-9", True)
            wrote.set()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    try:
        daemon.create_link("p", "conv-0", "100", H)
        writer = threading.Thread(target=cli_write)
        with daemon.atomic():
            daemon.create_link("p", "conv-1", "101", H)
            started = time.monotonic()
            assert cli.count_links("p") == 1  # the committed state, without waiting
            assert time.monotonic() - started < 2
            writer.start()
            assert not wrote.wait(0.3)  # queued behind the daemon's transaction
        writer.join(30)
        assert errors == [] and wrote.is_set()
        assert daemon.is_skipped("p", H, "conv-9")
    finally:
        daemon.close()
        cli.close()


def test_in_memory_store_is_shared_across_threads() -> None:
    """Threads writing to one in-memory store all land in the same database."""
    mem = StateStore.in_memory()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                with mem.atomic():
                    mem.create_link("p", f"conv-{n}-{i}", None, H)
                    mem.save_cursor("p", H, CURSOR)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert mem.count_links("p") == 100
    finally:
        mem.close()


def test_in_memory_stores_are_independent() -> None:
    """Each in-memory store is its own empty database."""
    a, b = StateStore.in_memory(), StateStore("sqlite:///:memory:")
    try:
        a.create_link("p", "conv-1", "1", H)
        assert b.get_link("p", "conv-1") is None
        assert a.get_link("p", "conv-1") is not None
    finally:
        a.close()
        b.close()


def test_postgres_urls_default_to_psycopg_and_hide_passwords() -> None:
    """Plain postgresql:// and postgres:// URLs use psycopg 3; the shown URL has no password."""
    for url in ("postgresql://sync:s3cret@db.example/state", "postgres://sync:s3cret@db/state"):
        parsed = parse_url(url)
        assert parsed.drivername == "postgresql+psycopg"
        assert "s3cret" not in safe_url(parsed) and "***" in safe_url(parsed)
    assert parse_url("postgresql+psycopg://h/db").drivername == "postgresql+psycopg"
    assert parse_url("sqlite:///x.db").drivername == "sqlite"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url", "redis://localhost"])
def test_unsupported_urls_are_config_errors(url: str) -> None:
    """Anything but SQLite or PostgreSQL is a configuration error naming [state] url."""
    with pytest.raises(ConfigError, match=r"\[state\] url"):
        StateStore(url)


def test_unopenable_sqlite_path_is_a_config_error(tmp_path: Path) -> None:
    """A database path in a missing directory fails at open with the path in the message."""
    missing = tmp_path / "no-such-dir" / "state.db"
    with pytest.raises(ConfigError, match="no-such-dir"):
        StateStore(f"sqlite:///{missing}")


def test_unreachable_postgres_is_a_config_error_without_password() -> None:
    """A PostgreSQL server that refuses the connection fails at open, password not shown."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(ConfigError) as info:
        StateStore(f"postgresql://sync:hunter2@127.0.0.1:{port}/state")
    assert "cannot open state database" in str(info.value)
    assert "hunter2" not in str(info.value)
