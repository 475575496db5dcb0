"""One request budget per credential, shared through the state store by every process
using it: together they send at the configured rate, not once per process; a backfill
takes only what live syncing leaves; a clock that went back or an unreachable database
never stops anyone."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from state_support import *  # noqa: F403  (pytest fixtures)

from connectors.http import RateLimiter
from state import StateStore
from syncer.budgets import StorePacer, shared_budget_keys
from syncer.config import parse_config
from syncer.sandbox import sandbox_config

KEY = "reamaze bot@acme.example"


class Ticks:
    """One clock for every "process" of a test: sleeping moves it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


# -- the store --------------------------------------------------------------------------

def test_two_stores_book_consecutive_slots(open_store: Callable[[], StateStore]) -> None:
    """A daemon's store and a CLI's store on one database: each booking comes one interval
    after the last, whichever process made it."""
    daemon, cli = open_store(), open_store()
    waits = [s.reserve_request(KEY, 100.0, 1.0, 1.0)[0] for s in (daemon, cli, daemon, cli)]
    assert waits == [0.0, 1.0, 2.0, 3.0]


def test_a_burst_goes_at_once_then_the_interval_holds(store: StateStore) -> None:
    waits = [store.reserve_request(KEY, 100.0, 1.0, 3.0)[0] for _ in range(5)]
    assert waits == [0.0, 0.0, 0.0, 1.0, 2.0]


def test_a_background_booking_waits_for_the_queue_to_empty(store: StateStore) -> None:
    store.reserve_request(KEY, 100.0, 1.0, 1.0)
    store.reserve_request(KEY, 100.0, 1.0, 1.0)  # live traffic booked up to 102
    assert store.reserve_request(KEY, 100.0, 1.0, 1.0, background=True) == (2.0, False)
    assert store.reserve_request(KEY, 102.0, 1.0, 1.0, background=True) == (0.0, True)
    # ...and live traffic is never held back by the queue a background caller saw.
    assert store.reserve_request(KEY, 102.0, 1.0, 1.0) == (1.0, True)


def test_a_clock_that_went_back_does_not_stall_everyone(store: StateStore) -> None:
    store.reserve_request(KEY, 5_000.0, 1.0, 1.0)
    assert store.reserve_request(KEY, 100.0, 1.0, 1.0) == (0.0, True)


def test_budgets_are_per_credential(store: StateStore) -> None:
    store.reserve_request(KEY, 100.0, 1.0, 1.0)
    assert store.reserve_request("redmine https://r.example KEY", 100.0, 1.0, 1.0)[0] == 0.0


# -- the rate limiter ---------------------------------------------------------------------

def _limiter(store: StateStore, ticks: Ticks, per_minute: float = 60.0,
             background: bool = False) -> RateLimiter:
    limiter = RateLimiter(per_minute, 1, ticks)
    limiter.shared = StorePacer(store, KEY, ticks.monotonic, background)
    return limiter


def test_two_processes_together_send_at_the_configured_rate(
        open_store: Callable[[], StateStore]) -> None:
    ticks = Ticks()
    first, second = _limiter(open_store(), ticks), _limiter(open_store(), ticks)
    start = ticks.now
    for _ in range(10):
        first.acquire()
        second.acquire()
    assert ticks.now - start == pytest.approx(19.0)  # 20 requests, one a second


def test_without_sharing_each_process_spends_the_whole_budget(
        open_store: Callable[[], StateStore]) -> None:
    """The baseline: budgets per process send twice the configured rate together."""
    ticks = Ticks()
    first, second = RateLimiter(60.0, 1, ticks), RateLimiter(60.0, 1, ticks)
    start = ticks.now
    for _ in range(10):
        first.acquire()
        second.acquire()
    assert ticks.now - start < 10.5


def test_an_unreachable_database_falls_back_to_the_processs_own_budget(
        tmp_path: Path) -> None:
    ticks = Ticks()
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    limiter = _limiter(store, ticks)

    def broken(*_a: Any, **_k: Any) -> tuple[float, bool]:
        raise OperationalError("SELECT", {}, Exception("database is locked"))

    store.reserve_request = broken  # type: ignore[method-assign]
    start = ticks.now
    for _ in range(3):
        limiter.acquire()
    assert ticks.now - start == pytest.approx(2.0)  # still paced, by itself
    store.close()


def test_keys_name_the_credential_not_its_secret() -> None:
    cfg = parse_config(sandbox_config())
    keys = shared_budget_keys(cfg)
    assert keys["reamaze"] == f"reamaze {cfg.reamaze.login_email}"
    assert keys["redmine"] == "redmine http://redmine.sandbox REDMINE_API_KEY"


# -- real processes -----------------------------------------------------------------------

def _book(url: str, n: int, interval: float, out: Any) -> None:
    from state import StateStore as Store
    from syncer.budgets import StorePacer as Pacer

    store = Store(url)
    limiter = RateLimiter(60.0 / interval, 1)
    limiter.shared = Pacer(store, KEY, time.time)
    for _ in range(n):
        limiter.acquire()
        out.put(time.time())
    store.close()


