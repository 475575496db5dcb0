"""Scaling: state store operations per second, and how many pairs one instance can poll.

Store: each operation the engine uses on its hot path, timed one call at a time (each
its own transaction, as the engine calls them) against a store already holding
``existing`` links, on SQLite (a file, WAL, as deployed) and on PostgreSQL when a
throwaway server can be started here (``tests/servers/postgres.py``).

Pairs: ``pairs`` pairs on one engine, every pair with a few linked conversations, then
idle ``run --once`` passes over all of them. The capacity of one instance follows from
two budgets: CPU (an idle pass per pair per interval) and the Re:amaze request budget that
all pairs share. The pairs of a brand share one read of its change listing per poll
(``connectors.shared_reads``); the naive baseline, every pair reading the listing itself
(``feed_share_seconds = 0``), is measured next to it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import (
    SimCpu,
    VirtualClock,
    bench_engine,
    bench_sandbox,
    quiet_production_logging,
    seed_conversations,
)
from bench.scenarios.backfill import measure_idle, one_pass, poll_until_quiet, steady_change
from state import StateStore
from syncer.models import Cursor
from syncer.plan import Side, Snapshot
from syncer.sandbox import sandbox_config

PAIR = "bench"


def _populate(store: StateStore, existing: int) -> None:
    for start in range(0, existing, 500):
        with store.atomic():
            for i in range(start, min(existing, start + 500)):
                store.create_link(PAIR, f"old-{i}", str(1_000_000 + i), Side.HELPDESK)


def _time(op: Callable[[int], object], n: int) -> dict[str, float]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n):
        op(i)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"ops_per_s": round(n / wall, 1), "ms_per_op": round(1000 * wall / n, 3),
            "cpu_ms_per_op": round(1000 * cpu / n, 3)}


def store_ops(url: str, *, existing: int, n: int) -> dict[str, Any]:
    store = StateStore(url)
    try:
        _populate(store, existing)
        snap = Snapshot(helpdesk_updated_at="2026-01-01T00:00:00+00:00")
        cursor = Cursor.model_validate({"watermark": "2026-01-01T00:00:00Z",
                                        "seen": [f"c{i}@x" for i in range(30)]})
        ops: dict[str, Callable[[int], object]] = {
            "create_link": lambda i: store.create_link(PAIR, f"new-{i}", str(i), Side.HELPDESK),
            "get_link": lambda i: store.get_link(PAIR, f"old-{(i * 7919) % existing}"),
            "get_link_by_issue": lambda i: store.get_link_by_issue(
                PAIR, str(1_000_000 + (i * 7919) % existing)),
            "save_snapshot": lambda i: store.save_snapshot(PAIR, f"new-{i}", snap),
            "begin_intent": lambda i: store.begin_intent(
                PAIR, f"rs-k{i}", "add_comment", f"new-{i}", Side.TRACKER, {"ticket_id": "1"}),
            "complete_intent": lambda i: store.complete_intent(PAIR, f"rs-k{i}", str(i)),
            "add_comment_link": lambda i: store.add_comment_link(
                PAIR, f"new-{i}", Side.HELPDESK, f"m{i}", f"j{i}", "public", "f"),
            "is_skipped": lambda i: store.is_skipped(PAIR, Side.HELPDESK, f"new-{i}"),
            "save_cursor": lambda i: store.save_cursor(PAIR, Side.HELPDESK, cursor),
            "get_cursor": lambda i: store.get_cursor(PAIR, Side.HELPDESK),
        }
        return {name: _time(op, n) for name, op in ops.items()}
    finally:
        store.close()


def run_store(*, existing: int, n: int, postgres: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"existing_links": existing, "ops_each": n}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp, \
            quiet_production_logging():
        out["sqlite"] = store_ops(f"sqlite:///{Path(tmp) / 'state.db'}", existing=existing, n=n)
    if not postgres:
        out["postgresql"] = {"skipped": "not requested (quick mode)"}
        return out
    out["postgresql"] = _with_postgres(lambda url: store_ops(url, existing=existing, n=n))
    return out


def _with_postgres(work: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    try:
        from tests.servers.postgres import PostgresServer, find_bindir, missing_reason
    except ImportError as exc:
        return {"skipped": f"cannot import the test server helper: {exc}"}
    reason = missing_reason()
    bindir = find_bindir()
    if reason is not None or bindir is None:
        return {"skipped": reason or "no PostgreSQL binaries"}
    server = PostgresServer(bindir)
    try:
        server.start()
        with quiet_production_logging():
            result = work(server.new_database("bench"))
        result["server"] = "throwaway cluster, fsync=off (as tests/servers/postgres.py runs it)"
        return result
    except RuntimeError as exc:
        return {"skipped": f"server did not start: {exc}"}
    finally:
        server.stop()


def _reamaze_calls(calls_by_kind: dict[str, int]) -> int:
    return sum(n for kind, n in calls_by_kind.items() if kind.startswith("rz"))


def _api_bound(rows: list[dict[str, Any]], key: str, budget: float) -> int | None:
    """Pairs whose idle polls fit the Re:amaze budget, from the measured growth per pair
    (None: the listing cost does not grow with the pairs)."""
    first, last = rows[0], rows[-1]
    if last["pairs"] == first["pairs"]:
        return int(budget // max(1, first[key]))
    slope = (last[key] - first[key]) / (last["pairs"] - first["pairs"])
    if slope <= 0:
        return None
    return int(first["pairs"] + (budget - first[key]) / slope)


def run_pairs_capacity(pair_counts: list[int], *, per_pair: int = 3,
                       interval_s: float = 60.0, reamaze_rpm: float = 60.0) -> dict[str, Any]:
    rows = []
    for count in pair_counts:
        idle, naive = (_idle_pairs(count, per_pair, share) for share in (True, False))
        per_pair_ms = idle["engine_cpu_ms"] / count
        rows.append({"pairs": count, "idle_pass_calls": idle["calls"],
                     "reamaze_idle_calls": _reamaze_calls(idle["calls_by_kind"]),
                     "naive_reamaze_idle_calls": _reamaze_calls(naive["calls_by_kind"]),
                     "idle_pass_engine_cpu_ms": idle["engine_cpu_ms"],
                     "engine_cpu_ms_per_pair": round(per_pair_ms, 2)})
    worst = max(r["engine_cpu_ms_per_pair"] for r in rows)
    budget = reamaze_rpm * interval_s / 60
    return {
        "rows": rows,
        "interval_s": interval_s,
        "cpu_bound_pairs_per_core": int(interval_s * 1000 / worst),
        "reamaze_rpm": reamaze_rpm,
        "api_bound_pairs": _api_bound(rows, "reamaze_idle_calls", budget),
        "naive_api_bound_pairs": _api_bound(rows, "naive_reamaze_idle_calls", budget),
        "note": "CPU bound: idle passes only, one core fully used; API bound: idle Re:amaze "
                "requests per poll against the shared per-token budget, before any real "
                "work (None: one listing read per poll whatever the number of pairs); "
                "naive: every pair reads the listing itself",
    }


def _idle_pairs(count: int, per_pair: int, share: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-pairs-") as tmp, \
            quiet_production_logging():
        clock = VirtualClock()
        config = sandbox_config(f"sqlite:///{Path(tmp) / 'state.db'}")
        if not share:
            config["reamaze"]["feed_share_seconds"] = 0
        base = config["pairs"][0]
        config["pairs"] = [dict(base, name=f"pair{i}", match={"tags": [f"team{i}"]})
                           for i in range(count)]
        sb = bench_sandbox(config["state"]["url"], clock, config=config)
        cpu = SimCpu()
        sb.wrap = cpu.wrap
        first: list[str] = []
        for i in range(count):
            first += seed_conversations(sb, clock, per_pair, messages=2,
                                        tag=f"team{i}")[:1]
        engine = bench_engine(sb, clock)
        try:
            one_pass(engine, kind="backfill", full=True)
            poll_until_quiet(sb, engine, clock)
            # As in the backfill scenario: a later change moves the watermarks past the
            # backfill's burst, which idle polls would otherwise re-read (see README).
            steady_change(sb, engine, clock, first[:1], pair="pair0")
            poll_until_quiet(sb, engine, clock)
            clock.advance(3600)
            idle: dict[str, Any] = measure_idle(sb, engine, cpu, repeats=3)
        finally:
            engine.close()
    return idle
