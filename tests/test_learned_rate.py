"""Learning the real request limit from 429s: lower at once, probe up slowly, never above
the configured budget. Deterministic: virtual clocks only."""

from __future__ import annotations

from datetime import datetime

import pytest
from reamaze_support import RecordingClock, make_connector

from connectors.http import RateLimiter
from connectors.learned_rate import HOLD_SECONDS, LearnedRate
from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.config import HttpSettings

pytest_plugins = ["reamaze_fixtures"]


def test_a_429_sets_the_rate_under_what_the_server_admitted() -> None:
    """The new rate is 90 % of the requests the server let through in the last minute."""
    learned = LearnedRate(configured=90.0)
    assert learned.rate_limited(now=40.0, admitted_last_minute=60)
    assert learned.rate == pytest.approx(54.0) and learned.refused_at == 60.0


def test_429s_right_after_a_decrease_are_not_new_evidence() -> None:
    """Requests already under way when the rate dropped do not lower it again."""
    learned = LearnedRate(configured=90.0)
    learned.rate_limited(now=40.0, admitted_last_minute=60)
    assert not learned.rate_limited(now=41.0, admitted_last_minute=60)
    assert learned.rate == pytest.approx(54.0)


def test_the_rate_never_falls_under_the_floor() -> None:
    """429s that are nobody's limit cannot starve the connection: 10 % of the budget."""
    learned = LearnedRate(configured=60.0)
    for minute in range(100):
        learned.rate_limited(now=minute * 60.0, admitted_last_minute=1)
    assert learned.rate == pytest.approx(6.0)


def test_it_probes_up_only_while_the_budget_is_in_use() -> None:
    """A minute spent well under the rate is no evidence the server takes more."""
    learned = LearnedRate(configured=90.0)
    learned.rate_limited(now=0.0, admitted_last_minute=60)
    assert not learned.sent(now=61.0, used_last_minute=10)
    assert learned.rate == pytest.approx(54.0)
    assert learned.sent(now=122.0, used_last_minute=53)
    assert learned.rate == pytest.approx(55.8)


def test_after_a_429_the_probe_stops_under_the_refused_rate_for_a_while() -> None:
    """For the hold, the rate climbs to 98 % of the refused rate and stays there; after
    it, it probes past (the server may have raised its limit), never past the budget."""
    learned = LearnedRate(configured=90.0)
    learned.rate_limited(now=0.0, admitted_last_minute=60)
    now = 0.0
    while now < HOLD_SECONDS - 120:
        now += 61.0
        learned.sent(now=now, used_last_minute=int(learned.rate))
    assert learned.rate == pytest.approx(58.8)
    for _ in range(60):
        now += 61.0
        learned.sent(now=now, used_last_minute=int(learned.rate))
    assert learned.rate == 90.0


def test_a_rate_learned_earlier_is_clamped_to_the_budget() -> None:
    """A stored rate above today's budget or under its floor is brought within them."""
    limiter = RateLimiter(60, learn=True)
    limiter.start_from(500.0, None)
    assert limiter.learned_per_minute == 60.0
    limiter.start_from(0.5, 40.0)
    assert limiter.learned_per_minute == 6.0
    assert RateLimiter(60).learned_per_minute == 60.0  # not learning: the configured rate


def _429s_by_minute(sim: ReamazeSimulator, times: list[datetime], minutes: int) -> list[int]:
    start = times[0]
    counts = [0] * minutes
    for when, status in zip(times, (r.status for r in sim.requests), strict=True):
        minute = int((when - start).total_seconds() // 60)
        if status == 429 and minute < minutes:
            counts[minute] += 1
    return counts


def test_a_budget_50_percent_above_the_servers_limit_is_learned(
        rz_sim: ReamazeSimulator, rz_clock: RecordingClock) -> None:
    """Budget 90 a minute against a simulator admitting 60: after the first 429s the rate
    settles within 10 % under the real limit and no more 429s come for the rest of the
    run, while the budget keeps being used."""
    slug = rz_sim.add_conversation("Busy", "many reads", "cu@x.example")
    conn = make_connector(rz_sim, rz_clock, http=HttpSettings(requests_per_minute=90, burst=1))
    rz_sim.rate_limit(60)
    times: list[datetime] = []  # when each request reached the simulator, on its clock
    rz_sim.before_request.append(lambda _request: times.append(rz_sim.now()))
    minutes = 25
    start = rz_clock.monotonic()
    while rz_clock.monotonic() - start < minutes * 60:
        conn.get_ticket(slug)
    limited = _429s_by_minute(rz_sim, times, minutes)
    assert sum(limited[:2]) >= 1, "the budget above the limit never drew a 429"
    assert sum(limited[2:]) == 0, f"429s by minute: {limited}"
    limiter = conn.api.rate_limiter
    assert limiter is not None
    assert 54.0 <= limiter.learned_per_minute <= 60.0
    served = sum(1 for r in rz_sim.requests if r.status == 200)
    assert served / minutes >= 0.9 * 60
