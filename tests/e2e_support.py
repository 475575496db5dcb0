"""Helpers for the end-to-end tests: the whole engine against the simulators (or a real
Redmine), with request-log accounting and the human actors on both sides.

Nothing here replaces engine code: engines are built by ``build_engine`` (through
``syncer.sandbox``) and only the transports are pointed at simulators or wrapped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.reamaze.sim.state import SimMessage
from connectors.redmine.sim.simulator import RedmineSimulator
from connectors.redmine.sim.state import SimClock, SimJournal, SimUser
from syncer.app import Engine, build_engine, run_all_once
from syncer.config import parse_config
from syncer.runner import PassResult
from syncer.sandbox import MARKER_KEY, PROJECT, REAMAZE_TOKEN, Sandbox, make_sandbox

STAFF = "jane@acme.example"
SIM_REDMINE_URL = "http://redmine.sandbox"
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
Handler = Callable[[httpx.Request], httpx.Response]




# Unknown writes are given up after two lookups on separate passes, with no wait: tests
# that drive several passes through faults converge in a few passes instead of ten
# minutes (the window itself is tested with a clock of its own).
QUICK_RECOVERY = {"unknown_write_lookups": 2, "unknown_write_window_seconds": 0}


def sandbox(tmp_path: Path, *, config: dict[str, Any] | None = None,
            live_tracker_clock: bool = False, sync: dict[str, Any] | None = None,
            tracker_clock_offset: timedelta | None = None, **pair: Any) -> Sandbox:
    """A sandbox whose state lives in a file, so a brand-new engine can take over.

    ``live_tracker_clock`` starts the Redmine simulator's clock at the real time (the
    sandbox's starts at a fixed date), as a real server's would be, for tests about
    whole-second change times; ``tracker_clock_offset`` puts it that far from the real
    time (a server whose clock is behind or ahead of ours).
    """
    sb = make_sandbox(f"sqlite:///{tmp_path / 'state.db'}", config=config, sync=sync, **pair)
    if live_tracker_clock or tracker_clock_offset is not None:
        # Early in the current second: the simulator's clock only moves 1 ms per reading,
        # so everything a short test does lands in this one second.
        start = (datetime.now(UTC) + (tracker_clock_offset or timedelta())).replace(
            microsecond=100_000)
        sb.redmine = RedmineSimulator(clock=SimClock(start=start),
                                      admin_key=sb.redmine.admin_key)
        sb.redmine.add_project(PROJECT, name="Support bugs")
    sb.reamaze.add_staff(STAFF, "Jane Support")
    return sb


def real_redmine_engine(config: dict[str, Any], redmine_key: str,
                        reamaze: ReamazeSimulator) -> Engine:
    """An engine on a real Redmine (over HTTP) and the Re:amaze simulator."""
    return build_engine(parse_config(config),
                        environ={"REAMAZE_API_TOKEN": REAMAZE_TOKEN,
                                 "REDMINE_API_KEY": redmine_key,
                                 "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY},
                        transports={"reamaze": httpx.MockTransport(reamaze.handle),
                                    "redmine": httpx.HTTPTransport()})


def seed_two_bugs(sb: Sandbox) -> list[str]:
    """Two bug-tagged conversations: one with an internal note, one with a customer
    message only."""
    rz = sb.reamaze
    first = rz.add_conversation("Crash on save", "Saving a draft crashes the app.",
                                "carol@customer.example", tags=["bug"])
    rz.add_staff_message(first, "INTERNAL-A reproduced on Android 14", email=STAFF,
                         visibility=1)
    second = rz.add_conversation("Sync stalls", "My phone stopped syncing.",
                                 "dave@customer.example", tags=["bug"])
    return [first, second]


def run_pass(engine: Engine, **kw: Any) -> PassResult:
    """One ``run --once`` pass of the (single) pair; it must succeed."""
    results = run_all_once(engine, kind=kw.pop("kind", "poll"), **kw)
    assert len(results) == 1, results
    result = results[0]
    assert result.ok, result.error
    assert not result.failed, result.failed
    return result


# --- request accounting -------------------------------------------------------------------

@dataclass
class Mark:
    """A position in both simulators' request logs."""

    sb: Sandbox
    reamaze: int = 0
    redmine: int = 0

    @classmethod
    def now(cls, sb: Sandbox) -> Mark:
        return cls(sb, len(sb.reamaze.requests), len(sb.redmine.requests))

    def writes(self) -> list[str]:
        """Every write request sent to either side since the mark, as "side METHOD path"."""
        rz = [f"reamaze {r.method} {r.path}" for r in self.sb.reamaze.requests[self.reamaze:]
              if r.method in WRITE_METHODS]
        rm = [f"redmine {r.method} {r.path}" for r in self.sb.redmine.requests[self.redmine:]
              if r.method in WRITE_METHODS]
        return rz + rm

    def requests(self) -> int:
        return (len(self.sb.reamaze.requests) - self.reamaze
                + len(self.sb.redmine.requests) - self.redmine)


# --- the humans on both sides -------------------------------------------------------------

