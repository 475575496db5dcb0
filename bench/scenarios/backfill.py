"""Backfill efficiency and engine throughput, then the idle poll of the links it made.

A history of ``n`` bug-tagged conversations of ``messages`` customer messages each is
seeded (spread over time, as real history is); one real ``backfill`` pass links them all.
Its requests are compared with the least any engine could send:

    list pages (both feeds, once) + the conversations' messages, 30 a page (the tag's
    brand-wide message listing) + 1 issue create
    + 1 note per message + 1 link note per conversation
    + 1 issue read per conversation whose issue got notes
    + 1 search for an existing issue per conversation
    + 1 read of the API user's id (to tell its notes from people's) when notes are written

Re:amaze lists the messages of every conversation with a tag together, so reading them
needs a page per 30 messages, not a request per conversation. The engine reads the first
conversation on its own and once more after its link note, to learn whether
``message_count`` includes internal notes (only then can a count vouch that the listing
gave a conversation all its messages); that is what it sends beyond the minimum there.

The issue read is Redmine's doing: a note PUT answers 204 with no body, so the ids of the
notes just written (which the comment links record) can only be learnt by reading the
issue, and no engine gets them with fewer than one read per issue. The search is what the
no-duplicate guarantee costs on an API without idempotent creates: an engine whose state
may have been lost or restored (or that shares the pair with another host) must look for
the issue it may already have created before creating one, and only an issue by its own
API user (whose id it reads once) counts. The ratio to the writes alone is reported too.

With ``mode="transcript"`` (the pair's ``history``) the seeded messages, all public, go
into each issue's description, so the minimum has no note writes at all.

Everything beyond that is reported by kind. Then the engine keeps polling: the settle
pass (the backfill's own writes come back through both feeds once), one poll right after
the burst, one real change on each side, and finally idle polls in a steady state.
"""

from __future__ import annotations

import cProfile
import math
import pstats
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import (
    PAIR,
    Mark,
    SimCpu,
    StoreCpu,
    VirtualClock,
    bench_engine,
    bench_sandbox,
    engine_request_count,
    http_client_cost_s,
    measure,
    median,
    quiet_production_logging,
    seed_conversations,
    tally,
    total_calls,
)
from syncer.app import Engine, run_all_once
from syncer.errors import ConfigError
from syncer.markup import escape
from syncer.runner import PassResult
from syncer.sandbox import PROJECT, Sandbox

REAMAZE_PAGE = 30
REDMINE_PAGE = 100
LIST_KINDS = ("rz_list_conversations", "rm_list_issues")


def one_pass(engine: Engine, **kw: Any) -> PassResult:
    """One ``run --once`` over every pair; any failure stops the benchmark. The counts of
    all pairs are summed into the returned result."""
    results = run_all_once(engine, **kw)
    bad = [r for r in results if not r.ok or r.failed]
    if not results or bad:
        raise RuntimeError(f"pass failed: {bad or results}")
    merged = PassResult(pair=",".join(r.pair for r in results))
    for r in results:
        merged.counts.update(r.counts)
    return merged


def minimum_calls(n: int, messages: int, mode: str = "per_message") -> dict[str, int]:
    """The least any engine could send; ``mode`` is the pair's ``history`` setting."""
    notes = n * messages if mode == "per_message" else 0
    return {"list_pages": math.ceil(n / REAMAZE_PAGE) + max(1, math.ceil(n / REDMINE_PAGE)),
            "message_lists": math.ceil(n * messages / REAMAZE_PAGE), "issue_creates": n,
            "comment_writes": notes,
            "link_notes": n, "issue_readbacks": n if notes else 0,
            "duplicate_checks": n, "identity": 1 if notes else 0}


def group_calls(calls: Counter[str]) -> dict[str, int]:
    """The measured requests in the categories of ``minimum_calls`` plus the extras."""
    known = {
        "list_pages": calls["rz_list_conversations"] + calls["rm_list_issues"],
        "message_lists": calls["rz_list_messages"] + calls["rz_list_brand_messages"],
        "issue_creates": calls["rm_create_issue"],
        "comment_writes": calls["rm_add_note"],
        "link_notes": calls["rz_create_message"],
        "issue_readbacks": calls["rm_get_issue_journals"],
        "duplicate_checks": calls["rm_find_by_marker"],
        "identity": calls["rm_whoami"],
    }
    counted = {"rz_list_conversations", "rm_list_issues", "rz_list_messages",
               "rz_list_brand_messages",
               "rm_create_issue", "rm_add_note", "rz_create_message", "rm_get_issue_journals",
               "rm_find_by_marker", "rm_whoami"}
    known["other"] = sum(v for k, v in calls.items() if k not in counted)
    return known


