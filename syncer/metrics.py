"""The daemon's Prometheus metrics.

One registry per daemon, never ``prometheus_client``'s global one: two daemons in one
process (the tests run several) keep their numbers apart. The numbers come from the engine
itself, in two ways:

* **after each pass**, from its ``PassResult``: operations by pair, kind and outcome (the
  pass's counts, translated by ``OPERATIONS``), passes by outcome, pass durations;
* **at scrape time** (``_ScrapeCollector``): API requests and 429s from each connection's
  ``ApiClient.stats``, its request budgets (configured and learned) from its rate limiters,
  and from the state store the cursor lag, pending intents, failing objects, open leaks
  and the last successful pass of each pair; and whether this instance holds each pair.

The README's "Metrics" table lists every name and label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from connectors.http import ApiClient, CallStats, RateLimiter
from state import StateStore
from syncer.config import PairConfig
from syncer.plan import Side
from syncer.runner import PassResult

log = structlog.get_logger("reamaze_sync.metrics")

PREFIX = "reamaze_sync"

# A pass's counts as (kind, outcome) of reamaze_sync_operations_total.
OPERATIONS: dict[str, tuple[str, str]] = {
    "issues_created": ("issue", "created"),
    "issues_adopted": ("issue", "adopted"),
    "comments_to_tracker": ("comment_to_tracker", "written"),
    "comments_to_helpdesk": ("comment_to_helpdesk", "written"),
    "comments_updated_tracker": ("comment_to_tracker", "updated"),
    "comments_updated_helpdesk": ("comment_to_helpdesk", "updated"),
    "messages_in_description": ("message_in_description", "written"),
    "tracker_updated": ("update_tracker", "written"),
    "helpdesk_updated": ("update_helpdesk", "written"),
    "comment_links_rebuilt": ("comment_link", "rebuilt"),
    "orphaned": ("link", "orphaned"),
    "failed": ("conversation", "failed"),
    "failures_retried": ("conversation", "retried"),
    "skipped_by_operator": ("conversation", "skipped_by_operator"),
    "leaks_removed": ("leak", "removed"),
    "leaks_unremoved": ("leak", "unremoved"),
    "writes_held": ("write", "held"),
    "intents_recovered": ("write", "recovered"),
    "intents_expired": ("write", "expired"),
    "untrusted_markers": ("marker", "untrusted"),
    "conflicts": ("field", "conflict"),
}
# Counts that are no operations: what the feeds showed (own changes among them), a plan's
# size (dry runs), the reconciler's decisions not to copy something (repeated on every look
# at the object), and the open leaks (a gauge, read from the store).
NOT_OPERATIONS = frozenset({"conversations_seen", "issues_seen", "planned_writes", "skipped",
                            "leaks_open", "own_changes_not_reread"})
PASS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                1800.0, 3600.0)


def operation(count: str) -> tuple[str, str] | None:
    """The (kind, outcome) a count of a pass adds to; a count this table does not know yet
    is kept under its own name with the outcome ``done`` rather than dropped."""
    if count in NOT_OPERATIONS:
        return None
    return OPERATIONS.get(count, (count, "done"))


class DaemonMetrics:
    """The registry of one daemon and what its passes record into it."""

    def __init__(self, store: StateStore, pairs: Sequence[PairConfig],
                 connections: dict[str, object], holds: Callable[[str], bool]) -> None:
        self.registry = CollectorRegistry()
        self.operations = Counter(
            f"{PREFIX}_operations", "What the passes did, by pair, kind and outcome.",
            ["pair", "kind", "outcome"], registry=self.registry)
        self.passes = Counter(
            f"{PREFIX}_passes", "Passes by outcome: ok, failed; busy (another process worked "
            "the pair) and held_elsewhere (another instance holds it) did nothing.",
            ["pair", "outcome"], registry=self.registry)
        self.pass_duration = Histogram(
            f"{PREFIX}_pass_duration_seconds", "How long the passes that ran took.", ["pair"],
            buckets=PASS_BUCKETS, registry=self.registry)
        for pair in pairs:  # present from the first scrape, so rate() sees the first pass
            for outcome in ("ok", "failed", "busy", "held_elsewhere"):
                self.passes.labels(pair.name, outcome)
            self.pass_duration.labels(pair.name)
        self.scrape = _ScrapeCollector(store, [p.name for p in pairs], connections, holds)
        self.registry.register(self.scrape)

    def count_calls(self, service: str, stats: CallStats) -> None:
        """Requests of a connection that is gone (the start check's): still requests."""
        self.scrape.earlier.setdefault(service, []).append(stats)

    def record_held_elsewhere(self, pair: str) -> None:
        """A pass not run: another instance holds the pair."""
        self.passes.labels(pair, "held_elsewhere").inc()

    def record_pass(self, result: PassResult, seconds: float) -> None:
        if result.busy:
            self.passes.labels(result.pair, "busy").inc()
            return
        self.passes.labels(result.pair, "ok" if result.ok else "failed").inc()
        self.pass_duration.labels(result.pair).observe(seconds)
        for count, value in result.counts.items():
            op = operation(count)
            if op is not None and value > 0:
                self.operations.labels(result.pair, *op).inc(value)


class _ScrapeCollector(Collector):
    """What is read at scrape time, so it is never out of date."""

    def __init__(self, store: StateStore, pairs: list[str], connections: dict[str, object],
                 holds: Callable[[str], bool]) -> None:
        self.store = store
        self.pairs = pairs
        self.connections = connections
        self.holds = holds
        self.earlier: dict[str, list[CallStats]] = {}

    def collect(self) -> Iterable[Metric]:
        yield from self._api()
        held = GaugeMetricFamily(f"{PREFIX}_pair_held", "1 while this instance holds the pair "
                                 "(works it; other instances leave it alone).", labels=["pair"])
        for pair in self.pairs:
            held.add_metric([pair], 1.0 if self.holds(pair) else 0.0)
        yield held
        yield from self._state()

    def _api(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(f"{PREFIX}_api_requests", "HTTP requests sent, every "
                                       "attempt counted.", labels=["service"])
        limited = CounterMetricFamily(f"{PREFIX}_api_rate_limited", "Answers 429 (rate "
                                      "limited).", labels=["service"])
        retries = CounterMetricFamily(f"{PREFIX}_api_retries", "Requests sent again after a "
                                      "429, a 5xx or a timeout.", labels=["service"])
        rate = GaugeMetricFamily(f"{PREFIX}_api_budget_per_minute", "The configured request "
                                 "budget (requests or writes per minute).",
                                 labels=["service", "budget"])
        used = GaugeMetricFamily(f"{PREFIX}_api_budget_used_last_minute", "Requests that drew "
                                 "from the budget in the last 60 seconds.",
                                 labels=["service", "budget"])
        waited = CounterMetricFamily(f"{PREFIX}_api_budget_wait_seconds", "Time requests "
                                     "waited for the budget.", labels=["service", "budget"])
        learned = GaugeMetricFamily(f"{PREFIX}_api_budget_learned_per_minute", "The request "
                                    "rate the connection runs at now: the configured budget "
                                    "until 429s taught a lower one.", labels=["service"])
        for service, conn in sorted(self.connections.items()):
            api = getattr(conn, "api", None)
            if not isinstance(api, ApiClient):
                continue  # a connection that could not be built (missing credentials)
            every = [api.stats, *self.earlier.get(service, ())]
            requests.add_metric([service], sum(st.requests for st in every))
            limited.add_metric([service], sum(st.rate_limited for st in every))
            retries.add_metric([service], sum(st.retries for st in every))
            if api.rate_limiter is not None:
                learned.add_metric([service], api.rate_limiter.learned_per_minute)
            budgets: list[tuple[str, RateLimiter | None]] = [
                ("requests", api.rate_limiter), ("writes", api.write_limiter)]
            for budget, limiter in budgets:
                if limiter is not None:
                    rate.add_metric([service, budget], limiter.per_minute)
                    used.add_metric([service, budget], limiter.used_last_minute())
                    waited.add_metric([service, budget], limiter.waited)
        yield from (requests, limited, retries, rate, used, waited, learned)

    def _state(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_state_store_up", "1 when the state database "
                               "answered this scrape's queries.")
        lag = GaugeMetricFamily(f"{PREFIX}_cursor_lag_seconds", "How far behind now the "
                                "pair's cursor is: the age of the newest change it has passed "
                                "(grows while a side is quiet).", labels=["pair", "side"])
        intents = GaugeMetricFamily(f"{PREFIX}_pending_intents", "Journalled writes not "
                                    "known to have landed (pending) or refused (failed).",
                                    labels=["pair", "status"])
        failing = GaugeMetricFamily(f"{PREFIX}_failing_objects", "Objects in the dead "
                                    "letter (skipped ones included).", labels=["pair"])
        leaks = GaugeMetricFamily(f"{PREFIX}_open_leaks", "Public copies of internal content "
                                  "that could not be removed.", labels=["pair"])
        success = GaugeMetricFamily(f"{PREFIX}_last_success_timestamp_seconds", "When the "
                                    "pair's last successful pass finished (any instance).",
                                    labels=["pair"])
        try:
            now = self.store.now()
            for pair in self.pairs:
                for side in Side:
                    cursor = self.store.get_cursor(pair, side)
                    if cursor is not None:
                        lag.add_metric([pair, side.value],
                                       max(0.0, (now - cursor.watermark).total_seconds()))
                pending = [i.status for i in self.store.pending_intents(pair)]
                for status in ("pending", "failed"):
                    intents.add_metric([pair, status], pending.count(status))
                failing.add_metric([pair], len(self.store.list_failures(pair)))
                leaks.add_metric([pair], len(self.store.open_leaks(pair)))
                last = self.store.last_ok_run(pair)
                if last is not None and last.finished_at is not None:
                    success.add_metric([pair], last.finished_at.timestamp())
        except SQLAlchemyError as exc:
            log.warning("metrics_state_unreadable", error=type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield from (up, lag, intents, failing, leaks, success)
