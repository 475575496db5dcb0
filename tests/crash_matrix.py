"""The crash matrix: a whole story, killed or failed at every remote write and every state
commit it makes, restarted, and checked on both sides.

A fault-free run of the story (``crash_story.Story``) lists its points: every write
request (POST, PUT, PATCH, DELETE) the engine sends to either simulator, and every commit
of its state store that changed something (a read-only transaction's commit leaves
nothing to lose). Then, for each point, a fresh world plays the same story with one fault
armed there:

* ``kill``: the process dies (``SimulatedCrash``, which nothing in the engine may catch)
  just ``before`` the write is sent or the commit is made, or just ``after`` the server
  applied the write (its answer is lost) or the commit is durable. From then on nothing
  of that process reaches either side or the database: a killed process runs no clean-up
  that writes. Its pair lock goes with it (the kernel drops a dead process's ``flock``;
  in-process, the lease is released on the way out) and a new engine opens the same
  state file, as a restarted process would;
* ``raise``: an ordinary exception (``RuntimeError``, as from a broken transport or a
  failing disk) at the same place, which the engine catches as a crashed pass; the same
  engine goes on.

After the fault the engine runs passes until it has caught up (one writes nothing, is
clean and leaves nothing pending), then the story goes on from where it stopped: a killed
pass is not repeated. At the end, passes run until all is done again and ``check``
compares both sides and the state with what the story must have produced. Each armed run
also proves it hit the very point it was meant to: the fault fires on the request or
commit the fault-free run had at that position, after the same ones before it.

Unknown writes are given up after two lookups with no waiting (``QUICK_RECOVERY``), so a
run settles in a few passes. Every point runs in its own world; ``run_matrix`` spreads
them over worker processes.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import structlog
from crash_story import Story, check
from e2e_support import WRITE_METHODS, Handler, SimulatedCrash
from sqlalchemy import event

from state import StateStore

Kind = Literal["write", "commit"]
When = Literal["before", "after"]
How = Literal["kill", "raise"]
VARIANTS: tuple[tuple[How, When], ...] = (
    ("kill", "before"), ("kill", "after"), ("raise", "before"), ("raise", "after"))

# The lines the terminal summary prints (tests/conftest.py).
SUMMARY = pytest.StashKey[list[str]]()


@dataclass(frozen=True)
class Point:
    kind: Kind
    index: int  # 0-based, in the order the fault-free story reaches them
    when: When
    how: How

    def __str__(self) -> str:
        return f"{self.how} {self.when} {self.kind} #{self.index}"


# --- the fault injector -------------------------------------------------------------------

class Injector:
    """Lists the writes and commits of the engines it is attached to, and fires the fault
    of ``point`` (if any) when the story reaches it."""

    def __init__(self, point: Point | None = None) -> None:
        self.point = point
        self.writes: list[str] = []
        self.commits: list[str] = []
        self.events: list[str] = []  # both, in the order they happened
        self.fired: str | None = None
        self.dead = False  # killed: the doomed process does nothing more
        self.counting = True  # the story's points; not those of the passes settling it

    def wrap(self, name: str, handler: Handler) -> Handler:
        def handle(request: httpx.Request) -> httpx.Response:
            if self.dead:
                raise SimulatedCrash("the process is dead")
            if request.method not in WRITE_METHODS or not self.counting:
                return handler(request)
            label = f"{name} {request.method} {request.url.path}"
            armed = self._armed("write", len(self.writes))
            self.writes.append(label)
            self.events.append(f"write {label}")
            if armed and self._when("before"):
                self._fire(label)
            response = handler(request)
            if armed:
                self._fire(label)
            return response
        return handle

    def attach(self, store: StateStore) -> None:
        event.listen(store.engine, "begin", self._on_begin)
        event.listen(store.engine, "commit", self._on_commit)

    def _on_begin(self, conn: Any) -> None:
        conn.info["changes_at_begin"] = _changes(conn)

    def _on_commit(self, conn: Any) -> None:
        if self.dead:
            raise SimulatedCrash("the process is dead")
        if not self.counting or _changes(conn) == conn.info.get("changes_at_begin"):
            return  # a read, or a write that changed no row: nothing to lose
        label = _committer()
        if label == "budgets.reserve":
            # A booking in the shared request budget: no sync state (a crash there loses
            # at most a slot), and as many as the requests, which vary with timing.
            return
        armed = self._armed("commit", len(self.commits))
        self.commits.append(label)
        self.events.append(f"commit {label}")
        if not armed:
            return
        if self._when("after"):
            conn.connection.dbapi_connection.commit()  # durable; then the fault
        self._fire(label)

    def _armed(self, kind: Kind, index: int) -> bool:
        p = self.point
        return p is not None and self.fired is None and p.kind == kind and p.index == index

    def _when(self, when: When) -> bool:
        return self.point is not None and self.point.when == when

    def _fire(self, label: str) -> None:
        assert self.point is not None
        self.fired = label
        message = f"{self.point}: {label}"
        if self.point.how == "kill":
            self.dead = True
            raise SimulatedCrash(message)
        raise RuntimeError(f"injected fault, {message}")


def _changes(conn: Any) -> int:
    """Rows changed so far on this SQLite connection."""
    return int(conn.connection.dbapi_connection.total_changes)


def _committer() -> str:
    """The engine function that commits, to name a commit point in reports."""
    frame = sys._getframe(2)
    syncer = f"{os.sep}syncer{os.sep}"
    while frame is not None:
        path = frame.f_code.co_filename
        if syncer in path:
            return f"{Path(path).stem}.{frame.f_code.co_name}"
        frame = frame.f_back  # type: ignore[assignment]
    return "?"


# --- running the matrix ---------------------------------------------------------------------

@dataclass
class Outcome:
    point: Point | None
    fired: str | None
    writes: list[str]
    commits: list[str]
    events: list[str]
    problems: list[str] = field(default_factory=list)
    restarts: int = 0


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Logs kept in memory for the run (and dropped), not printed."""
    with structlog.testing.capture_logs():
        yield


