"""The anti-entropy sweep at the default budgets: requests per link verified, and how long
one round over every link takes.

Links are made by a real backfill (on unlimited budgets, so it is quick) and a settling
poll, so every link is in sync and the sweep only verifies. Then a new engine on the same
state gets the default budgets (Re:amaze 60, Redmine 300 requests a minute) and the
daemon's sweep wired as ``run_daemon`` wires it (``sweep_slice``, default ``[sync]``
settings). Then the
daemon's schedule is played on the virtual clock: a poll every ``interval_seconds`` (60),
each followed by its sweep slice, until the sweep's first round is over. Rate-limiter
waits pass instantly but move the clock, so the round's length is what a wall clock would
show. ``python -m bench.scenarios.sweep N`` runs it alone.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import (
    PAIR,
    Mark,
    VirtualClock,
    bench_engine,
    bench_sandbox,
    quiet_production_logging,
    seed_conversations,
    tally,
    total_calls,
)
from bench.scenarios.backfill import one_pass
from syncer.config import parse_config
from syncer.daemon import sweep_slice
from syncer.runner import PairRunner
from syncer.sandbox import TRACKER, sandbox_config

INTERVAL = 60.0
DEFAULT_BUDGETS = {"reamaze": 60, TRACKER: 300}


def _config(state_url: str) -> dict[str, Any]:
    cfg = sandbox_config(state_url, interval_seconds=int(INTERVAL))
    cfg["reamaze"]["http"] = {"requests_per_minute": DEFAULT_BUDGETS["reamaze"]}
    cfg["trackers"][TRACKER]["http"] = {"requests_per_minute": DEFAULT_BUDGETS[TRACKER]}
    return cfg


def run_sweep(n: int, messages: int = 1, *, max_passes: int = 100_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp, quiet_production_logging():
        clock = VirtualClock()
        url = f"sqlite:///{Path(tmp) / 'state.db'}"
        sb = bench_sandbox(url, clock, interval_seconds=int(INTERVAL))
        seed_conversations(sb, clock, n, messages=messages)
        engine = bench_engine(sb, clock)
        try:
            one_pass(engine, kind="backfill", full=True)
            clock.advance(INTERVAL)
            one_pass(engine)  # settles: the feeds show the backfill's own writes
            # The backfill's writes all fall within seconds, inside the feeds' overlap
            # windows, which every poll would re-read; an hour later someone changes
            # something on each side, and the cursors move past the burst.
            clock.advance(3600)
            sb.reamaze.add_conversation("Invoice", "Where is my invoice?",
                                        "someone@example.com", tags=["billing"])
            sb.redmine.touch(1)
            for _ in range(2):
                clock.advance(INTERVAL)
                one_pass(engine)
        finally:
            engine.close()
        sb.config = parse_config(_config(url))
        engine = bench_engine(sb, clock)
        try:
            pair = engine.config.pairs[0]
            runner = engine.runner(pair)
            if not isinstance(runner, PairRunner):
                raise RuntimeError(f"no runner: {runner}")
            sweep = sweep_slice(engine, pair, [pair])
            if sweep is None:
                raise RuntimeError("the sweep is off by default")
            sweep.budget.clock = clock.monotonic
            clock.advance(INTERVAL)
            mark, start, passes, verified, repaired = Mark.of(sb), clock.monotonic(), 0, 0, 0
            sweep.budget._last = start - INTERVAL  # as the daemon's first slice
            runner.after_feeds = sweep
            while passes < max_passes:
                began = clock.monotonic()
                result = runner.run_once(kind="poll")
                if not result.ok or result.failed:
                    raise RuntimeError(f"pass failed: {result.error or result.failed}")
                passes += 1
                verified += result.counts.get("links_verified", 0)
                repaired += result.counts.get("drift_repaired", 0)
                position = engine.store.get_sweep(PAIR)
                if position is not None and position.rounds >= 1:
                    break
                clock.advance(max(0.0, INTERVAL - (clock.monotonic() - began)))
            took = clock.monotonic() - start
            calls = tally(sb, mark)
            spent = dict(sweep.budget.spent)
        finally:
            engine.close()
    rz_per_link = spent["reamaze"] / max(1, verified)
    rm_per_link = spent[TRACKER] / max(1, verified)
    return {
        "links": n, "passes": passes, "links_verified": verified,
        "budgets_per_minute": DEFAULT_BUDGETS, "sweep_share": engine.config.sync.sweep_share,
        "interval_seconds": INTERVAL,
        "sweep_requests": spent, "requests_per_link": {"reamaze": round(rz_per_link, 3),
                                                     TRACKER: round(rm_per_link, 3)},
        "all_calls_during_round": total_calls(calls),
        "calls_by_kind": dict(sorted(calls.items())),
        "round_hours": round(took / 3600, 2),
        "drift_repaired": repaired,
        # Over the round plus the interval of credit the first slice starts with.
        "reamaze_share_used": round(spent["reamaze"] / ((took + INTERVAL) / 60)
                                    / DEFAULT_BUDGETS["reamaze"], 3),
    }


if __name__ == "__main__":  # pragma: no cover
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    print(json.dumps(run_sweep(size), indent=2))