def test_processes_sharing_a_sqlite_file_keep_the_rate_together(tmp_path: Path) -> None:
    """Two real processes booking on one SQLite file: their requests, merged, are never
    closer than the interval allows (a little slack for the scheduler)."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore(url).close()  # migrated once, before both start
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    interval, n = 0.05, 30
    procs = [ctx.Process(target=_book, args=(url, n, interval, out)) for _ in range(2)]
    for p in procs:
        p.start()
    sent = sorted(out.get(timeout=60) for _ in range(2 * n))
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    # Any 10 consecutive requests span at least 9 intervals (minus scheduling slack).
    spans = [sent[i + 9] - sent[i] for i in range(len(sent) - 9)]
    assert min(spans) >= 9 * interval * 0.9, min(spans)


@pytest.mark.parametrize("background", [False, True])
def test_every_connection_of_an_engine_books_in_the_shared_budget(
        tmp_path: Path, background: bool) -> None:
    """Wired by ``build_engine``: two engines on one state book the same Re:amaze budget,
    the second (a backfill) in the background; ``share_budgets = false`` turns it off."""
    from syncer.app import build_engine
    from syncer.sandbox import MARKER_KEY, REAMAZE_TOKEN

    env = {"REAMAZE_API_TOKEN": REAMAZE_TOKEN, "REDMINE_API_KEY": "k",
           "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY}
    url = f"sqlite:///{tmp_path / 'state.db'}"
    ticks = Ticks()
    daemon = build_engine(parse_config(sandbox_config(url)), environ=env, clock=ticks)
    other = build_engine(parse_config(sandbox_config(url)), environ=env, clock=ticks,
                         background=background)
    for engine in (daemon, other):
        for conn in (engine.helpdesk, *engine.trackers.values()):
            pacer = conn.api.rate_limiter.shared
            assert isinstance(pacer, StorePacer)
            assert pacer.background is (background and engine is other)
    daemon.helpdesk.api.rate_limiter.acquire()
    daemon.helpdesk.api.rate_limiter.acquire()  # booked a slot one interval ahead
    wait, booked = other.helpdesk.api.rate_limiter.shared.reserve(0.001, 1.0)
    assert wait > 0 and booked is not background  # queued behind the daemon's bookings
    off = sandbox_config(url, sync={"share_budgets": False})
    alone = build_engine(parse_config(off), environ=env, clock=ticks)
    assert alone.helpdesk.api.rate_limiter.shared is None
    for engine in (daemon, other, alone):
        engine.close()


def test_a_fast_budget_books_its_slots_in_batches_and_still_keeps_the_rate(
        open_store: Callable[[], StateStore]) -> None:
    """At 6,000 requests a minute a transaction per request would cost more than the
    request: a quarter second of slots is booked at once. Two processes (threads with
    stores of their own, on the real clock) together still send at the configured rate."""

    stores = [open_store(), open_store()]
    bookings = [0, 0]
    sent: list[float] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        store = stores[n]
        real = store.reserve_request

        def counting(*a: Any, **k: Any) -> tuple[float, bool]:
            bookings[n] += 1
            return real(*a, **k)

        store.reserve_request = counting  # type: ignore[method-assign]
        limiter = RateLimiter(6000.0 / 0.99, 1)
        limiter.shared = StorePacer(store, KEY, time.time)
        for _ in range(100):
            limiter.acquire()
            with lock:
                sent.append(time.time())

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    sent.sort()
    assert len(sent) == 200
    assert sent[-1] - sent[0] >= 199 * 0.01 * 0.9  # 200 requests, one per 10 ms together
    assert sum(bookings) <= 30  # about 25 slots a booking, a few wasted at the turns
    # ...and a budget of a request a second books each request on its own.
    slow = _limiter(open_store(), Ticks(), per_minute=60.0)
    assert isinstance(slow.shared, StorePacer)
    slow.acquire()
    slow.acquire()
    assert not slow.shared._slots


def test_two_first_bookings_at_once_never_share_a_slot(
        open_store: Callable[[], StateStore]) -> None:
    """The credential's row does not exist yet, and two processes book at the same moment:
    the second waits for the first (its row, or SQLite's write lock) instead of seeing no
    row and booking the same slot. Each booking's clock is read once its row is locked;
    the first holds there until the second has had every chance to get that far."""
    stores = [open_store(), open_store()]
    inside = threading.Event()
    results: list[tuple[float, bool]] = [(0.0, False), (0.0, False)]

    def first_clock() -> float:
        inside.wait(1.0)  # the second booking reaches its clock only if nothing stops it
        return 100.0

    def second_clock() -> float:
        inside.set()
        return 100.0

    def book(n: int, clock: Callable[[], float]) -> None:
        results[n] = stores[n].reserve_request("new-credential", clock, 1.0, 1.0)

    first = threading.Thread(target=book, args=(0, first_clock))
    first.start()
    time.sleep(0.2)  # the first is inside its transaction, waiting in its clock
    second = threading.Thread(target=book, args=(1, second_clock))
    second.start()
    first.join(10)
    second.join(10)
    assert sorted(w for w, _ in results) == [0.0, 1.0]
