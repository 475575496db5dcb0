"""Opening the database, running migrations, and the transaction rules every method obeys.

Every public store method is its own transaction, unless it runs inside ``atomic()``,
which groups all calls made on this thread into one (a nested block becomes a savepoint
of it, so an exception caught inside the outer block undoes only the inner one). The
engine relies on this to save a cursor in the same transaction as the links and comment
links the cursor vouches for.

The transaction in progress is tracked per thread, so a daemon's worker threads may share
one store; an in-memory store, having a single connection, serialises them.

A pass works its pair under a lease (``lease_pair``, see ``state.locks``); inside
``fenced(lease)`` every write transaction the thread opens first checks the lease, so a
holder that lost its pair cannot commit another write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar, cast

import structlog
from sqlalchemy import CursorResult
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlmodel import Session
from sqlmodel.sql.expression import SelectOfScalar

from state.engine import BeginMode, build_engine, is_memory_sqlite, parse_url, safe_url
from state.locks import (
    DEFAULT_LEASE_SECONDS,
    DbLocks,
    FileLocks,
    Holder,
    MemoryLocks,
    PairLease,
    PairLocks,
)
from state.migrations import migrate
from syncer.errors import ConfigError

log = structlog.get_logger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class StoreCore:
    def __init__(self, url: str, *, clock: Clock = utc_now,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        """Open (creating or migrating) the database at ``url``: ``sqlite:///path.db``,
        ``sqlite://`` for in-memory, or ``postgresql+psycopg://user@host/db``.
        ``lease_seconds``: how long a PostgreSQL lease outlives its last renewal."""
        parsed = parse_url(url)
        self.url = safe_url(parsed)  # password hidden: safe to log or show
        self._clock = clock
        self._begin = BeginMode()
        self._local = threading.local()
        self._serial: AbstractContextManager[Any] = (
            threading.RLock() if is_memory_sqlite(parsed) else nullcontext())
        self.engine = build_engine(parsed, self._begin)
        self._dialect = self.engine.dialect.name
        try:
            with self._tx(write=True) as session:
                before, after = migrate(session.connection())
        except ConfigError as exc:
            self.engine.dispose()
            raise ConfigError(f"{exc.message} (state database {self.url})") from None
        except OperationalError as exc:
            self.engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise ConfigError(f"cannot open state database {self.url}: {reason}") from None
        self.schema_version = after
        if before != after:
            log.info("state_migrated", url=self.url, from_version=before, to_version=after)
        self._locks: PairLocks
        if self._dialect == "postgresql":
            self._locks = DbLocks(self.engine, lease_seconds)
        elif is_memory_sqlite(parsed):
            self._locks = MemoryLocks(self._now)
        else:
            self._locks = FileLocks(Path(str(parsed.database)).absolute(), self._now)

    @classmethod
    def in_memory(cls) -> Self:
        return cls("sqlite://")

    def close(self) -> None:
        self.engine.dispose()

    # --- who works a pair ---------------------------------------------------------------

    def lease_pair(self, pair: str, *, wait_seconds: float = 0.0) -> PairLease:
        """Take ``pair`` for this process, waiting up to ``wait_seconds`` while another
        holds it; raises ``PairBusy`` (naming the holder) when the wait runs out. The
        caller releases it (it is a context manager)."""
        return self._locks.acquire(pair, wait_seconds)

    def pair_holder(self, pair: str) -> Holder | None:
        """Who works ``pair`` now; None when nobody does (a dead process holds nothing)."""
        return self._locks.holder(pair)

    @contextmanager
    def fenced(self, lease: PairLease) -> Iterator[None]:
        """Check ``lease`` at the start of every write transaction this thread opens in
        the block: a lost lease raises ``LeaseLost`` there instead of committing."""
        previous = getattr(self._local, "fence", None)
        self._local.fence = lease
        try:
            yield
        finally:
            self._local.fence = previous

    @contextmanager
    def atomic(self) -> Iterator[None]:
        outer: Session | None = getattr(self._local, "session", None)
        if outer is not None:
            with outer.begin_nested():
                yield
            return
        with self._tx(write=True):
            yield

    @contextmanager
    def _tx(self, *, write: bool, fenced: bool = True) -> Iterator[Session]:
        """Join the thread's open transaction, or run one of our own (checking the
        thread's lease first if it writes, unless ``fenced`` is false)."""
        current: Session | None = getattr(self._local, "session", None)
        if current is not None:
            yield current
            return
        with self._serial, Session(self.engine, expire_on_commit=False) as session:
            self._begin.sql = "BEGIN IMMEDIATE" if write else "BEGIN"
            self._local.session = session
            try:
                with session.begin():
                    fence: PairLease | None = getattr(self._local, "fence", None)
                    if write and fenced and fence is not None:
                        fence.fence(session.connection())
                    yield session
            finally:
                self._local.session = None

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:  # astimezone() would silently read it as local time
            raise ValueError("the state store clock returned a naive datetime")
        return now.astimezone(UTC)

    def _insert(self, entity: Any) -> sqlite.Insert | postgresql.Insert:
        """INSERT with ON CONFLICT support; both dialects spell it the same way."""
        if self._dialect == "postgresql":
            return postgresql.insert(entity)
        return sqlite.insert(entity)

    @staticmethod
    def _all(session: Session, stmt: SelectOfScalar[T]) -> Sequence[T]:
        # populate_existing: rows changed by UPDATE/upsert statements earlier in the same
        # atomic() block must not come back as the stale objects the session cached.
        return session.exec(stmt.execution_options(populate_existing=True)).all()

    @classmethod
    def _first(cls, session: Session, stmt: SelectOfScalar[T]) -> T | None:
        rows = cls._all(session, stmt.limit(1))
        return rows[0] if rows else None

    @staticmethod
    def _rowcount(result: Any) -> int:
        return cast(CursorResult[Any], result).rowcount


def check_value(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")


def row_id(value: int | None) -> int:
    if value is None:  # only for a row that was never flushed
        raise RuntimeError("row has no id")
    return value
