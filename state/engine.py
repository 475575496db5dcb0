"""Turn a state URL into a configured SQLAlchemy engine.

SQLite needs care to be a safe home for sync state shared by a daemon and CLI commands:
WAL (readers never block the writer), foreign keys (off by default in SQLite), a busy
timeout, and transactions that take the write lock up front (``BEGIN IMMEDIATE``). A plain
deferred transaction that reads and then writes fails at once with "database is locked"
when another connection wrote in between; the busy timeout cannot help there. Python's
sqlite3 module issues its own BEGIN lazily, so it is switched off and we emit ours.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from syncer.errors import ConfigError

log = structlog.get_logger(__name__)

BUSY_TIMEOUT_SECONDS = 30


class BeginMode(threading.local):
    """How the next SQLite transaction on this thread begins: reads take no lock,
    anything that may write takes the write lock immediately."""

    sql = "BEGIN IMMEDIATE"


def parse_url(url: str) -> URL:
    """Accept sqlite and PostgreSQL URLs; plain ``postgresql://`` means psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"[state] url: cannot parse state database URL: {exc}") from None
    name = parsed.drivername
    if name in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() in ("sqlite", "postgresql"):
        return parsed
    raise ConfigError(f"[state] url: unsupported database {name!r}; "
                      "use sqlite:///path.db or postgresql+psycopg://...")


def safe_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def sqlite_file(url: URL) -> Path | None:
    """The absolute path of a SQLite file database; None for memory and other backends."""
    if url.get_backend_name() != "sqlite" or is_memory_sqlite(url) or url.database is None:
        return None
    return Path(url.database).absolute()


def build_engine(url: URL, begin_mode: BeginMode, *, read_only: bool = False) -> Engine:
    """``read_only``: for commands that only look. Such an engine never creates a SQLite
    file and every write through it fails."""
    if url.get_backend_name() == "postgresql":
        # pre-ping: a long-running daemon must survive a database restart between polls.
        engine = create_engine(url, pool_pre_ping=True)
        if read_only:
            return engine.execution_options(postgresql_readonly=True)
        return engine
    memory = is_memory_sqlite(url)
    connect_args: dict[str, Any] = {"check_same_thread": False}
    if memory:
        # One connection shared by every user of the store; a second connection would
        # see a different, empty in-memory database.
        engine = create_engine(url, poolclass=StaticPool, connect_args=connect_args)
    elif read_only:
        # mode=rw opens an existing file only (never creates one). Not mode=ro: a read-only
        # connection cannot delete the -wal/-shm files it makes a WAL database grow, so
        # every `status` would leave two files behind; query_only refuses the writes.
        path = sqlite_file(url)
        assert path is not None
        uri = f"{path.as_uri()}?mode=rw"

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(uri, uri=True, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_SECONDS)

        engine = create_engine(url, creator=connect)
    else:
        engine = create_engine(url, connect_args={**connect_args,
                                                  "timeout": BUSY_TIMEOUT_SECONDS})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
            if read_only:
                cursor.execute("PRAGMA query_only=ON")
            elif not memory:
                _enable_wal(cursor)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin_mode.sql)

    return engine


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL once; it stays WAL for every later connection.

    The switch needs an exclusive lock and SQLite reports contention on it at once
    instead of waiting, so processes creating the file together retry here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            mode = str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode != "wal":
                mode = str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    if mode != "wal":  # e.g. a file system without shared memory support
        log.warning("state_wal_unavailable", journal_mode=mode)