def run_story(tmp: Path, point: Point | None = None) -> Outcome:
    """Play, settle and check the story in ``tmp``, with the fault at ``point`` armed.
    The directory is removed when all was well."""
    injector = Injector(point)
    with quiet_logs():
        story = Story(tmp, injector)
        try:
            story.run()
            problems = check(story)
        except (Exception, SimulatedCrash) as exc:  # reported with its point, not raised
            problems = [f"the story stopped: {exc!r}"]
        finally:
            story.engine.close()
    if point is not None and injector.fired is None:
        problems.append("the fault never fired")
    outcome = Outcome(point, injector.fired, injector.writes, injector.commits,
                      injector.events, problems, story.restarts)
    if not problems:
        shutil.rmtree(tmp)
    return outcome


def points_of(baseline: Outcome) -> list[Point]:
    """Every point of the fault-free run, in each variant."""
    kinds: tuple[tuple[Kind, int], ...] = (("write", len(baseline.writes)),
                                           ("commit", len(baseline.commits)))
    return [Point(kind, index, when, how) for how, when in VARIANTS
            for kind, count in kinds for index in range(count)]


def _position(baseline: Outcome, point: Point) -> int:
    """Where the point is among all the writes and commits of the fault-free run."""
    return [n for n, e in enumerate(baseline.events) if e.startswith(point.kind)][point.index]


def describe(baseline: Outcome, point: Point) -> str:
    """The point and what it is: ``kill before write #3 (redmine PUT /issues/1.json)``."""
    return f"{point} ({baseline.events[_position(baseline, point)].split(' ', 1)[1]})"


def faults_of(baseline: Outcome, outcome: Outcome) -> list[str]:
    """What is wrong with an armed run, including not having hit its point (the run up
    to it must be the fault-free run's) and a kill the engine did not die of."""
    point = outcome.point
    assert point is not None
    at = _position(baseline, point)
    expected = baseline.events[at].split(" ", 1)[1]
    wrong = list(outcome.problems)
    if outcome.fired != expected or outcome.events[:at + 1] != baseline.events[:at + 1]:
        wrong.append(f"fired at {outcome.fired!r}, expected {expected!r} after the same "
                     "writes and commits as the fault-free run")
    if point.how == "kill" and outcome.restarts != 1:
        wrong.append(f"{outcome.restarts} restarts after one kill")
    return wrong


def _run(job: tuple[Path, Point]) -> Outcome:
    return run_story(*job)


def workers() -> int:
    """Processes for the matrix: the CPUs this process may use, at most 4."""
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    return max(1, min(4, cpus))


def run_matrix(root: Path, points: list[Point], processes: int) -> list[Outcome]:
    """Every point in its own world under ``root``; in ``processes`` worker processes
    (spawned, so no thread or lock of this process is copied into them)."""
    jobs = [(root / f"point-{n:04d}", p) for n, p in enumerate(points)]
    if processes <= 1:
        return [_run(job) for job in jobs]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")
                             ) as pool:
        return list(pool.map(_run, jobs, chunksize=4))


def summary(baseline: Outcome, outcomes: list[Outcome], seconds: float,
            processes: int) -> list[str]:
    """What the terminal summary prints."""
    by_variant = Counter(f"{o.point.how} {o.point.when}" for o in outcomes if o.point)
    kills = sum(1 for o in outcomes if o.point and o.point.how == "kill")
    failed = sum(1 for o in outcomes if faults_of(baseline, o))
    return [
        f"{len(baseline.writes) + len(baseline.commits)} points of one story: "
        f"{len(baseline.writes)} remote writes, {len(baseline.commits)} state commits",
        f"{len(outcomes)} runs with a fault, each checked on both sides: "
        + ", ".join(f"{v} {n}" for v, n in sorted(by_variant.items()))
        + f" ({kills} kills and restarts, {len(outcomes) - kills} exceptions raised)",
        f"{len(outcomes) - failed} converged, {failed} failed; "
        f"{seconds:.1f} s in {processes} process{'es' if processes > 1 else ''}",
    ]
