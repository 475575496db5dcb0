"""Learning a server's real request limit from its 429s (additive increase, multiplicative
decrease), so a budget configured above the limit stops drawing 429s.

Re:amaze does not publish its per-token limit; the configured ``requests_per_minute`` is
a guess. A 429 is the server saying how much it admits: the requests it let through in
the last minute (ours, counted by the rate limiter, minus those it refused). The rate is
set a step below that at once, instead of halving and creeping back as TCP does, because
a sliding one-minute window answers every request over the limit with a 429 while a
halved rate wastes half the budget for minutes.

Then it probes upwards slowly: one ``step`` per minute in which the budget was the
bottleneck (a budget not in use is no evidence the server would take more). For
``hold_seconds`` after a 429 the probe stops short of the rate that was refused, so a
learned limit costs one 429 per ``hold_seconds`` at most, and a server that raised its
limit (or a process sharing the token that stopped) is still found again later. Never
above the configured rate, never below ``floor``.

Pure: the caller passes the times and the counts (``connectors.http.RateLimiter``).
"""

from __future__ import annotations

from dataclasses import dataclass

# A refused rate is followed by this share of what the server admitted.
DECREASE = 0.9
# Each probe step, as a share of the configured rate (at least half a request a minute).
STEP = 0.02
# After a 429 the probe stays this share under the refused rate for ``HOLD_SECONDS``.
BELOW_REFUSED = 0.98
HOLD_SECONDS = 1800.0
# 429s this soon after a decrease answer requests already under way: not new evidence.
COOLDOWN_SECONDS = 10.0
PROBE_PERIOD_SECONDS = 60.0
# A minute counts as "the budget was the bottleneck" when this share of it was used.
BUSY_SHARE = 0.9
# The rate never goes under this share of the configured one (nor under 1 a minute), so
# 429s that are no limit of ours (a proxy's hiccup) cannot starve the connection.
FLOOR_SHARE = 0.1


@dataclass
class LearnedRate:
    configured: float  # requests per minute, the ceiling
    rate: float = 0.0  # what the limiter runs at now; 0: the configured rate
    refused_at: float | None = None  # the rate the last 429 answered, per minute
    _last_decrease: float | None = None
    _last_probe: float | None = None
    _restored: bool = False
    version: int = 0  # bumped on every change, so a saver writes only what changed

    def __post_init__(self) -> None:
        if self.rate <= 0:
            self.rate = self.configured

    @property
    def floor(self) -> float:
        return min(self.configured, max(1.0, self.configured * FLOOR_SHARE))

    @property
    def learned(self) -> bool:
        return self.rate < self.configured

    def start_from(self, rate: float, refused_at: float | None) -> None:
        """A rate learned earlier (another process, the last run): clamped to today's
        configured ceiling and floor."""
        self.rate = min(self.configured, max(self.floor, rate))
        self.refused_at = refused_at
        # The hold counts from this process's first request: the clock is monotonic.
        self._restored = refused_at is not None

    def rate_limited(self, now: float, admitted_last_minute: int) -> bool:
        """A 429 arrived; whether the rate changed."""
        if self._last_decrease is not None and now - self._last_decrease < COOLDOWN_SECONDS:
            return False
        admitted = float(admitted_last_minute) if admitted_last_minute > 0 else self.rate
        refused = min(self.rate, admitted)
        self.refused_at = refused
        self.rate = max(self.floor, refused * DECREASE)
        self._last_decrease = self._last_probe = now
        self.version += 1
        return True

    def sent(self, now: float, used_last_minute: int) -> bool:
        """A request went out; whether the rate was raised (one probe step)."""
        if self._restored:
            self._restored = False
            self._last_decrease = now
        if self._last_probe is None:
            self._last_probe = now
            return False
        if now - self._last_probe < PROBE_PERIOD_SECONDS:
            return False
        self._last_probe = now
        if self.rate >= self.configured or used_last_minute < BUSY_SHARE * self.rate:
            return False
        ceiling = self.configured
        held = (self.refused_at is not None and self._last_decrease is not None
                and now - self._last_decrease < HOLD_SECONDS)
        if held and self.refused_at is not None:
            ceiling = min(ceiling, max(self.rate, self.refused_at * BELOW_REFUSED))
        raised = min(ceiling, self.rate + max(0.5, self.configured * STEP))
        if raised <= self.rate:
            return False
        self.rate = raised
        self.version += 1
        return True
