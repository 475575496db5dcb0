"""A seeded fault storm around both simulators, one clock for everything the engine times,
and a ledger that checks the outcome message by message.

``Storm`` wraps each simulator's handler (``sandbox.wrap``) and answers a share of all
requests with a fault instead of the real answer. Every kind a real network and a real
server produce, with the one property that matters to the engine, whether the request took
effect:

* ``429`` with ``Retry-After`` (not processed);
* ``5xx`` before the server applied the request, and ``5xx after`` it did (writes);
* ``connect timeout`` / ``connect refused``: the request never left (``ConnectTimeout``,
  ``ConnectError``: httpx guarantees nothing was sent);
* ``read timeout`` without effect, and ``read timeout after`` the server applied it;
* ``reset``: the connection dropped (``RemoteProtocolError``, ``ReadError``), before or
  after (writes) the server applied the request;
* ``slow write``: no answer (``ReadTimeout``), and the server applies the write some
  seconds later on the storm's clock, whenever a later request finds it due (as
  ``LateWrite`` in test_e2e_trust.py);
* ``outage``: every ``outage_every`` requests the next ``outage_len`` requests all fail
  (503 or connection refused), more than a request's retries survive: the pass ends
  early, as when a server restarts.

``StormTime`` is the one clock of the HTTP clients (retry waits, ``Retry-After``, the
in-pass lookups), the state store (the unknown-write window) and the Redmine simulator,
so none of that costs wall time and all of them agree. It starts 30 days in the past, so
every Redmine change time has long "settled" for the engine's wall-clock checks.

``Ledger`` records every message the humans write, with a token unique to it, and checks
both simulators directly: where each copy is, how many there are, and whether anything
internal is visible to the public or the customer.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from e2e_support import Handler

from connectors.redmine.sim.state import SimClock
from state import StateStore
from syncer.sandbox import Sandbox

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Fault kinds as printed; "applied" ones took effect on the server before the answer was lost.
READ_FAULTS = ("429", "5xx", "connect timeout", "connect refused", "read timeout", "reset")
WRITE_FAULTS = (*READ_FAULTS, "5xx after apply", "read timeout after apply",
                "reset after apply", "slow write")
KINDS = (*WRITE_FAULTS, "outage")


@contextmanager
def quiet_logs() -> Iterator[None]:
    """No log output while the storm runs (thousands of retry warnings, rendered for
    nobody, would cost more CPU than the engine); the previous configuration after."""
    saved = structlog.get_config()

    def drop(_logger: object, _name: str, _event: object) -> object:
        raise structlog.DropEvent

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
                        processors=[drop])
    try:
        yield
    finally:
        structlog.configure(**saved)


class StormTime:
    """The clock of the HTTP clients (``monotonic``/``sleep``), the state store (``now``)
    and the Redmine simulator. Sleeps pass at once and move it on; with ``wall`` real time
    moves it too (a daemon waits its intervals in real time)."""

    def __init__(self, *, wall: bool = False) -> None:
        self.epoch = (datetime.now(UTC) - timedelta(days=30)).replace(microsecond=0)
        self.wall = wall
        self._t0 = time.monotonic()
        self._offset = 1000.0
        self.slept = 0.0
        self.sleeps = 0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._offset + (time.monotonic() - self._t0 if self.wall else 0.0)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._offset += max(seconds, 0.0)
            self.slept += max(seconds, 0.0)
            self.sleeps += 1

    def advance(self, seconds: float) -> None:
        """Time passing between passes (not a wait of the engine's)."""
        with self._lock:
            self._offset += seconds

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=self.monotonic())

    def store(self, url: str) -> StateStore:
        return StateStore(url, clock=self.now)


class StormRedmineClock(SimClock):
    """The Redmine simulator's clock on ``StormTime``; readings stay strictly increasing.

    ``advance`` (a person acting a while after the last change, see ``Engineer``) moves
    the next reading at least that far past the last one, even when the readings' ticks
    have run ahead of ``StormTime``: the engine reads this clock's whole seconds as
    settled (it is far behind the engine's wall clock), so a person's change must never
    share a second with the engine's last read, as it cannot with a real server's clock."""

    def __init__(self, time_: StormTime) -> None:
        super().__init__(start=time_.now(), tick=timedelta(microseconds=100))
        self.storm_time = time_

    def now(self) -> datetime:
        with self._lock:
            self.current = max(self.storm_time.now(), self.current + self.tick)
            return self.current

    def advance(self, seconds: float) -> None:
        self.storm_time.advance(seconds)
        with self._lock:
            self.current += timedelta(seconds=seconds)


