"""All pairs of a brand share one read of the Re:amaze change listing per poll: idle polls
of many pairs cost what one pair's do, and no change is missed for it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
from e2e_support import STAFF

from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.redmine.sim.simulator import RedmineSimulator
from connectors.shared_reads import SharedPages
from syncer.app import Engine, build_engine, run_all_once
from syncer.config import parse_config
from syncer.sandbox import BRAND, LOGIN, MARKER_KEY, REAMAZE_TOKEN, sandbox_config

FAST_HTTP = {"requests_per_minute": 100_000, "burst": 1000, "max_attempts": 3}


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def counted(pages: SharedPages, reader: str, previous: float | None = None) -> list[str]:
    reads: list[str] = []
    pages.get("p1", lambda: reads.append(reader) or f"page by {reader}", reader=reader,
              newer_than=previous)
    return reads


# -- the page store ------------------------------------------------------------------------

def test_a_page_serves_the_other_readers_within_the_window() -> None:
    ticks = Ticks()
    pages = SharedPages(15.0, ticks)
    assert counted(pages, "a") == ["a"]
    ticks.now += 5
    assert counted(pages, "b") == [] and counted(pages, "c") == []
    assert (pages.reads, pages.shared) == (1, 2)
    ticks.now += 11  # 16 s after the read: too old
    assert counted(pages, "b") == ["b"]


def test_a_reader_never_gets_its_own_page_back() -> None:
    """A pair polling again right away (`run --once` twice, the settle pass) reads afresh,
    or it would not see what changed since its own last read."""
    pages = SharedPages(15.0, Ticks())
    assert counted(pages, "a") == ["a"]
    assert counted(pages, "a") == ["a"]


def test_a_reader_never_goes_back_behind_its_previous_walk() -> None:
    ticks = Ticks()
    pages = SharedPages(15.0, ticks)
    counted(pages, "a")  # read at 1000
    ticks.now += 2
    previous = pages.begin_walk("b")  # b's first walk starts at 1002 (reads its own page)
    assert previous is None
    ticks.now += 2
    assert counted(pages, "b", pages.begin_walk("b")) == ["b"]  # a's page predates 1002


def test_sharing_off_reads_every_time() -> None:
    pages = SharedPages(0.0, Ticks())
    assert counted(pages, "a") == ["a"] and counted(pages, "b") == ["b"]


def test_two_readers_at_once_send_one_request() -> None:
    pages = SharedPages(15.0)
    started, release = threading.Event(), threading.Event()
    reads: list[str] = []

    def slow_read() -> str:
        reads.append("a")
        started.set()
        release.wait(5)
        return "page"

    first = threading.Thread(target=lambda: pages.get("p1", slow_read, reader="a",
                                                      newer_than=None))
    first.start()
    started.wait(5)
    answers: list[str] = []
    second = threading.Thread(target=lambda: answers.append(pages.get(
        "p1", lambda: reads.append("b") or "other", reader="b", newer_than=None)))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert reads == ["a"] and answers == ["page"]


# -- the engine ----------------------------------------------------------------------------

class ManyPairs:
    """One Re:amaze brand, one Redmine, ``count`` pairs (pair i takes tag ``team{i}``)."""

    def __init__(self, tmp_path: Path, count: int, **reamaze: Any) -> None:
        self.reamaze = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN)
        self.reamaze.add_staff(STAFF, "Jane Support")
        self.redmine = RedmineSimulator()
        self.redmine.add_project("support")
        data: dict[str, Any] = sandbox_config(f"sqlite:///{tmp_path / 'state.db'}")
        data["trackers"]["redmine"]["http"] = FAST_HTTP
        data["reamaze"].update(reamaze)
        base = data["pairs"][0]
        data["pairs"] = [dict(base, name=f"pair{i}", match={"tags": [f"team{i}"]})
                         for i in range(count)]
        self.config = parse_config(data)
        self.environ = {"REAMAZE_API_TOKEN": REAMAZE_TOKEN, "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY,
                        "REDMINE_API_KEY": self.redmine.admin_key}

    def engine(self) -> Engine:
        return build_engine(self.config, environ=self.environ, transports={
            "reamaze": httpx.MockTransport(self.reamaze.handle),
            "redmine": httpx.MockTransport(self.redmine.handle)})

    def listing_reads(self) -> int:
        return sum(1 for c in self.reamaze.calls("GET") if c.path.endswith("/conversations"))


def test_idle_pairs_of_one_brand_read_the_listing_once_per_round(tmp_path: Path) -> None:
    world = ManyPairs(tmp_path, 10)
    for i in range(10):
        world.reamaze.add_conversation(f"Bug {i}", "It crashes.", f"c{i}@customer.example",
                                       tags=[f"team{i}"])
    engine = world.engine()
    assert all(r.ok for r in run_all_once(engine))
    assert len(world.redmine.state.issues) == 10
    before = world.listing_reads()
    assert all(r.ok for r in run_all_once(engine))
    assert world.listing_reads() - before == 1  # not one per pair
    engine.close()


def test_without_sharing_every_pair_reads_the_listing(tmp_path: Path) -> None:
    world = ManyPairs(tmp_path, 10, feed_share_seconds=0)
    engine = world.engine()
    run_all_once(engine)
    before = world.listing_reads()
    run_all_once(engine)
    assert world.listing_reads() - before == 10
    engine.close()


def test_a_change_between_rounds_reaches_every_pair_it_concerns(tmp_path: Path) -> None:
    """A conversation added after a pair read its (shared) page is found on the next round:
    the cursor only ever covers what a page showed."""
    world = ManyPairs(tmp_path, 3)
    engine = world.engine()
    run_all_once(engine)
    for i in range(3):
        world.reamaze.add_conversation(f"Bug {i}", "It crashes.", f"c{i}@customer.example",
                                       tags=[f"team{i}"])
    assert all(r.ok for r in run_all_once(engine))
    subjects = sorted(i.subject for i in world.redmine.state.issues.values())
    assert len(subjects) == 3 and all(f"Bug {i}" in s for i, s in enumerate(subjects))
    engine.close()