def verify_backfill(sb: Sandbox, engine: Engine, slugs: list[str], messages: int,
                    mode: str = "per_message") -> None:
    """Every conversation has exactly one issue carrying every message, nothing else: as
    notes, or (transcript) in its description. Messages start "#i/j" (seed_conversations)."""
    issues = sb.redmine.state.issues
    if len(issues) != len(slugs):
        raise RuntimeError(f"{len(issues)} issues for {len(slugs)} conversations")
    notes: Counter[int] = Counter(j.issue_id for j in sb.redmine.state.journals.values()
                                  if j.notes)
    per_issue = messages if mode == "per_message" else 0
    # A transcript holds each message as written for the tracker's markup.
    [markup] = {conn.capabilities.markup for conn in engine.trackers.values()
                if not isinstance(conn, ConfigError)}
    for i, slug in enumerate(slugs):
        link = engine.store.get_link(PAIR, slug)
        if link is None or link.issue_id is None:
            raise RuntimeError(f"{slug} was not linked")
        if notes[int(link.issue_id)] != per_issue:
            raise RuntimeError(f"issue {link.issue_id} has {notes[int(link.issue_id)]} notes")
        description = issues[int(link.issue_id)].description or ""
        if per_issue == 0 and not all(escape(markup, f"#{i}/{j} ") in description
                                      for j in range(messages)):
            raise RuntimeError(f"issue {link.issue_id} lacks messages in its transcript")


def steady_change(sb: Sandbox, engine: Engine, clock: VirtualClock, slugs: list[str],
                  pair: str = PAIR) -> None:
    """An hour later, a customer writes on one conversation and a developer notes on the
    issue of another: the watermarks move past the backfill burst, as they do in life."""
    clock.advance(3600)
    sb.reamaze.add_customer_message(slugs[0], "Any news? It still crashes on 4.1.2.")
    rm = sb.redmine
    dev = rm.state.user_by_login("dev") or rm.add_user("dev", firstname="Dana")
    rm.add_member(rm.state.project_by_ref(PROJECT), dev)
    link = engine.store.get_link(pair, slugs[-1])
    if link is None or link.issue_id is None:
        raise RuntimeError("steady-state change needs a linked conversation")
    rm.add_note(int(link.issue_id), "Reproduced on staging; fix in review.", user=dev)


def poll_until_quiet(sb: Sandbox, engine: Engine, clock: VirtualClock,
                     limit: int = 4) -> list[dict[str, int]]:
    """Poll until a pass sends nothing but list requests; each pass's calls by kind.

    Each poll comes the pair's interval after the last, as the daemon's do: back to back
    on the virtual clock, an issue changed in the last pass would still be in its second
    on the tracker's clock, and every poll would rightly read it again."""
    passes: list[dict[str, int]] = []
    interval = sb.config.pairs[0].interval_seconds
    for _ in range(limit):
        clock.advance(interval)
        mark = Mark.of(sb)
        one_pass(engine, kind="poll")
        calls = tally(sb, mark)
        passes.append(dict(sorted(calls.items())))
        if all(k in LIST_KINDS for k in calls):
            return passes
    raise RuntimeError(f"still busy after {limit} polls: {passes}")


def measure_idle(sb: Sandbox, engine: Engine, cpu: SimCpu, repeats: int) -> dict[str, Any]:
    """``repeats`` idle polls: calls (identical each time) and median cost.

    One unmeasured poll first: the Redmine feed vouches for a second only once it is over
    on our clock, so the first poll after a quiet hour re-reads the last issues once."""
    one_pass(engine, kind="poll")
    samples = []
    calls_seen: list[dict[str, int]] = []
    for _ in range(repeats):
        mark = Mark.of(sb)
        with measure(cpu) as m:
            result = one_pass(engine, kind="poll")
        if any(result.counts.get(k) for k in ("conversations_seen", "issues_seen")):
            raise RuntimeError(f"an idle poll saw changes: {dict(result.counts)}")
        calls_seen.append(dict(sorted(tally(sb, mark).items())))
        samples.append(m[0])
    if any(c != calls_seen[0] for c in calls_seen):
        raise RuntimeError(f"idle polls differ: {calls_seen}")
    return {
        "calls": total_calls(Counter(calls_seen[0])),
        "calls_by_kind": calls_seen[0],
        "engine_cpu_ms": round(1000 * median([s.engine_cpu_s for s in samples]), 2),
        "sim_cpu_ms": round(1000 * median([s.sim_cpu_s for s in samples]), 2),
        "wall_ms": round(1000 * median([s.wall_s for s in samples]), 2),
        "repeats": repeats,
    }