class Engineer:
    """A Redmine user working through the REST API, a member of the sandbox project (as
    Manager by default: Redmine's default workflow lets a Developer close but not reopen)."""

    def __init__(self, sb: Sandbox, login: str = "dev", role: str = "Manager") -> None:
        self.sim = sb.redmine
        self.user: SimUser = sb.redmine.add_user(login, firstname="Dana", lastname="Dev")
        project = next(p for p in sb.redmine.state.projects.values() if p.identifier == PROJECT)
        sb.redmine.add_member(project, self.user, (role,))
        self.http = httpx.Client(base_url=SIM_REDMINE_URL,
                                 transport=httpx.MockTransport(sb.redmine.handle),
                                 headers={"X-Redmine-API-Key": self.user.api_key})

    def put(self, issue_id: str | int, **fields: Any) -> None:
        # Humans do not act in the same second as the sync: Redmine keeps whole seconds in
        # its filters, so the simulator's clock moves on first, as the real one would.
        self.sim.clock.advance(2)
        response = self.http.put(f"/issues/{issue_id}.json", json={"issue": fields})
        assert response.status_code == 204, (response.status_code, response.text)

    def note(self, issue_id: str | int, text: str, *, private: bool = False) -> None:
        self.put(issue_id, notes=text, private_notes=private)

    def close(self, issue_id: str | int) -> None:
        self.put(issue_id, status_id=5)

    def reopen(self, issue_id: str | int) -> None:
        self.put(issue_id, status_id=2)


@dataclass(frozen=True)
class Note:
    id: int
    text: str
    private: bool


def journals(sb: Sandbox, issue_id: str | int) -> list[Note]:
    """The issue's notes (journals with text), oldest first."""
    found: list[SimJournal] = sorted((j for j in sb.redmine.state.journals.values()
                                      if j.issue_id == int(issue_id) and j.notes),
                                     key=lambda j: j.id)
    return [Note(j.id, j.notes or "", j.private_notes) for j in found]


def messages(sb: Sandbox, slug: str) -> list[SimMessage]:
    return sorted(sb.reamaze.conversations[slug].messages, key=lambda m: m.seq)


def assert_same_second_note_is_copied_once(sb: Sandbox, engine: Engine, slug: str,
                                           issue: str) -> None:
    """A developer's note lands in the second the engine just read the issue in (its
    visible change time stays): the next pass copies it, privately, and nothing more."""
    before = sb.redmine.state.issues[int(issue)].updated_on
    sb.redmine.add_note(int(issue), "Same-second note from the developer")
    assert sb.redmine.state.issues[int(issue)].updated_on.replace(microsecond=0) == \
        before.replace(microsecond=0)
    result = run_pass(engine)
    assert result.counts["comments_to_helpdesk"] == 1
    assert [m.visibility for m in messages(sb, slug)
            if "Same-second note" in m.body] == [1]  # internal
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []


def issue_ids(sb: Sandbox) -> list[int]:
    return sorted(sb.redmine.state.issues)


def issue_for(engine: Engine, slug: str, pair: str = "bugs") -> str:
    link = engine.store.get_link(pair, slug)
    assert link is not None and link.issue_id is not None, f"{slug} is not linked"
    return link.issue_id


# --- transport wrappers -------------------------------------------------------------------

@dataclass
class CrashAfter:
    """Wrap a handler: the first time ``hit(request)`` is true, the request reaches the
    server and is applied, then the client sees this exception instead of the answer (the
    process died between the remote write and the local commit)."""

    hit: Callable[[httpx.Request], bool]
    times: int = 1
    crashed: list[str] = field(default_factory=list)

    def wrap(self, handler: Handler) -> Handler:
        def handle(request: httpx.Request) -> httpx.Response:
            response = handler(request)
            if self.times > 0 and self.hit(request):
                self.times -= 1
                self.crashed.append(f"{request.method} {request.url.path}")
                raise SimulatedCrash(f"crash after {request.method} {request.url.path}")
            return response
        return handle


@dataclass
class CrashBefore(CrashAfter):
    """Like ``CrashAfter``, but the process dies just before the request is sent: the
    write was journalled, and the server never sees it."""

    def wrap(self, handler: Handler) -> Handler:
        def handle(request: httpx.Request) -> httpx.Response:
            if self.times > 0 and self.hit(request):
                self.times -= 1
                self.crashed.append(f"{request.method} {request.url.path}")
                raise SimulatedCrash(f"crash before {request.method} {request.url.path}")
            return handler(request)
        return handle


class SimulatedCrash(BaseException):
    """Not an ``Exception``: nothing in the engine may catch it, as with a killed process."""


def is_write(method: str, path_pattern: str) -> Callable[[httpx.Request], bool]:
    import re

    rx = re.compile(path_pattern)
    return lambda r: r.method == method and rx.search(r.url.path) is not None


def crash_then_restart(sb: Sandbox, crash: CrashAfter, side: str) -> Engine:
    """Run one pass that dies at ``crash``'s point on ``side``; a fresh engine on the same
    state, as after a restart."""
    sb.wrap = lambda name, handler: crash.wrap(handler) if name == side else handler
    doomed = sb.engine()
    with pytest.raises(SimulatedCrash):
        run_all_once(doomed)
    assert crash.crashed, "the crash point was never reached"
    doomed.close()
    sb.wrap = None
    return sb.engine()
