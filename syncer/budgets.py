"""Request rates learned from 429s, kept in the state store between processes.

Each connection's overall budget learns the server's real limit (``connectors.learned_rate``);
this module loads what an earlier process learned when the engine is built and saves
what changed after each pass. The key names the service and whose credential it uses
(the Re:amaze login and API base, a tracker's name and server), never the credential: the
limit is the server's per credential, and another process of the same installation
(a `backfill` beside the daemon, the daemon after a restart) uses the same one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog
from sqlalchemy.exc import SQLAlchemyError

from connectors.http import ApiClient, RateLimiter, SharedBudgetUnavailable
from state import StateStore
from syncer.config import AppConfig

log = structlog.get_logger("reamaze_sync.budgets")

HELPDESK = "reamaze"


def budget_keys(config: AppConfig) -> dict[str, str]:
    """service (a brand's, ``AppConfig.brand_service``, or a tracker's name) -> the key its
    learned rate is kept under."""
    keys = {config.brand_service(name): f"{HELPDESK} {brand.login_email} {brand.api_base()}"
            for name, brand in config.brands.items()}
    for name, tracker in config.trackers.items():
        keys[name] = f"{name} {str(tracker.base_url).rstrip('/')}"
    return keys


@dataclass
class LearnedBudgets:
    store: StateStore
    limiters: dict[str, tuple[str, RateLimiter]]  # service -> (key, its overall budget)
    _saved: dict[str, int] = field(default_factory=dict, init=False)  # service -> version

    @classmethod
    def of(cls, config: AppConfig, store: StateStore,
           connections: Mapping[str, object]) -> LearnedBudgets:
        keys = budget_keys(config)
        limiters: dict[str, tuple[str, RateLimiter]] = {}
        for service, conn in connections.items():
            api = getattr(conn, "api", None)
            if isinstance(api, ApiClient) and api.rate_limiter is not None \
                    and api.rate_limiter.learner is not None and service in keys:
                limiters[service] = (keys[service], api.rate_limiter)
        return cls(store, limiters)

    def restore(self) -> None:
        """Start every connection from the rate last learned for its key."""
        stored = {r.key: r for r in self.store.learned_rates()}
        for service, (key, limiter) in self.limiters.items():
            found = stored.get(key)
            if found is not None:
                limiter.start_from(found.per_minute, found.refused_at_per_minute)
                log.info("budget_restored", service=service, operation="learn_rate",
                         per_minute=round(limiter.learned_per_minute, 2),
                         configured_per_minute=limiter.per_minute)
            if limiter.learner is not None:
                self._saved[service] = limiter.learner.version

    def save(self) -> None:
        """Store the rates that changed since the last save. A failure is only logged:
        the next save tries again, and the rate in memory is what paces this process."""
        for service, (key, limiter) in self.limiters.items():
            learner = limiter.learner
            if learner is None or self._saved.get(service) == learner.version:
                continue
            version = learner.version
            try:
                self.store.save_learned_rate(key, service, learner.rate, learner.refused_at)
            except SQLAlchemyError as exc:
                log.warning("learned_rate_not_saved", service=service, operation="learn_rate",
                            error=type(exc).__name__)
                continue
            self._saved[service] = version


# --- one budget per credential, for every process using it ---------------------------------

def shared_budget_keys(config: AppConfig) -> dict[str, str]:
    """service -> the key of the budget every process using its credential shares: the
    Re:amaze login (its token, whichever brand: two brands on one login share a budget),
    a tracker's server and the variable its secret comes from. Never the credential."""
    keys = {config.brand_service(name): f"{HELPDESK} {brand.login_email.lower()}"
            for name, brand in config.brands.items()}
    for name, tracker in config.trackers.items():
        keys[name] = (f"{tracker.kind} {str(tracker.base_url).rstrip('/')} "
                      f"{tracker.secret_env()}")
    return keys


# A fast budget books its slots this far ahead in one transaction (at most BATCH_MAX): a
# transaction per request would cost more than the request at hundreds a second, while a
# budget of a request a second still books one at a time.
BATCH_SECONDS = 0.25
BATCH_MAX = 50


@dataclass
class StorePacer:
    """A connection's budget booked in the state store (``state.budgets``)."""

    store: StateStore
    key: str
    now: Callable[[], float]
    background: bool = False
    _warned: bool = field(default=False, init=False)
    # Slots this process booked ahead (times on ``now``'s clock), used before booking more.
    _slots: deque[float] = field(default_factory=deque, init=False)

    def reserve(self, interval: float, burst: float) -> tuple[float, bool]:
        now = self.now()
        while self._slots and self._slots[0] < now - interval:
            self._slots.popleft()  # unused past its turn: sending on it now would crowd
        if self._slots:
            return max(0.0, self._slots.popleft() - now), True
        count = 1 if self.background else max(1, min(BATCH_MAX, int(BATCH_SECONDS / interval)))
        read: list[float] = []

        def locked_now() -> float:
            read.append(self.now())
            return read[-1]

        try:
            booked = self.store.reserve_request(self.key, locked_now, interval, burst,
                                                background=self.background, count=count)
        except SQLAlchemyError as exc:
            if not self._warned:
                log.warning("shared_budget_unavailable", operation="share_budget",
                            budget=self.key, error=type(exc).__name__,
                            action="pacing by this process's own budget")
                self._warned = True
            raise SharedBudgetUnavailable from None
        self._warned = False
        wait, ok = booked
        if ok and count > 1:
            # Each later slot one interval after the first: never sooner than the bucket
            # allows (its burst could only allow them earlier).
            start = (read[-1] if read else now) + wait
            self._slots.extend(start + n * interval for n in range(1, count))
        return booked


def share_budgets(config: AppConfig, store: StateStore, connections: Mapping[str, object], *,
                  now: Callable[[], float] | None = None, background: bool = False) -> None:
    """Pace every connection by the budget its credential shares with other processes (a
    `backfill` next to the daemon, a second daemon): the sum stays within the configured
    rate instead of each process spending all of it. ``background`` (a backfill) books a
    request only when no other process's request is queued: it takes what live syncing
    leaves. ``now``: the processes' common clock (wall time; an injected clock in tests)."""
    keys = shared_budget_keys(config)
    for service, conn in connections.items():
        api = getattr(conn, "api", None)
        if isinstance(api, ApiClient) and api.rate_limiter is not None and service in keys:
            api.rate_limiter.shared = StorePacer(store, keys[service], now or time.time,
                                                 background)
