"""Latency in poll mode: a change on one side until its copy exists on the other.

The daemon is simulated on the virtual clock with its own schedule: the trigger and
first run ``syncer.daemon.pair_schedule`` gives, fired as APScheduler fires it (each run
counted from the previous scheduled one; a run still going at the next fire time makes
that fire be skipped, ``max_instances=1``).
Changes arrive at random times, half customer messages in Re:amaze, half developer
notes in Redmine, on random linked conversations. A change counts as mirrored at the end
of the pass that copied it (a slight over-estimate: the write happened during the pass).
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    PAIR,
    Mark,
    VirtualClock,
    bench_engine,
    bench_sandbox,
    median,
    percentile,
    quiet_production_logging,
    seed_conversations,
    tally,
    total_calls,
)
from bench.scenarios.backfill import one_pass, poll_until_quiet
from syncer.daemon import pair_schedule
from syncer.sandbox import PROJECT, Sandbox, sandbox_config


@dataclass
class Change:
    at: float  # seconds after the start of the measured period
    token: str
    slug: str
    issue_id: int
    side: str  # where the change is made: "reamaze" or "redmine"
    made_at: float = 0.0
    mirrored_at: float | None = None


def _mirrored(sb: Sandbox, change: Change) -> bool:
    if change.side == "reamaze":
        return any(j.issue_id == change.issue_id and j.notes and change.token in j.notes
                   for j in sb.redmine.state.journals.values())
    return any(change.token in m.body for m in sb.reamaze.conversations[change.slug].messages)


def run_latency(links: int, changes: int, *, interval: float = 60.0,
                span_intervals: int = 20, seed: int = 7,
                reamaze_rpm: float | None = None) -> dict[str, Any]:
    """``reamaze_rpm``: the engine's Re:amaze budget (default: unlimited, so only the
    polling shows in the latency)."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp, \
            quiet_production_logging():
        clock = VirtualClock()
        config = sandbox_config(f"sqlite:///{Path(tmp) / 'state.db'}",
                                interval_seconds=interval)
        if reamaze_rpm is not None:
            config["reamaze"]["http"] = {"requests_per_minute": reamaze_rpm}
        sb = bench_sandbox(config["state"]["url"], clock, config=config)
        slugs = seed_conversations(sb, clock, links, messages=2)
        engine = bench_engine(sb, clock)
        try:
            one_pass(engine, kind="backfill", full=True)
            poll_until_quiet(sb, engine, clock)
            rm = sb.redmine
            dev = rm.add_user("dev", firstname="Dana")
            rm.add_member(rm.state.project_by_ref(PROJECT), dev)
            issue_of = {}
            for slug in slugs:
                link = engine.store.get_link(PAIR, slug)
                if link is None or link.issue_id is None:
                    raise RuntimeError(f"{slug} not linked")
                issue_of[slug] = int(link.issue_id)
            clock.advance(3600)
            one_pass(engine, kind="poll")  # the quiet hour lets the Redmine feed settle

            span = span_intervals * interval
            plan = sorted((rng.uniform(0, span), k) for k in range(changes))
            todo = []
            for at, k in plan:
                slug = rng.choice(slugs)
                todo.append(Change(at=at, token=f"LAT-{k:05d}", slug=slug,
                                   issue_id=issue_of[slug],
                                   side="reamaze" if k % 2 == 0 else "redmine"))
            every = list(todo)
            t0 = clock.monotonic()
            mark = Mark.of(sb)
            trigger, first = pair_schedule(sb.config.pairs[0], clock.now())
            next_poll = t0 + (first - clock.now()).total_seconds()

            def fire_after(previous: float) -> float:
                when = trigger.get_next_fire_time(clock.epoch + timedelta(seconds=previous),
                                                  clock.now())
                return float((when - clock.epoch).total_seconds())

            pending: list[Change] = []
            gaps: list[float] = []
            durations: list[float] = []
            last_start: float | None = None
            polls = 0
            while todo or pending:
                if todo and t0 + todo[0].at < next_poll:
                    change = todo.pop(0)
                    clock.advance(max(0.0, t0 + change.at - clock.monotonic()))
                    change.made_at = clock.monotonic()
                    if change.side == "reamaze":
                        sb.reamaze.add_customer_message(
                            change.slug, f"{change.token}: still broken after the update")
                    else:
                        rm.add_note(change.issue_id, f"{change.token}: root cause found",
                                    user=dev)
                    pending.append(change)
                    continue
                clock.advance(max(0.0, next_poll - clock.monotonic()))
                start = clock.monotonic()
                if last_start is not None:
                    gaps.append(start - last_start)
                last_start = start
                one_pass(engine, kind="poll")
                polls += 1
                end = clock.monotonic()
                durations.append(end - start)
                for change in list(pending):
                    if _mirrored(sb, change):
                        change.mirrored_at = end
                        pending.remove(change)
                # APScheduler: from the previous scheduled time; a run still going at the
                # next fire time is skipped (max_instances=1), so skip to the one after it.
                next_poll = fire_after(next_poll)
                while next_poll < end:
                    next_poll = fire_after(next_poll)
                if polls > 10 * span_intervals + 50:
                    raise RuntimeError(f"{len(pending)} changes never mirrored")
            calls = tally(sb, mark)
        finally:
            engine.close()
    lat = [c.mirrored_at - c.made_at for c in every if c.mirrored_at is not None]
    by_side = {side: [c.mirrored_at - c.made_at for c in every
                      if c.side == side and c.mirrored_at is not None]
               for side in ("reamaze", "redmine")}
    idle_calls = 2 * polls  # an idle poll is one list request per side
    return {
        "links": links,
        "changes": changes,
        "interval_s": interval,
        "polls": polls,
        "latency_s": _summary(lat),
        "reamaze_to_redmine_s": _summary(by_side["reamaze"]),
        "redmine_to_reamaze_s": _summary(by_side["redmine"]),
        "poll_gap_s": {"mean": round(sum(gaps) / len(gaps), 2), "max": round(max(gaps), 2)},
        "pass_duration_s": {"median": round(median(durations), 3),
                            "max": round(max(durations), 3)},
        "target_p95_s": interval + 1,
        "calls": total_calls(calls),
        "calls_per_change_beyond_idle": round((total_calls(calls) - idle_calls) / changes, 2),
        # Re:amaze is the budget that bounds a deployment: its requests per change, beyond
        # the one listing read per poll an idle pair makes anyway.
        "reamaze_calls_per_change": round(
            (sum(n for k, n in calls.items() if k.startswith("rz")) - polls) / changes, 2),
        "calls_by_kind": dict(sorted(calls.items())),
    }


