"""The long-running daemon: one APScheduler job per pair, graceful shutdown.

Jobs run with ``max_instances=1`` and ``coalesce=True`` (a slow pass never overlaps
itself, missed runs collapse into one). Each pair starts at a small random offset so pairs
don't poll in lock step, then polls exactly every ``interval_seconds``: a jitter on every
run adds up (APScheduler counts each run from the previous jittered one), so polls drifted
to interval + jitter/2 apart and the latency benchmark's p95 went past interval + 1 s.
SIGTERM/SIGINT set a stop event: the pass in progress stops after the object it is
working on, saves what it finished, and the process exits. A pair that another process
is working (a `backfill`, another daemon) is not waited for: its pass is skipped with a
``pair_busy`` line and tried again at the next interval.

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
from datetime import UTC, datetime, timedelta
from types import FrameType

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from syncer.app import Engine
from syncer.config import PairConfig
from syncer.errors import ConfigError
from syncer.runner import PairRunner
from syncer.startcheck import check_at_start

log = structlog.get_logger("reamaze_sync.daemon")


def _job(runner: PairRunner) -> None:
    try:
        runner.run_once(kind="poll")
    except Exception:  # keep the scheduler alive whatever one pass does
        log.exception("pair_crashed", pair=runner.pair)


def _check_start(engine: Engine, pairs: list[PairConfig]) -> None:
    """Refuse to start when no pair can sync; report the broken and unreachable ones."""
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
    _check_start(engine, pairs)
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
        trigger, first = pair_schedule(pair, datetime.now(UTC))
        scheduler.add_job(_job, trigger, args=[runner], id=pair.name, name=pair.name,
                          next_run_time=first)
        scheduled += 1
    if scheduled == 0:
        log.error("daemon_nothing_to_run")
        return 1

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    if install_signals:
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    scheduler.start()
    log.info("daemon_started", pairs=[p.name for p in pairs], workers=workers)
    stop.wait()
    scheduler.shutdown(wait=True)
    log.info("daemon_stopped")
    return 0
