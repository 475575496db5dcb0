"""A connection's write budget (``writes_per_minute``) on top of its overall request budget,
driven through httpx.MockTransport and the real connectors on a fake clock (no sleeping)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import httpx
import pytest
from fakes import FakeClock
from pydantic import SecretStr
from reamaze_support import RecordingClock, make_connector

from connectors.base import never_reached
from connectors.http import (
    HEADROOM,
    ApiClient,
    RateLimiter,
    RetryPolicy,
    build_http_client,
    write_once,
)
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.reamaze.sim.state import SimClock
from connectors.redmine.connector import RedmineConnector
from connectors.redmine.sim.simulator import RedmineSimulator
from connectors.redmine.sim.state import SimClock as RedmineSimClock
from syncer.config import HttpSettings, RedmineConfig
from syncer.errors import OutcomeUnknownError, SyncError, TransientError
from syncer.models import NewComment, NewTicket, Visibility

pytest_plugins = ["reamaze_fixtures"]

Sent = list[tuple[str, float]]


def recording_client(clock: FakeClock, *, per_minute: float, writes_per_minute: float | None,
                     answer: Callable[[httpx.Request], httpx.Response] | None = None,
                     retry: RetryPolicy | None = None) -> tuple[ApiClient, Sent]:
    """An ApiClient with both budgets whose server records (method, time) of every request."""
    sent: Sent = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append((request.method, clock.now))
        return answer(request) if answer is not None else httpx.Response(200, json={})

    writes = (RateLimiter(writes_per_minute, burst=1, clock=clock)
              if writes_per_minute is not None else None)
    api = ApiClient("test", build_http_client("https://api.example",
                                              transport=httpx.MockTransport(handle)),
                    rate_limiter=RateLimiter(per_minute, burst=1, clock=clock),
                    write_limiter=writes, clock=clock,
                    retry=retry or RetryPolicy(attempts=4, initial_backoff=0.5, max_backoff=2))
    return api, sent


def times(sent: Sent, *methods: str) -> list[float]:
    return [t for m, t in sent if not methods or m in methods]


def gaps(ts: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(ts)]


# -- the budgets on their own ------------------------------------------------------------------

def test_writes_are_spaced_at_the_write_rate_and_reads_are_not() -> None:
    """At 600 requests and 12 writes a minute, writes go out every 5 s while the reads
    between them keep the overall pace of 0.1 s."""
    clock = FakeClock()
    api, sent = recording_client(clock, per_minute=600, writes_per_minute=12)
    for _ in range(4):
        api.request("POST", "/w")
        for _ in range(5):
            api.request("GET", "/r")
    start = sent[0][1]
    assert [t - start for t in times(sent, "POST")] == pytest.approx([0, 5, 10, 15])
    for i in range(4):
        reads = [t for _, t in sent[6 * i + 1:6 * i + 6]]
        assert gaps([sent[6 * i][1], *reads]) == pytest.approx([0.1] * 5)
    assert api.write_limiter is not None
    assert api.write_limiter.waited == pytest.approx(3 * (5 - 0.5))


def test_every_write_method_draws_from_the_write_budget_and_reads_never_do() -> None:
    """POST, PUT, PATCH and DELETE are writes; GET and HEAD leave the write budget alone."""
    clock = FakeClock()
    api, sent = recording_client(clock, per_minute=6000, writes_per_minute=60)
    for method in ("GET", "HEAD", "GET"):
        api.request(method, "/r")
    assert api.write_limiter is not None and api.write_limiter.waited == 0
    for method in ("POST", "PUT", "PATCH", "DELETE", "post"):
        api.request(method, "/w")
    writes = times(sent, "POST", "PUT", "PATCH", "DELETE")
    assert gaps(writes) == pytest.approx([1.0] * 4)


def test_without_a_write_budget_writes_only_share_the_overall_one() -> None:
    """writes_per_minute unset: writes and reads alike go out at the overall pace."""
    clock = FakeClock()
    api, sent = recording_client(clock, per_minute=60, writes_per_minute=None)
    for method in ("POST", "GET", "PUT", "GET"):
        api.request(method, "/x")
    assert gaps(times(sent)) == pytest.approx([1.0] * 3)
    assert api.write_limiter is None


def test_a_write_also_spends_an_overall_token() -> None:
    """A read right after a write waits for the overall budget the write drew from."""
    clock = FakeClock()
    api, sent = recording_client(clock, per_minute=60, writes_per_minute=30)
    api.request("POST", "/w")
    api.request("GET", "/r")
    assert gaps(times(sent)) == pytest.approx([1.0])


class ReadArrivesDuringWait(FakeClock):
    """Runs ``during`` once, at the start of the next sleep: a read from another pair's
    thread arriving while a write waits (the write's thread holds only the write budget)."""

    def __init__(self) -> None:
        super().__init__()
        self.during: Callable[[], object] | None = None

    def sleep(self, seconds: float) -> None:
        during, self.during = self.during, None
        if during is not None:
            during()
        super().sleep(seconds)


def test_a_write_waiting_for_its_budget_holds_no_overall_token() -> None:
    """A read arriving while a write waits for the write budget goes out at once: the write
    takes its overall token only when its write token is there."""
    clock = ReadArrivesDuringWait()
    api, sent = recording_client(clock, per_minute=60, writes_per_minute=6)
    api.request("POST", "/w")
    clock.now += 1.0  # the overall budget has a token again; the write budget has not
    clock.during = lambda: api.request("GET", "/r")
    api.request("POST", "/w")
    start = sent[0][1]
    assert [(m, t - start) for m, t in sent] == [("POST", 0.0), ("GET", 1.0),
                                                 ("POST", pytest.approx(10.0))]
    assert clock.sleeps == [pytest.approx(9.0)]  # the write's wait only; the read's none


def test_a_write_delayed_by_the_overall_budget_still_spaces_the_next_write() -> None:
    """The write budget counts from when a write actually leaves: when reads make a write
    wait for its overall token, the next write is still a full write interval behind it."""
    clock = FakeClock()
    api, sent = recording_client(clock, per_minute=60, writes_per_minute=40)
    api.request("GET", "/r")
    api.request("POST", "/w")  # write token at once, overall token 1 s later
    api.request("POST", "/w")
    start = sent[0][1]
    assert [t - start for t in times(sent, "POST")] == pytest.approx([1.0, 2.5])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_both_budgets_hold_together_over_a_long_mixed_run(seed: int) -> None:
    """Random reads and writes, the caller busy now and then: every request goes out
    exactly when both of its budgets allow (with burst 1: the overall interval after the
    previous request and, for a write, the write interval after the previous write)."""
    rng = random.Random(seed)
    clock = FakeClock()
    api, sent = recording_client(clock, per_minute=120, writes_per_minute=40)
    arrivals: list[float] = []
    for _ in range(300):
        if rng.random() < 0.2:
            clock.now += rng.uniform(0, 2)
        arrivals.append(clock.now)
        api.request("POST" if rng.random() < 0.4 else "GET", "/x")
    last_write: float | None = None
    for i, ((method, at), arrived) in enumerate(zip(sent, arrivals, strict=True)):
        earliest = [arrived] if i == 0 else [arrived, sent[i - 1][1] + 0.5]
        if method == "POST" and last_write is not None:
            earliest.append(last_write + 1.5)
        assert at == pytest.approx(max(earliest)), i
        if method == "POST":
            last_write = at


# -- retries -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("retry_after", "second_attempt"), [(1, 10.0), (30, 30.0)])
def test_a_rate_limited_write_is_retried_after_retry_after_and_a_write_token(
        retry_after: int, second_attempt: float) -> None:
    """The retry of a 429'd write waits for Retry-After and for a fresh write token,
    whichever is later: each attempt is a write the server counts."""
    clock = FakeClock()
    answers = iter([httpx.Response(429, headers={"Retry-After": str(retry_after)}),
                    httpx.Response(201, json={"id": 1})])
    api, sent = recording_client(clock, per_minute=600, writes_per_minute=6,
                                 answer=lambda _r: next(answers))
    assert api.send_json("POST", "/w", {"x": 1}) == {"id": 1}
    start = sent[0][1]
    assert [t - start for t in times(sent)] == pytest.approx([0.0, second_attempt])
    assert clock.sleeps[0] == retry_after  # Retry-After honoured as it is without a budget
    assert api.stats.rate_limited == 1 and api.stats.retries == 1


def test_write_once_looks_up_as_a_read_and_never_resends() -> None:
    """A create that failed with a 503 is looked up at its settle delays (reads, not held
    back by the write budget) and, not found, reported unknown without a second POST."""
    clock = FakeClock()
    answers = iter([httpx.Response(503)] + [httpx.Response(200, json=[])] * 3)
    api, sent = recording_client(clock, per_minute=600, writes_per_minute=6,
                                 answer=lambda _r: next(answers))

    def lookup() -> object:
        return api.get_json("/w") or None

    with pytest.raises(OutcomeUnknownError):
        write_once(api, lambda: api.send_json("POST", "/w", {}, retry_transient=False),
                   lookup, settle=(1.0, 3.0, 10.0))
    (post, *gets) = sent
    assert [post[0], *(g[0] for g in gets)] == ["POST", "GET", "GET", "GET"]
    assert [g[1] - post[1] for g in gets] == pytest.approx([1.0, 3.0, 10.0], abs=0.2)


# -- wired from the config by both connectors --------------------------------------------------

def test_reamaze_connection_paces_writes_with_writes_per_minute(
        rz_sim: ReamazeSimulator, rz_sim_clock: SimClock) -> None:
    """Re:amaze with writes_per_minute = 6: its two message posts go out 10 s apart, the
    reads between them at the overall pace."""
    clock = RecordingClock(rz_sim_clock)
    sent: Sent = []
    rz_sim.before_request.append(lambda r: sent.append((r.method, clock.now)))
    slug = rz_sim.add_conversation("Broken", "it broke", "cu@x.example")
    conn = make_connector(rz_sim, clock, http=HttpSettings(
        requests_per_minute=600, writes_per_minute=6))
    for i in range(2):
        conn.create_comment(slug, NewComment(body=f"note {i}", visibility=Visibility.INTERNAL,
                                             marker=f"m-{i}"))
        for _ in range(3):
            conn.get_ticket(slug)
    # Connections keep HEADROOM under the configured rates (jitter must not cause a 429).
    assert gaps(times(sent, "POST")) == pytest.approx([10.0 / HEADROOM])
    assert max(gaps(times(sent, "GET"))) < 10
    assert conn.api.write_limiter is not None
    assert conn.api.write_limiter.rate == pytest.approx(6 / 60 * HEADROOM)


def test_redmine_connection_paces_writes_with_writes_per_minute() -> None:
    """Redmine with writes_per_minute = 12: three issue creates go out 5 s apart."""
    sim = RedmineSimulator(clock=RedmineSimClock(), sleep=lambda _s: None)
    sim.add_project("sync")
    clock = FakeClock()
    sent: Sent = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append((request.method, clock.now))
        return sim.handle(request)

    cfg = RedmineConfig.model_validate({
        "kind": "redmine", "base_url": "http://redmine.test", "project": "sync",
        "http": {"requests_per_minute": 600, "writes_per_minute": 12}})
    conn = RedmineConnector.from_config(cfg, SecretStr(sim.admin_key),
                                        transport=httpx.MockTransport(handle), clock=clock,
                                        now=sim.clock.now)
    for i in range(3):
        conn.create_ticket(NewTicket(subject=f"bug {i}", description="d", marker=f"rs-k-{i}"))
    assert gaps(times(sent, "POST")) == pytest.approx([5.0 / HEADROOM] * 2)
    assert min(gaps(times(sent))) >= 0.1 / HEADROOM - 1e-9


@pytest.mark.parametrize(("lookup_answer", "reported"), [
    (lambda r: httpx.Response(429, headers={"Retry-After": "1"}), TransientError),
    (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)), TransientError),
    (lambda r: httpx.Response(200, content=b"not json"), OutcomeUnknownError),
], ids=["429", "connect-refused", "bad-payload"])
def test_write_once_never_reports_a_failed_lookup_as_a_write_that_was_not_sent(
        lookup_answer: Callable[[httpx.Request], httpx.Response],
        reported: type[SyncError]) -> None:
    """A create got no answer and looking for it fails too: the lookup's error (a 429, a
    connection never made) says nothing about the create, which may still land. It is
    reported as a write that may have been sent, never as one that certainly was not."""
    clock = FakeClock()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            raise httpx.ReadTimeout("no answer", request=request)
        return lookup_answer(request)

    api, sent = recording_client(clock, per_minute=600, writes_per_minute=None,
                                 answer=answer)
    with pytest.raises(SyncError) as caught:
        write_once(api, lambda: api.send_json("POST", "/w", {}, retry_transient=False),
                   lambda: api.get_json("/w") or None, settle=(1.0, 3.0, 10.0))
    assert type(caught.value) is reported and not never_reached(caught.value)
    assert [m for m, _t in sent].count("POST") == 1