@dataclass
class Storm:
    """Seeded faults on a share (``rate``) of every request to either simulator."""

    time: StormTime
    seed: int
    rate: float = 0.25
    landing_s: tuple[float, float] = (2.0, 90.0)  # how late a slow write lands
    outage_every: int | None = None  # requests from one outage to the next
    outage_len: int = 10
    enabled: bool = True
    faults: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)  # per side, faulted or not
    landed: int = 0
    # Called every ``every`` requests while the storm is on: the world moving mid-pass.
    on_request: Callable[[], None] | None = None
    every: int = 40

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._parked: list[tuple[float, Handler, httpx.Request]] = []
        self._outage = 0  # requests of the current outage still to fail
        self._lock = threading.RLock()

    def wrap(self, side: str, handler: Handler) -> Handler:
        def handle(request: httpx.Request) -> httpx.Response:
            self.release()
            with self._lock:
                self.requests[side] += 1
                count = sum(self.requests.values())
                kind = None
                if self.enabled and self.outage_every and count % self.outage_every == 0:
                    self._outage = self.outage_len
                if self.enabled and self._outage > 0:
                    self._outage -= 1
                    kind = "outage"
                    self.faults[kind] += 1
                elif self.enabled and self.rng.random() < self.rate:
                    kinds = WRITE_FAULTS if request.method in WRITES else READ_FAULTS
                    kind = self.rng.choice(kinds)
                    self.faults[kind] += 1
                hook = self.on_request if self.enabled and count % self.every == 0 else None
            if hook is not None:
                hook()
            if kind is None:
                return handler(request)
            return self._fault(kind, handler, request)
        return handle

    def release(self) -> None:
        """Apply the slow writes that are due by now."""
        now = self.time.monotonic()
        with self._lock:
            due = [p for p in self._parked if p[0] <= now]
            self._parked = [p for p in self._parked if p[0] > now]
        for _at, handler, request in sorted(due, key=lambda p: p[0]):
            handler(request)
            self.landed += 1

    @property
    def parked(self) -> int:
        with self._lock:
            return len(self._parked)

    def _fault(self, kind: str, handler: Handler, request: httpx.Request) -> httpx.Response:
        rng = self.rng
        if kind == "outage":
            if rng.random() < 0.5:
                raise httpx.ConnectError("storm: outage, connection refused", request=request)
            return httpx.Response(503, json={"error": "storm: outage"})
        if kind == "429":
            return httpx.Response(429, headers={"Retry-After": str(rng.randint(1, 5))},
                                  json={"error": "Too Many Requests"})
        if kind in ("5xx", "5xx after apply"):
            if kind == "5xx after apply":
                handler(request)
            return httpx.Response(rng.choice((500, 502, 503, 504)),
                                  json={"error": "storm: server error"})
        if kind == "connect timeout":
            raise httpx.ConnectTimeout("storm: connect timeout", request=request)
        if kind == "connect refused":
            raise httpx.ConnectError("storm: connection refused", request=request)
        if kind in ("read timeout", "read timeout after apply"):
            if kind == "read timeout after apply":
                handler(request)
            raise httpx.ReadTimeout("storm: no answer", request=request)
        if kind in ("reset", "reset after apply"):
            if kind == "reset after apply":
                handler(request)
            error = rng.choice((httpx.RemoteProtocolError, httpx.ReadError))
            raise error("storm: connection reset by peer", request=request)
        assert kind == "slow write", kind
        request.read()
        with self._lock:
            self._parked.append((self.time.monotonic() + rng.uniform(*self.landing_s),
                                 handler, request))
        raise httpx.ReadTimeout("storm: no answer (the server is slow)", request=request)

    def figures(self) -> str:
        total = sum(self.requests.values())
        injected = sum(self.faults.values())
        kinds = ", ".join(f"{k} {self.faults[k]}" for k in KINDS)
        sides = ", ".join(f"{s} {n}" for s, n in sorted(self.requests.items()))
        return (f"requests {total} ({sides}); "
                f"faults {injected} = {100 * injected / max(total, 1):.1f} %: {kinds}; "
                f"slow writes landed {self.landed}, still parked {self.parked}")


# --- the ledger ------------------------------------------------------------------------------

# Letters and digits only: no markup escaping (textile, CommonMark) changes a token.
TOKEN = re.compile(r"\btok(?:h|t)\d+x\b")
CONVERSATION_URL = re.compile(r"Re:amaze conversation: \S*/admin/conversations/([^\s/]+)")
INTERNAL = 1


@dataclass(frozen=True)
class Written:
    """A message a human wrote: its token, where, and whether it is internal."""

    token: str
    slug: str
    internal: bool
    side: str  # "helpdesk" (a Re:amaze message) or "tracker" (a Redmine note)