def run_break_point(links: int, rates_per_minute: list[float], *, interval: float = 60.0,
                    span_intervals: int = 10) -> dict[str, Any]:
    """Raise the change rate at the default Re:amaze budget (60 requests a minute, burst 1)
    and report two rates: where p95 latency first leaves ``interval + 1`` s (the passes'
    own paced requests add to the wait for the poll), and where passes no longer fit in the
    interval (a pass overruns the next poll, and latency grows without bound)."""
    rows: list[dict[str, Any]] = []
    for rate in rates_per_minute:
        changes = max(2, int(rate * span_intervals * interval / 60))
        res = run_latency(links, changes, interval=interval, span_intervals=span_intervals,
                          reamaze_rpm=60.0)
        rows.append({"changes_per_minute": rate, "p95_s": res["latency_s"]["p95"],
                     "max_s": res["latency_s"]["max"],
                     "reamaze_calls_per_change": res["reamaze_calls_per_change"],
                     "pass_duration_max_s": res["pass_duration_s"]["max"],
                     "poll_gap_max_s": res["poll_gap_s"]["max"]})
        if res["poll_gap_s"]["max"] > interval:
            break  # unbounded from here on: higher rates only take longer to show it

    def first(broken: Callable[[dict[str, Any]], bool]) -> float | None:
        return next((r["changes_per_minute"] for r in rows if broken(r)), None)

    return {"links": links, "interval_s": interval, "rows": rows,
            "p95_over_interval_plus_1s_at_per_minute": first(
                lambda r: r["p95_s"] > interval + 1),
            "unbounded_at_per_minute": first(lambda r: r["poll_gap_max_s"] > interval),
            "reamaze_budget_per_minute": 60.0}


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 2), "p95": round(percentile(values, 95), 2),
            "max": round(max(values), 2), "n": len(values)}
