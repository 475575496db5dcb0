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
from sqlalchemy import Connection, CursorResult, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlmodel import Session
from sqlmodel.sql.expression import SelectOfScalar

from state.engine import (
    BeginMode,
    build_engine,
    is_memory_sqlite,
    parse_url,
    safe_url,
    sqlite_file,
)
from state.locks import (
    DEFAULT_LEASE_SECONDS,
    DbLocks,
    FileLocks,
    Holder,
    MemoryLocks,
    PairLease,
    PairLocks,
    claim_key,
)
from state.migrations import CURRENT_VERSION, migrate
from syncer.errors import ConfigError, SyncError

log = structlog.get_logger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def state_location(url: URL) -> str:
    """What to show an operator: the absolute file of a SQLite database, else the URL."""
    path = sqlite_file(url)
    return str(path) if path is not None else safe_url(url)


class StateMissing(SyncError):
    """A read-only open found no state: nothing has been synced with this database yet."""

    def __init__(self, location: str, detail: str) -> None:
        self.location = location
        super().__init__(f"no state database at {location}: {detail}")


class StateOutdated(SyncError):
    """A read-only open found an older schema; only a writing command may upgrade it."""

    def __init__(self, location: str, version: int, current: int) -> None:
        self.location = location
        self.version = version
        self.current = current
        super().__init__(
            f"state database {location} is at schema version {version}, this reamaze-sync "
            f"uses version {current}: run `reamaze-sync run` to upgrade it (status, plan and "
            "check never change the database)")


class StoreCore:
    def __init__(self, url: str, *, clock: Clock = utc_now,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, read_only: bool = False) -> None:
        """Open (creating or migrating) the database at ``url``: ``sqlite:///path.db``,
        ``sqlite://`` for in-memory, or ``postgresql+psycopg://user@host/db``.
        ``lease_seconds``: how long a PostgreSQL lease outlives its last renewal.

        ``read_only`` is for commands that only look: the database must exist at the
        current schema version (``StateMissing``, ``StateOutdated`` otherwise), it is
        neither created nor migrated, and writes fail. An operator's look must not leave
        an empty database where a path was mistyped, nor upgrade a schema under a daemon
        of the previous release that still uses it.
        """
        parsed = parse_url(url)
        self.url = safe_url(parsed)  # password hidden: safe to log or show
        self.location = state_location(parsed)
        self._clock = clock
        self._begin = BeginMode()
        self._local = threading.local()
        self._serial: AbstractContextManager[Any] = (
            threading.RLock() if is_memory_sqlite(parsed) else nullcontext())
        if read_only and is_memory_sqlite(parsed):
            raise StateMissing(self.url, "an in-memory database keeps nothing between runs")
        self.engine = build_engine(parsed, self._begin, read_only=read_only)
        self._dialect = self.engine.dialect.name
        try:
            if read_only:
                with self._tx(write=False) as session:
                    before = after = self._readable_version(session.connection())
            else:
                with self._tx(write=True) as session:
                    before, after = migrate(session.connection())
        except (StateMissing, StateOutdated):
            self.engine.dispose()
            raise
        except ConfigError as exc:
            self.engine.dispose()
            raise ConfigError(f"{exc.message} (state database {self.url})") from None
        except OperationalError as exc:
            self.engine.dispose()
            path = sqlite_file(parsed)
            if read_only and path is not None and not path.exists():
                raise StateMissing(self.location, "nothing has been synced with this "
                                   "configuration yet (`reamaze-sync run` creates it)") from None
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

    def _readable_version(self, conn: Connection) -> int:
        """The schema version, read without creating the version table that ``migrate``
        would create."""
        found = None
        if inspect(conn).has_table("schema_version"):
            found = conn.execute(text("SELECT version FROM schema_version WHERE id = 1")
                                 ).scalar()
        if not found:
            raise StateMissing(self.location, "it has no reamaze-sync tables yet "
                               "(`reamaze-sync run` creates them)")
        version = int(found)
        if version > CURRENT_VERSION:
            raise ConfigError(
                f"state database schema is version {version}, newer than version "
                f"{CURRENT_VERSION} that this reamaze-sync supports; upgrade reamaze-sync or "
                "use another database")
        if version < CURRENT_VERSION:
            raise StateOutdated(self.location, version, CURRENT_VERSION)
        return version

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

    def claim_pair(self, pair: str) -> PairLease:
        """A daemon's hold on ``pair`` between its passes (see ``state.locks``), taken
        without waiting: ``PairBusy`` names the daemon that has it. Its passes still take
        the pair itself (``lease_pair``), so a `backfill` or `run --once` is not kept out."""
        return self._locks.acquire(claim_key(pair), 0.0)

    def pair_claimant(self, pair: str) -> Holder | None:
        """The daemon that has claimed ``pair``; None when none has (a dead one has not)."""
        return self._locks.holder(claim_key(pair))

    def ping(self) -> None:
        """One query, so a health check knows the database answers (raises if not)."""
        with self._tx(write=False) as session:
            session.connection().execute(text("SELECT 1"))

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