@dataclass
class Ledger:
    """Every message the humans wrote, and checks of both simulators against it."""

    sb: Sandbox
    bot_login: str  # the Redmine login of the sync's API user
    written: list[Written] = field(default_factory=list)
    slugs: list[str] = field(default_factory=list)  # the bug conversations
    _n: int = 0

    def token(self, side: str) -> str:
        self._n += 1
        return f"tok{'h' if side == 'helpdesk' else 't'}{self._n}x"

    def record(self, token: str, slug: str, *, internal: bool, side: str) -> None:
        self.written.append(Written(token, slug, internal, side))

    def helpdesk(self, slug: str, internal: bool) -> str:
        """A token for a new Re:amaze message, recorded."""
        token = self.token("helpdesk")
        self.record(token, slug, internal=internal, side="helpdesk")
        return token

    def tracker(self, slug: str, private: bool) -> str:
        """A token for a new Redmine note, recorded."""
        token = self.token("tracker")
        self.record(token, slug, internal=private, side="tracker")
        return token

    # -- what the simulators hold ------------------------------------------------------
    def redmine_notes(self) -> dict[str, list[tuple[int, bool, str]]]:
        """token -> [(issue id, private, author login)] over every Redmine note."""
        st = self.sb.redmine.state
        logins = {u.id: u.login for u in st.users.values()}
        out: dict[str, list[tuple[int, bool, str]]] = {}
        for j in st.journals.values():
            for token in TOKEN.findall(j.notes or ""):
                out.setdefault(token, []).append((j.issue_id, j.private_notes,
                                                  logins.get(j.user_id, "?")))
        return out

    def reamaze_messages(self) -> dict[str, list[tuple[str, int, bool, bool]]]:
        """token -> [(slug, visibility, notified, by the sync)] over every message."""
        bot = self.sb.reamaze.login_email.casefold()
        out: dict[str, list[tuple[str, int, bool, bool]]] = {}
        with self.sb.reamaze.lock:
            for slug, conv in self.sb.reamaze.conversations.items():
                for m in conv.messages:
                    ours = (m.author.email or "").casefold() == bot
                    for token in TOKEN.findall(m.body):
                        out.setdefault(token, []).append((slug, m.visibility, m.notified, ours))
        return out

    def issue_of(self) -> dict[str, list[int]]:
        """slug -> the issues whose description names its conversation."""
        out: dict[str, list[int]] = {}
        for issue in self.sb.redmine.state.issues.values():
            found = CONVERSATION_URL.match(issue.description or "")
            if found is not None:
                out.setdefault(found.group(1), []).append(issue.id)
        return out

    # -- the checks ---------------------------------------------------------------------
    def never(self, *, customer_replies: bool = False) -> dict[str, int]:
        """What must hold at every moment: no second issue for a conversation, no second
        copy of a message, nothing internal public on Redmine, nothing internal (nor
        anything at all unless the policy sends tracker replies) public in Re:amaze.
        Returns the counts of each violation (all zero when sound)."""
        notes, messages = self.redmine_notes(), self.reamaze_messages()
        bad: Counter[str] = Counter()
        for issues in self.issue_of().values():
            bad["duplicate issues"] += len(issues) - 1
        for w in self.written:
            on_redmine, on_reamaze = notes.get(w.token, []), messages.get(w.token, [])
            copies = on_redmine if w.side == "helpdesk" else on_reamaze
            sources = on_reamaze if w.side == "helpdesk" else on_redmine
            bad["duplicate copies"] += max(0, len(copies) - 1) + max(0, len(sources) - 1)
            if w.internal:
                bad["leaks"] += sum(1 for _i, private, _a in on_redmine if not private)
                bad["leaks"] += sum(1 for _s, vis, _n, _o in on_reamaze if vis != INTERNAL)
            elif w.side == "tracker" and not customer_replies:
                bad["leaks"] += sum(1 for _s, vis, _n, ours in on_reamaze
                                    if ours and vis != INTERNAL)
        for entries in messages.values():
            for _slug, vis, notified, ours in entries:
                if ours and vis != INTERNAL and not customer_replies:
                    bad["leaks"] += 1
                if ours and notified and not customer_replies:
                    bad["leaks"] += 1
        return {k: bad[k] for k in ("duplicate issues", "duplicate copies", "leaks")}

    def converged(self, issue_for: Callable[[str], str | None],
                  *, customer_replies: bool = False) -> dict[str, int]:
        """At quiescence: every conversation has exactly its own issue, every message is
        copied exactly once, where it belongs, with its visibility. Counts of each miss."""
        notes, messages = self.redmine_notes(), self.reamaze_messages()
        issues = self.issue_of()
        bad: Counter[str] = Counter(self.never(customer_replies=customer_replies))
        for slug in self.slugs:
            linked = issue_for(slug)
            if linked is None or issues.get(slug) != [int(linked)]:
                bad["unlinked"] += 1
        for w in self.written:
            if w.side == "helpdesk":
                linked = issue_for(w.slug)
                copies = notes.get(w.token, [])
                right = [c for c in copies if linked is not None and c[0] == int(linked)
                         and c[1] == w.internal and c[2] == self.bot_login]
            else:
                copies = messages.get(w.token, [])
                vis = 0 if customer_replies and not w.internal else INTERNAL
                right = [c for c in copies if c[0] == w.slug and c[1] == vis and c[3]]
            if not copies:
                bad["lost"] += 1
            elif len(right) != 1:
                bad["misplaced"] += 1
        return {k: bad[k] for k in ("duplicate issues", "duplicate copies", "leaks", "lost",
                                    "misplaced", "unlinked")}
