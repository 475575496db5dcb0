"""Peak memory of the engine during a large backfill.

The engine runs alone in a child process (``spawn``: a fresh interpreter, nothing
inherited); the simulators stay in this process and answer through a pipe
(``bench.remote``). The child reports its resident set size as the backfill goes (read
from ``/proc/self/status`` every ``sample_every`` conversations) and its peak (``VmHWM``,
the high-water mark of its own address space). Sizes the machine cannot run in minutes
are extrapolated from the slope of the measured curve, and labelled as such.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import tempfile
import tracemalloc
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.harness import VirtualClock, bench_sandbox, seed_conversations
from bench.remote import PipeTransport, send_result, serve
from syncer.app import build_engine
from syncer.config import parse_config
from syncer.errors import ConfigError
from syncer.runner import run_pairs
from syncer.sandbox import TRACKER, sandbox_config


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kb() -> int:
    """Current resident set size (VmRSS) in KiB."""
    return _status_kb("VmRSS")


def peak_kb() -> int:
    """Peak resident set size of this process's own memory (VmHWM) in KiB.

    Not ``getrusage``: Linux keeps ``ru_maxrss`` across ``execve``, so a spawned child
    reports the RSS its parent had when it forked (here the simulators holding the whole
    seeded history: 152 MB at 20,000 conversations, against 82 MB the engine ever used).
    """
    return _status_kb("VmHWM")


def _engine_child(conn: Connection, state_url: str, environ: dict[str, str],
                  sample_every: int) -> None:
    from syncer.logs import configure_logging

    # Production logging into a sink that lives as long as the process.
    configure_logging(level="info", fmt="json", stream=open(os.devnull, "w"))  # noqa: SIM115
    at_import = rss_kb()
    config = parse_config(sandbox_config(state_url))
    engine = build_engine(config, environ=environ, transports={
        "reamaze": PipeTransport(conn, "reamaze"), TRACKER: PipeTransport(conn, TRACKER)})
    runner = engine.runner(config.pairs[0])
    if isinstance(runner, ConfigError):
        send_result(conn, {"error": runner.message})
        return
    # From half-way on the Python heap is traced too (1 frame; a collection before each
    # reading): RSS also holds caches that fill up and then stop (SQLite's page cache,
    # allocator arenas), and in a short run their filling looks like growth. The traced
    # heap shows what keeps growing. Only the second half pays tracemalloc's overhead.
    total = int(os.environ.get("BENCH_MEMORY_N", "0"))
    samples: list[tuple[int, int, int | None]] = [(0, rss_kb(), None)]
    seen = 0

    def sample() -> None:
        heap = None
        if tracemalloc.is_tracing():
            gc.collect()
            heap = tracemalloc.get_traced_memory()[0] // 1024
        samples.append((seen, rss_kb(), heap))

    def progress(k: int) -> None:
        nonlocal seen
        seen += k
        if seen % sample_every == 0:
            if seen >= total // 2 and not tracemalloc.is_tracing():
                tracemalloc.start(1)
            sample()

    runner.progress = progress
    result = run_pairs([runner], kind="backfill", full=True)[0]
    walk = list(samples)  # the helpdesk walk, where per-conversation state could pile up
    sample()
    send_result(conn, {"ok": result.ok and not result.failed, "error": result.error,
                       "counts": dict(result.counts), "rss_at_import_kb": at_import,
                       "samples": samples, "walk_samples": len(walk), "peak_kb": peak_kb()})
    engine.close()


def run_memory(n: int, messages: int = 5, *, sample_every: int | None = None,
               extrapolate_to: int = 100_000) -> dict[str, Any]:
    every = sample_every or max(10, n // 20)
    clock = VirtualClock()
    sb = bench_sandbox("sqlite://", clock)  # the child has its own state database
    seed_conversations(sb, clock, n, messages=messages)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        ours, theirs = ctx.Pipe()
        os.environ["BENCH_MEMORY_N"] = str(n)  # the spawned child reads it
        child = ctx.Process(target=_engine_child, name="bench-engine",
                            args=(theirs, f"sqlite:///{Path(tmp) / 'state.db'}",
                                  sb.environ, every))
        child.start()
        theirs.close()
        report = serve(ours, {"reamaze": sb.reamaze.handle, TRACKER: sb.redmine.handle})
        child.join(timeout=60)
    if not isinstance(report, dict) or not report.get("ok"):
        raise RuntimeError(f"memory run failed: {report}")
    if len(sb.redmine.state.issues) != n:
        raise RuntimeError(f"{len(sb.redmine.state.issues)} issues for {n} conversations")
    samples: list[tuple[int, int, int | None]] = [
        (int(c), int(r), None if h is None else int(h)) for c, r, h in report["samples"]]
    walk = samples[:int(report["walk_samples"])]
    # RSS over the last third: by then the caches have filled, and tracemalloc's own
    # bookkeeping (it starts at half-way and costs about 1 MB) has settled.
    rss_slope = _slope([(c, r) for c, r, _ in walk if c >= 2 * n // 3])  # KiB/conversation
    # The first traced reading is taken as tracing starts (zero, before the first-use
    # caches of the traced code fill); the slope starts at the second.
    heap_slope = _slope([(c, h) for c, _, h in walk if h is not None][1:])
    heaps = [h for _, _, h in walk if h is not None][1:]
    peak_mb = report["peak_kb"] / 1024
    start_mb = samples[0][1] / 1024
    return {
        "conversations": n,
        "messages_per_conversation": messages,
        "rss_after_imports_mb": round(report["rss_at_import_kb"] / 1024, 1),
        "rss_engine_ready_mb": round(start_mb, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "growth_mb": round(peak_mb - start_mb, 1),
        "python_heap_growth_second_half_mb": round((heaps[-1] - heaps[0]) / 1024, 3)
        if heaps else None,
        "rss_slope_kb_per_conversation": round(rss_slope, 3),
        "heap_slope_kb_per_conversation": round(heap_slope, 3),
        "extrapolated": {
            "conversations": extrapolate_to,
            "peak_rss_mb": round(peak_mb + max(heap_slope, rss_slope, 0.0)
                                 * (extrapolate_to - n) / 1024, 1),
            "note": "NOT a measurement: measured peak RSS plus the larger of two growth "
                    "rates per conversation (the Python heap traced with tracemalloc over "
                    "the second half of the walk, RSS over its last third; least squares) "
                    "times the conversations still to go"},
        "samples": [{"conversations": c, "rss_mb": round(r / 1024, 1),
                     "traced_heap_mb": None if h is None else round(h / 1024, 3)}
                    for c, r, h in samples],
    }


def _slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope (RSS KiB per conversation)."""
    if len(points) < 2:
        return 0.0
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def main() -> None:
    """``python -m bench.scenarios.memory N OUT.json``: the runner starts this in its own
    process so it can overlap with the CPU-timed scenarios without disturbing them."""
    import json
    import sys

    n, out = int(sys.argv[1]), Path(sys.argv[2])
    out.write_text(json.dumps(run_memory(n)))


if __name__ == "__main__":
    main()
