"""One process works a pair at a time: a lock on SQLite, a lease on PostgreSQL.

Two engines on one state database (two ``run --once``, a ``backfill`` beside the daemon,
daemons on two hosts) each read a conversation as unlinked and each created its issue and
copied its notes. A pass now takes its pair first (``StoreCore.lease_pair``):

* **SQLite file**: ``flock`` on a file next to the database, one per pair
  (``<database>.pair-<name>.lock``). The kernel drops the lock when its process dies, however
  it dies, so a killed holder never blocks the next one. ``flock``, not POSIX ``lockf``:
  flock locks belong to the open file, so two engines in one process exclude each other
  too, where POSIX locks belong to the process and would let both in. The file records
  the holder's host, pid and start time for the busy message and is never deleted:
  deleting it would race with a process that has just opened it and is about to lock it.
* **In-memory SQLite**: nothing outside the store object can see the database, so the
  lock lives in the store.
* **PostgreSQL**: processes may be on several hosts, so the lock is a row of ``leases``
  whose expiry the database computes from its own ``now()``: hosts with skewed clocks
  agree on it. A heartbeat thread renews it every third of its length; a holder that dies
  stops renewing and loses the pair at the expiry. A holder that stalled past its expiry
  (a pause, a lost network) may find the pair taken, so it must stop before its next
  write: ``check()`` is called between objects and costs nothing (the heartbeat's last
  answer and a local deadline), and the store *fences* every write transaction of the
  pass: it locks the lease row ``FOR SHARE`` and checks it is still ours and unexpired,
  so no state write commits after the pair was taken, and a new holder cannot take it
  while such a transaction is open. Every remote create is journalled in a fenced
  transaction first; one journalled just before the lease lapsed may still be sent, and
  is found again by the new holder's intent recovery, as after a crash.

A daemon also *claims* each pair it works (``StoreCore.claim_pair``): a second lock of the
same kind on the key ``claim_key(pair)``, which it keeps from its first pass until it
stops or dies. Several daemons on one state database (instances on several hosts) each
schedule every pair, and without a claim they took turns: each pair got one pass per
instance per interval, multiplying the API requests by the number of instances. Only the
claimant runs the pair's passes; the others try to claim it at each of their intervals,
so a dead claimant's pairs are taken over once its claim expires (on PostgreSQL at most
``lease_seconds`` after its last renewal, then within one interval). The claim carries no
right to write: passes still take the pair's own lock, which fences their writes, and
`run --once` or `backfill` take only that one, so they run beside a daemon as before.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import structlog
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from syncer.errors import RetriableError

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
DEFAULT_LEASE_SECONDS = 30.0
_FIRST_POLL = 0.05  # a waiter's first re-try; doubled up to _MAX_POLL
_MAX_POLL = 0.5


def claim_key(pair: str) -> str:
    """The lock key of a daemon's claim on ``pair``: ``daemon:NAME``. Pair names cannot
    hold a colon, so it never is the key of a pair itself."""
    return f"daemon:{pair}"


def process_label() -> str:
    """``host:pid`` of this process, as recorded in ``runs.holder`` and shown by status."""
    return f"{socket.gethostname()}:{os.getpid()}"


def this_process(since: datetime | None) -> Holder:
    return Holder(socket.gethostname(), os.getpid(), since)


@dataclass(frozen=True)
class Holder:
    """Who holds a pair; ``since`` is None when the holder had not finished saying so."""

    host: str
    pid: int
    since: datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}"

    def __str__(self) -> str:
        if self.pid == 0:
            return "another process (not yet recorded)"
        when = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        return f"{self.host} pid {self.pid}{when}"

    @classmethod
    def parse(cls, label: str, since: datetime | None) -> Holder:
        """From ``host:pid`` (a lease row adds ``/token``); unknown when malformed."""
        host, _, pid = label.split("/", 1)[0].rpartition(":")
        if since is not None and since.tzinfo is not None:
            since = since.astimezone(UTC)
        return cls(host, int(pid), since) if pid.isdigit() and host else UNKNOWN


UNKNOWN = Holder("?", 0)


class PairBusy(RetriableError):
    """Another process works the pair; try again later (the daemon: next interval)."""

    def __init__(self, pair: str, holder: Holder | None, waited: float) -> None:
        self.pair = pair
        self.holder = holder
        self.waited = waited
        who = holder if holder is not None else "another process"
        super().__init__(f"pair {pair!r} is busy: worked by {who}; "
                         f"gave up after waiting {waited:g} s")


class LeaseLost(RetriableError):
    """The pass no longer holds its pair (expired, taken or released): it stops before
    its next write and the next pass starts over."""

    def __init__(self, pair: str, reason: str) -> None:
        self.pair = pair
        self.reason = reason
        super().__init__(f"pair {pair!r} lease lost ({reason}); stopped before the next write")


class PairLease:
    """The right to work one pair, from acquisition until ``release()``.

    ``check()`` raises ``LeaseLost`` once the right is gone; ``renew()`` extends it where
    it can expire; ``fence(conn)`` runs inside a write transaction and raises there if the
    database no longer says it is ours (the store calls it, see ``StoreCore.fenced``).
    """

    def __init__(self, pair: str, holder: Holder) -> None:
        self.pair = pair
        self.holder = holder
        self._lost: str | None = None
        self._released = False

    @property
    def lost(self) -> str | None:
        """Why the lease was lost, or None while it holds."""
        return self._lost

    def check(self) -> None:
        if self._released:
            raise LeaseLost(self.pair, "released")
        if self._lost is not None:
            raise LeaseLost(self.pair, self._lost)

    def renew(self) -> None:
        self.check()

    def fence(self, conn: Connection) -> None:
        self.check()

    def release(self) -> None:
        self._released = True

    def _lose(self, reason: str) -> LeaseLost:
        """Mark the lease lost (the first reason sticks) and return the error to raise."""
        if self._lost is None:
            self._lost = reason
            log.warning("lease_lost", pair=self.pair, reason=reason)
        return LeaseLost(self.pair, self._lost)

    def __enter__(self) -> PairLease:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class PairLocks(ABC):
    """Hands out leases on pairs; one per store, of the kind its database needs."""

    def acquire(self, pair: str, wait_seconds: float = 0.0) -> PairLease:
        """The pair's lease, waiting up to ``wait_seconds`` for its holder to finish."""
        deadline = time.monotonic() + max(0.0, wait_seconds)
        delay = _FIRST_POLL
        announced = False
        while True:
            lease = self._try(pair)
            if lease is not None:
                return lease
            holder = self._recorded(pair)
            left = deadline - time.monotonic()
            if left <= 0:
                raise PairBusy(pair, holder, wait_seconds)
            if not announced:
                log.info("pair_waiting", pair=pair, holder=str(holder or UNKNOWN),
                         wait_seconds=wait_seconds)
                announced = True
            time.sleep(min(delay, left))
            delay = min(delay * 2, _MAX_POLL)

    @abstractmethod
    def holder(self, pair: str) -> Holder | None:
        """Who holds the pair now; None when nobody does (a dead holder holds nothing)."""

    @abstractmethod
    def _try(self, pair: str) -> PairLease | None:
        """Take the pair if it is free, without waiting."""

    def _recorded(self, pair: str) -> Holder | None:
        """Who the lock says holds it, after a failed ``_try``."""
        return self.holder(pair)


