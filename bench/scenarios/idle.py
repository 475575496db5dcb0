"""Idle poll cost at a number of links too large to build by a real backfill here.

The simulators are seeded directly (conversations with their messages, and for each an
issue carrying the engine's marker, as a backfill leaves it), and the links with their
snapshots are written through the ``StateStore`` API, the snapshot's change times read
through the real connectors. Then the real engine polls: a first pass without cursors
(it walks both feeds once and finds every link unchanged), a quiet hour, and the
measured idle polls. Comment links and link notes are not seeded: an idle poll never
looks at them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.harness import (
    PAIR,
    Mark,
    SimCpu,
    VirtualClock,
    bench_engine,
    bench_sandbox,
    measure,
    quiet_production_logging,
    seed_conversations,
    tally,
    total_calls,
)
from bench.scenarios.backfill import measure_idle, one_pass
from connectors.base import Connector
from connectors.redmine.mapping import embed_marker
from state import StateStore
from syncer.markers import Markers
from syncer.models import Ticket
from syncer.plan import Side, Snapshot
from syncer.sandbox import MARKER_KEY, PROJECT, TRACKER, Sandbox

BATCH = 500


def _tickets(connector: Connector) -> dict[str, Ticket]:
    return {t.id: t for page in connector.iter_changes(None) for t in page.tickets}


def seed_links(sb: Sandbox, store: StateStore, helpdesk: Connector, tracker: Connector,
               slugs: list[str]) -> None:
    """One issue per conversation and the link + snapshot a backfill would have saved."""
    project = sb.redmine.state.project_by_ref(PROJECT)
    issue_of: dict[str, str] = {}
    for slug in slugs:
        sim_conv = sb.reamaze.conversations[slug]
        sim_issue = sb.redmine.add_issue(
            project, f"[Re:amaze] {sim_conv.subject}",
            description=embed_marker(sim_conv.messages[0].body,
                                     Markers(MARKER_KEY.encode(), PAIR).issue(slug)),
            at=sim_conv.created_at)
        issue_of[slug] = str(sim_issue.id)
    convs, issues = _tickets(helpdesk), _tickets(tracker)
    for start in range(0, len(slugs), BATCH):
        with store.atomic():
            for slug in slugs[start:start + BATCH]:
                conv, issue = convs[slug], issues[issue_of[slug]]
                store.create_link(PAIR, slug, issue.id, Side.HELPDESK)
                store.save_snapshot(PAIR, slug, Snapshot(
                    helpdesk_state=conv.status.state, tracker_state=issue.status.state,
                    helpdesk_tags=tuple(sorted(conv.tags)),
                    helpdesk_updated_at=conv.updated_at.isoformat(),
                    tracker_updated_at=issue.updated_at.isoformat()))


def run_idle_seeded(n: int, messages: int = 5, *, idle_repeats: int = 5) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp, quiet_production_logging():
        clock = VirtualClock()
        sb = bench_sandbox(f"sqlite:///{Path(tmp) / 'state.db'}", clock)
        cpu = SimCpu()
        sb.wrap = cpu.wrap
        slugs = seed_conversations(sb, clock, n, messages=messages)
        engine = bench_engine(sb, clock)
        try:
            helpdesk, tracker = engine.helpdesk, engine.trackers[TRACKER]
            if not isinstance(helpdesk, Connector) or not isinstance(tracker, Connector):
                raise RuntimeError("sandbox engine is misconfigured")
            seed_links(sb, engine.store, helpdesk, tracker, slugs)
            clock.advance(3600)
            mark = Mark.of(sb)
            with measure(cpu) as m:
                first = one_pass(engine, kind="poll")
            first_calls = tally(sb, mark)
            if first.counts.get("conversations_seen") != n:
                raise RuntimeError(f"first poll saw {dict(first.counts)}")
            if set(first_calls) - {"rz_list_conversations", "rm_list_issues"}:
                raise RuntimeError(f"first poll did per-link work: {dict(first_calls)}")
            clock.advance(3600)
            idle = measure_idle(sb, engine, cpu, idle_repeats)
        finally:
            engine.close()
    return {"links": n, "built_by": "seeded (simulators + StateStore API)",
            "first_poll_without_cursor": {"calls": total_calls(first_calls),
                                          "calls_by_kind": dict(sorted(first_calls.items())),
                                          **m[0].as_dict()},
            "idle": idle}
