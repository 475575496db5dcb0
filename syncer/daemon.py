"""The long-running daemon: one APScheduler job per pair, graceful shutdown.

Jobs run with ``max_instances=1`` and ``coalesce=True`` (a slow pass never overlaps
itself, missed runs collapse into one). Each pair starts at a small random offset so pairs
don't poll in lock step, then polls exactly every ``interval_seconds``: a jitter on every
run adds up (APScheduler counts each run from the previous jittered one), so polls drifted
to interval + jitter/2 apart and the latency benchmark's p95 went past interval + 1 s.
SIGTERM/SIGINT set a stop event: the pass in progress stops after the object it is
working on, saves what it finished, and the process exits. A pair that another process
is working (a `backfill`, a `run --once`) is not waited for: its pass is skipped with a
``pair_busy`` line and tried again at the next interval.

After its feeds, each poll runs a slice of the pair's anti-entropy sweep within its share
of the request budgets (``syncer.sweep``, ``[sync] sweep_share``).

Several daemons may share one state database (instances on several hosts, PostgreSQL):
each pair is *claimed* by the first daemon to run it, which keeps the claim while it lives
and gives it up when it stops; the others skip the pair (``pair_claimed_elsewhere``) and
take it over once a dead claimant's claim has expired. See ``state.locks``.

With ``[server] listen`` set, an HTTP listener serves /healthz, /readyz and /metrics
(``syncer.listener``), the metrics fed by every pass (``syncer.metrics``).

Before scheduling anything the daemon tries every connection its pairs use, once and
briefly (``syncer.startcheck``). When every pair it was asked to run has a wrong
credential or setting it does not start: a ``ConfigError`` listing them (the CLI exits 2).
A broken pair among healthy ones is logged (``pair_broken``, error level) and scheduled
all the same: the others keep syncing, its passes fail and say so (``status`` exits 1),
and it recovers without a restart once the server side is fixed. An outage at start (5xx,
timeouts) stops nothing (``start_check_unavailable``): the passes retry on schedule.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from connectors.http import ApiClient, CallStats
from state import LeaseLost, PairBusy, PairLease, StateStore
from syncer.app import Engine
from syncer.config import PairConfig, read_secret
from syncer.errors import ConfigError
from syncer.health import readiness
from syncer.listener import Listener, health_app
from syncer.metrics import DaemonMetrics
from syncer.prune import Pruner
from syncer.relay import FileRelay, relay_app
from syncer.runner import PairRunner, PassResult
from syncer.secrets import register_secret, scrub
from syncer.startcheck import check_at_start
from syncer.sweep import SweepBudget, SweepSlice
from syncer.webhooks import VERIFIERS, Hook, TargetedSyncs, WebhookEndpoint

log = structlog.get_logger("reamaze_sync.daemon")


class PairClaims:
    """The pairs this daemon has claimed (``StoreCore.claim_pair``), kept between passes."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._held: dict[str, PairLease] = {}
        self._elsewhere: dict[str, str] = {}  # pair -> the other holder last seen
        self._guard = threading.Lock()

    def hold(self, pair: str) -> bool:
        """Whether this daemon has the pair, claiming it if nobody else has."""
        with self._guard:
            lease = self._held.get(pair)
        if lease is not None:
            try:
                lease.check()
                return True
            except LeaseLost as exc:  # expired (a stall) or taken over meanwhile
                log.warning("pair_claim_lost", pair=pair, reason=exc.reason)
                self._drop(pair, lease)
        try:
            lease = self.store.claim_pair(pair)
        except PairBusy as exc:
            holder = str(exc.holder)
            # Said once per holder, not at every interval of a standby instance.
            say = log.debug if self._elsewhere.get(pair) == holder else log.info
            self._elsewhere[pair] = holder
            say("pair_claimed_elsewhere", pair=pair, holder=holder)
            return False
        with self._guard:
            self._held[pair] = lease
            self._elsewhere.pop(pair, None)
        log.info("pair_claimed", pair=pair)
        return True

    def holds(self, pair: str) -> bool:
        """Whether this daemon has the pair now, without trying to claim it."""
        with self._guard:
            lease = self._held.get(pair)
        if lease is None:
            return False
        try:
            lease.check()
        except LeaseLost:
            return False
        return True

    def release_all(self) -> None:
        with self._guard:
            held, self._held = self._held, {}
        for pair, lease in held.items():
            lease.release()
            log.info("pair_claim_released", pair=pair)

    def _drop(self, pair: str, lease: PairLease) -> None:
        with self._guard:
            if self._held.get(pair) is lease:
                del self._held[pair]
        lease.release()