# --- SQLite file: flock ----------------------------------------------------------------------

class FileLease(PairLease):
    def __init__(self, pair: str, holder: Holder, fd: int) -> None:
        super().__init__(pair, holder)
        self._fd = fd

    def release(self) -> None:
        if self._released:
            return
        super().release()
        try:
            os.ftruncate(self._fd, 0)  # the next reader must not name us as the holder
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)


class FileLocks(PairLocks):
    def __init__(self, database: Path, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    def path(self, pair: str) -> Path:
        return self.database.with_name(
            f"{self.database.name}.pair-{quote(pair, safe='')}.lock")

    def _try(self, pair: str) -> PairLease | None:
        fd = os.open(self.path(pair), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            holder = this_process(self.clock())
            record = json.dumps({"host": holder.host, "pid": holder.pid,
                                 "since": holder.since.isoformat() if holder.since else None})
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
        except BaseException:
            os.close(fd)  # which drops the lock, if we had it
            raise
        return FileLease(pair, holder, fd)

    def holder(self, pair: str) -> Holder | None:
        try:
            fd = os.open(self.path(pair), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                # A shared lock is refused only while someone holds the exclusive one.
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_holder(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def _recorded(self, pair: str) -> Holder | None:
        try:
            fd = os.open(self.path(pair), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            return _read_holder(fd)
        finally:
            os.close(fd)


def _read_holder(fd: int) -> Holder:
    """The record of a held lock file; unknown while its holder is still writing it."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
        since = datetime.fromisoformat(data["since"]) if data.get("since") else None
        return Holder(str(data["host"]), int(data["pid"]), since)
    except (ValueError, TypeError, KeyError, AttributeError):
        return UNKNOWN


# --- in-memory SQLite: a lock in the store object ---------------------------------------------

class _MemoryLease(PairLease):
    def __init__(self, pair: str, holder: Holder, locks: MemoryLocks) -> None:
        super().__init__(pair, holder)
        self._locks = locks

    def release(self) -> None:
        if self._released:
            return
        super().release()
        self._locks.drop(self.pair, self)


class MemoryLocks(PairLocks):
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._guard = threading.Lock()
        self._held: dict[str, _MemoryLease] = {}

    def _try(self, pair: str) -> PairLease | None:
        with self._guard:
            if pair in self._held:
                return None
            lease = _MemoryLease(pair, this_process(self.clock()), self)
            self._held[pair] = lease
            return lease

    def holder(self, pair: str) -> Holder | None:
        with self._guard:
            lease = self._held.get(pair)
            return lease.holder if lease is not None else None

    def drop(self, pair: str, lease: _MemoryLease) -> None:
        with self._guard:
            if self._held.get(pair) is lease:
                del self._held[pair]


# --- PostgreSQL: a lease row, expiry by the database clock -----------------------------------

_TTL = "CAST(:ttl AS double precision) * interval '1 second'"
_ACQUIRE = text(f"""
    INSERT INTO leases (pair, holder, acquired_at, expires_at)
    VALUES (:pair, :holder, now(), now() + {_TTL})
    ON CONFLICT (pair) DO UPDATE SET holder = excluded.holder,
        acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
    WHERE leases.expires_at <= now()
    RETURNING acquired_at""")
_RENEW = text(f"""
    UPDATE leases SET expires_at = now() + {_TTL}
    WHERE pair = :pair AND holder = :holder AND expires_at > now()
    RETURNING expires_at""")
# FOR SHARE: a taker's upsert waits until the fenced transaction has committed.
_FENCE = text("""
    SELECT expires_at > now() FROM leases WHERE pair = :pair AND holder = :holder
    FOR SHARE""")
_RELEASE = text("DELETE FROM leases WHERE pair = :pair AND holder = :holder")
_HOLDER = text("SELECT holder, acquired_at FROM leases "
               "WHERE pair = :pair AND expires_at > now()")


class DbLease(PairLease):
    def __init__(self, pair: str, holder: Holder, *, engine: Engine, lease_id: str,
                 ttl: float, valid_until: float) -> None:
        super().__init__(pair, holder)
        self.engine = engine
        self.lease_id = lease_id  # host:pid/token: a restarted pid 1 is not its predecessor
        self.ttl = ttl
        # Monotonic time before which the database cannot have expired the lease: the
        # expiry is counted from the database's now() at the renewal, which came after
        # the moment the renewal was sent.
        self._valid_until = valid_until
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lease-{pair}",
                                      daemon=True)
        self._beat.start()

    def check(self) -> None:
        super().check()
        if time.monotonic() >= self._valid_until:
            raise self._lose("not renewed before its expiry")

    def renew(self) -> None:
        self.check()
        sent = time.monotonic()
        with self.engine.begin() as conn:
            renewed = conn.execute(_RENEW, self._params(ttl=self.ttl)).first()
        if renewed is None:
            raise self._lose("expired or taken by another process")
        self._valid_until = sent + self.ttl

    def fence(self, conn: Connection) -> None:
        self.check()
        ours = conn.execute(_FENCE, self._params()).scalar()
        if not ours:
            raise self._lose("expired or taken by another process")

    def release(self) -> None:
        if self._released:
            return
        super().release()
        self._stop.set()
        if self._beat is not threading.current_thread():
            self._beat.join()
        try:
            with self.engine.begin() as conn:
                conn.execute(_RELEASE, self._params())
        except SQLAlchemyError as exc:  # it expires on its own; the pass's work is saved
            log.warning("lease_release_failed", pair=self.pair, error=_reason(exc))

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except LeaseLost:
                return
            except SQLAlchemyError as exc:
                # Keep trying: check() gives the pair up at the local deadline.
                log.warning("lease_renew_failed", pair=self.pair, error=_reason(exc))

    def _params(self, **extra: object) -> dict[str, object]:
        return {"pair": self.pair, "holder": self.lease_id, **extra}


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's first line, without SQLAlchemy's statement and parameters."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(exc).__name__])[0]


class DbLocks(PairLocks):
    def __init__(self, engine: Engine, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("lease_seconds must be positive")
        self.engine = engine
        self.ttl = ttl

    def _try(self, pair: str) -> PairLease | None:
        holder = this_process(None)
        lease_id = f"{holder.label}/{secrets.token_hex(4)}"
        sent = time.monotonic()
        with self.engine.begin() as conn:
            since = conn.execute(_ACQUIRE, {"pair": pair, "holder": lease_id,
                                            "ttl": self.ttl}).scalar()
        if since is None:
            return None
        return DbLease(pair, Holder.parse(holder.label, since), engine=self.engine,
                       lease_id=lease_id, ttl=self.ttl, valid_until=sent + self.ttl)

    def holder(self, pair: str) -> Holder | None:
        with self.engine.begin() as conn:
            row = conn.execute(_HOLDER, {"pair": pair}).first()
        return Holder.parse(row.holder, row.acquired_at) if row is not None else None