def run_backfill(n: int, messages: int = 5, *, idle_repeats: int = 5,
                 mode: str = "per_message") -> dict[str, Any]:
    """Backfill ``n`` conversations, then settle and measure the idle poll at ``n`` links.
    ``mode`` is the pair's ``history`` setting (``per_message`` or ``transcript``)."""
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp, \
            quiet_production_logging():
        clock = VirtualClock()
        sb = bench_sandbox(f"sqlite:///{Path(tmp) / 'state.db'}", clock, history=mode)
        cpu = SimCpu()
        sb.wrap = cpu.wrap
        slugs = seed_conversations(sb, clock, n, messages=messages)
        clock.advance(3600)
        engine = bench_engine(sb, clock)
        store_cpu = StoreCpu()
        store_cpu.attach(engine.store)
        try:
            mark, before = Mark.of(sb), engine_request_count(engine)
            with measure(cpu) as m:
                backfill = one_pass(engine, kind="backfill", full=True)
            cost = m[0]
            store_s = store_cpu.seconds
            store_top = store_cpu.top(per=n)
            calls = tally(sb, mark)
            if total_calls(calls) != engine_request_count(engine) - before:
                raise RuntimeError("simulator logs and engine counters disagree")
            verify_backfill(sb, engine, slugs, messages, mode)

            # The daemon's next polls, an interval apart (see ``poll_until_quiet``).
            interval = sb.config.pairs[0].interval_seconds
            clock.advance(interval)
            mark = Mark.of(sb)
            one_pass(engine, kind="poll")
            settle = tally(sb, mark)
            clock.advance(interval)
            mark = Mark.of(sb)
            one_pass(engine, kind="poll")
            after_burst = tally(sb, mark)
            steady_change(sb, engine, clock, slugs)
            change_passes = poll_until_quiet(sb, engine, clock)
            clock.advance(3600)
            idle = measure_idle(sb, engine, cpu, idle_repeats)
        finally:
            engine.close()

    http_s = http_client_cost_s()
    minimum = minimum_calls(n, messages, mode)
    grouped = group_calls(calls)
    total, least = total_calls(calls), sum(minimum.values())
    return {
        "conversations": n,
        "messages_per_conversation": messages,
        "history": mode,
        "counts": dict(sorted(backfill.counts.items())),
        "calls_by_kind": dict(sorted(calls.items())),
        "calls": grouped,
        "minimum": minimum,
        "calls_total": total,
        "minimum_total": least,
        "ratio_to_minimum": round(total / least, 4),
        "ratio_to_writes_only": round(total / (least - minimum["issue_readbacks"]), 4),
        "calls_per_conversation": round(total / n, 3),
        "cost": cost.as_dict(),
        "store_cpu_s": round(store_s, 3),
        "store_share_of_engine_cpu": round(store_s / cost.engine_cpu_s, 3)
        if cost.engine_cpu_s else None,
        "store_methods_per_conversation": store_top,
        "conversations_per_engine_cpu_s": round(n / cost.engine_cpu_s, 2),
        "engine_cpu_ms_per_conversation": round(1000 * cost.engine_cpu_s / n, 3),
        "store_cpu_ms_per_conversation": round(1000 * store_s / n, 3),
        "http_client_ms_per_conversation": round(1000 * http_s * total / n, 3),
        "httpx_us_per_request": round(1e6 * http_s, 1),
        "conversations_per_wall_s": round(n / cost.wall_s, 2),
        "messages_per_engine_cpu_s": round(n * messages / cost.engine_cpu_s, 2),
        "settle_pass_calls": dict(sorted(settle.items())),
        "idle_after_burst_calls": total_calls(after_burst),
        "idle_after_burst_by_kind": dict(sorted(after_burst.items())),
        "change_passes": change_passes,
        "idle": idle,
    }


def run_profile(n: int, messages: int = 5, top: int = 15) -> dict[str, Any]:
    """cProfile of a backfill of ``n`` conversations: where the engine's time goes."""
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp, \
            quiet_production_logging():
        clock = VirtualClock()
        sb = bench_sandbox(f"sqlite:///{Path(tmp) / 'state.db'}", clock)
        seed_conversations(sb, clock, n, messages=messages)
        engine = bench_engine(sb, clock)
        profiler = cProfile.Profile()
        try:
            profiler.enable()
            one_pass(engine, kind="backfill", full=True)
            profiler.disable()
        finally:
            engine.close()
    stats = pstats.Stats(profiler)
    return {"conversations": n, "total_s": round(stats.total_tt, 3),  # type: ignore[attr-defined]
            "by_cumulative": profile_rows(stats, "cumulative", top, ours=True),
            "by_own_time": profile_rows(stats, "tottime", top, ours=False)}


def profile_rows(stats: pstats.Stats, key: str, top: int, *, ours: bool) -> list[dict[str, Any]]:
    """The top entries; ``ours`` keeps only functions of this repository (the cumulative
    view is otherwise all call-chain plumbing)."""
    rows: list[dict[str, Any]] = []
    root = str(Path(__file__).resolve().parents[2])
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    index = 3 if key == "cumulative" else 2
    for (path, line, name), value in sorted(raw.items(), key=lambda kv: kv[1][index],
                                            reverse=True):
        inside = path.startswith(root) and "/.venv/" not in path and "/bench/" not in path
        if ours and not inside:
            continue
        where = path[len(root) + 1:] if inside else _short(path)
        rows.append({"function": f"{where}:{line}({name})", "calls": value[1],
                     "own_s": round(value[2], 3), "cumulative_s": round(value[3], 3)})
        if len(rows) >= top:
            break
    return rows


def _short(path: str) -> str:
    marker = "site-packages/"
    if marker in path:
        return path.split(marker, 1)[1]
    return path.rsplit("/lib/", 1)[-1]