def _job(runner: PairRunner, claims: PairClaims, metrics: DaemonMetrics,
         pruner: Pruner) -> None:
    started = time.monotonic()
    try:
        if not claims.hold(runner.pair):
            metrics.record_held_elsewhere(runner.pair)
            return
        result = runner.run_once(kind="poll")
    except Exception as exc:  # keep the scheduler alive whatever one pass does
        log.exception("pair_crashed", pair=runner.pair)
        result = PassResult(pair=runner.pair, error=scrub(f"internal error: {exc!r}"))
    metrics.record_pass(result, time.monotonic() - started)
    if not result.busy:
        _prune(pruner, runner.pair)


def _prune(pruner: Pruner, pair: str) -> None:
    """After the pair's pass: a failed pruning costs nothing but space, so it is logged
    and tried again later rather than allowed to stop the pair's job."""
    try:
        pruner.after_pass(pair)
    except Exception:  # the scheduler must outlive any database hiccup here
        log.exception("prune_failed", pair=pair, operation="prune")


def _file_relay(engine: Engine) -> FileRelay | None:
    """The file relay when ``[server] relay_url`` is set (``syncer.relay``)."""
    server = engine.config.server
    if server.relay_url is None or isinstance(engine.marker_key, ConfigError):
        return None
    return FileRelay(engine.marker_key, str(server.relay_url),
                     timedelta(minutes=server.relay_link_minutes))


def _webhooks(engine: Engine, pairs: list[PairConfig],
              targeted: TargetedSyncs) -> WebhookEndpoint | None:
    """The webhook endpoint for the trackers of ``pairs`` that name a webhook secret (a
    missing secret is a configuration error, as for the other secrets)."""
    hooks: dict[str, Hook] = {}
    for name in sorted({p.tracker for p in pairs}):
        env = getattr(engine.config.trackers[name], "webhook_secret_env", None)
        if env is not None:
            secret = read_secret(env, f"trackers.{name}", "webhook_secret_env", engine.environ)
            register_secret(secret.get_secret_value())
            kind = engine.config.trackers[name].kind
            hooks[name] = Hook(name, secret.get_secret_value().encode(),
                               verify=VERIFIERS[kind])
    if not hooks:
        return None

    def on_issue(tracker: str, issue_id: str) -> None:
        for pair in pairs:
            if pair.tracker == tracker:
                targeted.add(pair.name, issue_id)

    return WebhookEndpoint(hooks, on_issue)


def _targeted(engine: Engine, pair: str, issues: frozenset[str], stop: threading.Event,
              metrics: DaemonMetrics) -> None:
    """A webhook's targeted pass: a runner of its own (a pair's scheduled runner may be
    mid-pass in another thread), waiting a while for a pass in progress to finish."""
    runner = engine.runner(engine.config.pair(pair))
    if isinstance(runner, ConfigError):
        return
    runner.stop_event = stop
    runner.lock_wait = 30.0
    started = time.monotonic()
    result = runner.run_once(kind="webhook", issues=issues)
    metrics.record_pass(result, time.monotonic() - started)


def _check_start(engine: Engine, pairs: list[PairConfig]) -> dict[str, CallStats]:
    """Refuse to start when no pair can sync; report the broken and unreachable ones. The
    requests the check sent, by service."""
    found = check_at_start(engine, pairs)
    if found.all_broken(pairs):
        lines = [line for p in pairs for line in found.broken[p.name]]
        log.error("daemon_cannot_start", problems=lines)
        listed = "\n".join(dict.fromkeys(lines))
        raise ConfigError(f"{listed}\nthe daemon cannot start: no pair can sync "
                          f"({', '.join(p.name for p in pairs)}); fix the configuration, "
                          "the credentials or the server's settings (`reamaze-sync check` "
                          "shows them all)")
    for name, problems in found.broken.items():
        log.error("pair_broken", pair=name, problems=problems,
                  action="scheduled all the same: its passes fail until this is fixed; "
                         "the other pairs sync")
    for name, outages in found.unreachable.items():
        if name not in found.broken:
            log.warning("start_check_unavailable", pair=name, problems=outages,
                        action="starting all the same: passes retry on schedule")
    return found.calls


