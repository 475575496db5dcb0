"""State database size per 1,000 conversations, before and after the daemon's pruning.

A backfill of ``n`` conversations (five messages each) into a SQLite file, then ``polls``
idle polls a minute apart (one run row each), as a daemon would leave it. Then the clock
moves on past ``[state] keep_done_intents_days`` and the daemon's pruner
(``syncer.prune``) runs after "passes" until it has nothing left to do. Sizes are the
pages in use (SQLite reuses freed pages but keeps the file's size), and the file after
``VACUUM``; rows are counted per table.
"""

from __future__ import annotations

import sqlite3
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    PAIR,
    VirtualClock,
    bench_engine,
    bench_sandbox,
    quiet_production_logging,
    seed_conversations,
)
from bench.scenarios.backfill import one_pass
from state import StateStore
from syncer.config import StateConfig
from syncer.prune import Pruner

TABLES = ("links", "comment_links", "snapshots", "cursors", "intents", "runs", "failures")


def _measure(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db)  # (as a context manager it would not close)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size, pages, free = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                                  for p in ("page_size", "page_count", "freelist_count"))
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        conn.close()
    return {"bytes_in_use": (pages - free) * page_size, "file_bytes": db.stat().st_size,
            "rows": rows}


def _vacuumed(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # VACUUM went through the WAL
    finally:
        conn.close()
    return db.stat().st_size


def run_state_size(n: int, *, polls: int = 300, messages: int = 5) -> dict[str, Any]:
    settings = StateConfig()
    with tempfile.TemporaryDirectory(prefix="bench-statesize-") as tmp, \
            quiet_production_logging():
        clock = VirtualClock()
        db = Path(tmp) / "state.db"
        sb = bench_sandbox(f"sqlite:///{db}", clock)
        seed_conversations(sb, clock, n, messages=messages)
        clock.advance(3600)
        store = StateStore(f"sqlite:///{db}", clock=clock.now)
        engine = bench_engine(sb, clock, store=store)
        try:
            one_pass(engine, kind="backfill", full=True)
            for _ in range(polls):
                clock.advance(60)
                one_pass(engine, kind="poll")
            before = _measure(db)
            clock.advance(timedelta(days=settings.keep_done_intents_days + 1).total_seconds())
            pruner = Pruner(store,
                            keep_done_intents=timedelta(days=settings.keep_done_intents_days),
                            keep_runs=settings.keep_runs, monotonic=clock.monotonic)
            rounds = 0
            while True:
                pruned = pruner.after_pass(PAIR)
                rounds += 1
                if pruned is None or not pruned.full(pruner.batch):
                    break
            after = _measure(db)
        finally:
            engine.close()
        vacuumed = _vacuumed(db)

    def per_1000(value: int) -> int:
        return round(value * 1000 / n)

    return {
        "conversations": n, "messages": messages, "polls": polls,
        "keep_done_intents_days": settings.keep_done_intents_days,
        "keep_runs": settings.keep_runs, "prune_rounds": rounds,
        "before": before, "after": after, "vacuumed_file_bytes": vacuumed,
        "bytes_per_1000_before": per_1000(before["bytes_in_use"]),
        "bytes_per_1000_after": per_1000(after["bytes_in_use"]),
        "bytes_per_1000_after_vacuum": per_1000(vacuumed),
    }