def sweep_slice(engine: Engine, pair: PairConfig, pairs: list[PairConfig]) -> SweepSlice | None:
    """The pair's share of the sweep (``syncer.sweep``), or None when it is off. Each
    connection's share is split among the pairs of this daemon that use it."""
    share = engine.config.sync.sweep_share
    if share <= 0:
        return None
    cfg, brand = engine.config, engine.config.brand_of(pair)
    service = cfg.brand_service(brand)
    apis = {service: getattr(engine.helpdesks[brand], "api", None),
            pair.tracker: getattr(engine.trackers.get(pair.tracker), "api", None)}
    sharing = {service: sum(1 for p in pairs if cfg.brand_of(p) == brand),
               pair.tracker: sum(1 for p in pairs if p.tracker == pair.tracker)}
    budget = SweepBudget({k: v for k, v in apis.items() if isinstance(v, ApiClient)}, share,
                         sharing, pair.interval_seconds)
    return SweepSlice(budget, engine.config.sync.sweep_recent_pages)


def pair_schedule(pair: PairConfig, now: datetime) -> tuple[IntervalTrigger, datetime]:
    """The pair's trigger and its first run: within min(10 s, interval / 10) of ``now``."""
    offset = random.uniform(0.0, min(10.0, pair.interval_seconds * 0.1))
    return (IntervalTrigger(seconds=pair.interval_seconds, timezone=UTC),
            now + timedelta(seconds=offset))


def run_daemon(engine: Engine, only: str | None = None,
               stop_event: threading.Event | None = None,
               install_signals: bool = True) -> int:
    stop = stop_event or threading.Event()
    pairs = engine.pairs(only)
    claims = PairClaims(engine.store)
    pruner = Pruner(engine.store,
                    keep_done_intents=timedelta(days=engine.config.state.keep_done_intents_days),
                    keep_runs=engine.config.state.keep_runs)
    connections: dict[str, object] = {**engine.connections()}
    metrics = DaemonMetrics(engine.store, pairs, connections,
                            claims.holds)
    targeted = TargetedSyncs(lambda pair, issues: _targeted(engine, pair, issues, stop, metrics))
    endpoint = _webhooks(engine, pairs, targeted)
    # The listen address is taken first: a port in use is found before any server is asked.
    listener = None
    address = engine.config.server.address()
    if address is not None:
        stale_after = engine.config.server.stale_after_intervals
        relay = _file_relay(engine)
        listener = Listener(*address, health_app(
            metrics.registry, lambda: readiness(engine.store, pairs, stale_after),
            endpoint, relay_app(relay, engine.trackers) if relay is not None else None)).start()
        engine.relay = relay  # links are made only once something serves them
    elif endpoint is not None:
        log.warning("webhooks_without_listener", trackers=sorted(endpoint.hooks),
                    action="webhook secrets are set but [server] listen is not: polling only")
    try:
        for service, calls in _check_start(engine, pairs).items():
            metrics.count_calls(service, calls)
    except ConfigError:
        if listener is not None:
            listener.stop()
        raise
    workers = max(1, min(4, len(pairs)))
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(workers)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        timezone=UTC,
    )
    scheduled = 0
    for pair in pairs:
        runner = engine.runner(pair)
        if isinstance(runner, ConfigError):
            log.error("pair_disabled", pair=pair.name, error=runner.message)
            run_id = engine.store.start_run(pair.name, "poll")
            engine.store.finish_run(run_id, {}, runner.message)
            continue
        runner.stop_event = stop
        runner.lock_wait = 0.0  # waiting would only delay this pair's next regular pass
        runner.after_feeds = sweep_slice(engine, pair, pairs)
        trigger, first = pair_schedule(pair, datetime.now(UTC))
        scheduler.add_job(_job, trigger, args=[runner, claims, metrics, pruner], id=pair.name,
                          name=pair.name, next_run_time=first)
        scheduled += 1
    if scheduled == 0:
        log.error("daemon_nothing_to_run")
        if listener is not None:
            listener.stop()
        return 1

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    if install_signals:
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    scheduler.start()
    targeted.start()
    log.info("daemon_started", pairs=[p.name for p in pairs], workers=workers,
             webhooks=sorted(endpoint.hooks) if endpoint and listener else [])
    try:
        stop.wait()
        scheduler.shutdown(wait=True)
        targeted.stop()
    finally:
        claims.release_all()  # the other instances take the pairs at their next interval
        if listener is not None:
            listener.stop()
    log.info("daemon_stopped")
    return 0
