"""Backfill of a brand where only a share of the conversations are bugs: Re:amaze requests
per backfilled conversation, the settle pass (the first poll after it) included.

The naive baseline reads the brand the way a tool without listing filters must: every
page of the change listing, then each bug conversation's messages. It is measured by the
same engine with a rule the listing cannot filter (a status rule matching nothing here),
so the difference is exactly what the ``tag`` filter saves. The floor the APIs force for
a bug conversation of ``messages`` messages: its share of the brand-wide message listing
filtered by the tag (``GET /messages?tag=``, 30 a page), the filtered conversation
listing's share of a page, and the internal link note, one write no API batches. A pair
with ``link_note = false`` writes none; that variant is measured too, on the same brand and
on one where each bug conversation holds an agent's internal note (the messages can be
taken from the brand-wide listing only once the engine saw that ``message_count`` counts
internal notes, and without a note of its own or of an agent's it never sees it).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import (
    Mark,
    VirtualClock,
    bench_engine,
    bench_sandbox,
    quiet_production_logging,
    seed_conversations,
    tally,
)
from bench.scenarios.backfill import one_pass

PAGE = 30  # Re:amaze's page size, for conversations and messages alike


def _reamaze(calls: dict[str, int]) -> int:
    return sum(n for kind, n in calls.items() if kind.startswith("rz"))


def _run(total: int, every: int, messages: int, match: dict[str, Any],
         link_note: bool = True, internal_note_at: int | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sparse-") as tmp, \
            quiet_production_logging():
        clock = VirtualClock()
        sb = bench_sandbox(f"sqlite:///{Path(tmp) / 'state.db'}", clock, match=match,
                           link_note=link_note)
        bugs = 0
        for start in range(0, total, every):
            seed_conversations(sb, clock, 1, messages=messages, tag="bug",
                               internal_note_at=internal_note_at)
            seed_conversations(sb, clock, min(every, total - start) - 1, messages=messages,
                               tag="question")
            bugs += 1
        clock.advance(3600)
        engine = bench_engine(sb, clock)
        try:
            mark = Mark.of(sb)
            result = one_pass(engine, kind="backfill", full=True)
            backfill = dict(tally(sb, mark))
            clock.advance(sb.config.pairs[0].interval_seconds)  # the daemon's next poll
            mark = Mark.of(sb)
            one_pass(engine, kind="poll")
            settle = dict(tally(sb, mark))
        finally:
            engine.close()
    if result.counts.get("issues_created") != bugs:
        raise RuntimeError(f"expected {bugs} issues, got {dict(result.counts)}")
    return {"bugs": bugs, "backfill": backfill, "settle": settle,
            "reamaze_backfill": _reamaze(backfill), "reamaze_settle": _reamaze(settle),
            "reamaze_per_bug": round((_reamaze(backfill) + _reamaze(settle)) / bugs, 3)}


def run_sparse_backfill(total: int = 1000, every: int = 10, messages: int = 5
                        ) -> dict[str, Any]:
    engine = _run(total, every, messages, {"tags": ["bug"]})
    no_notes = _run(total, every, messages, {"tags": ["bug"]}, link_note=False)
    # Without link notes the engine can learn how Re:amaze counts only from a conversation
    # holding an internal note: here every bug conversation's third message is an agent's.
    no_notes_internal = _run(total, every, messages, {"tags": ["bug"]}, link_note=False,
                             internal_note_at=2)
    naive = _run(total, every, messages, {"tags": ["bug"], "statuses": ["spam"]})
    bugs = engine["bugs"]
    pages = math.ceil(bugs * messages / PAGE) + math.ceil(bugs / PAGE)
    return {"conversations": total, "bug_share": 1 / every, "messages": messages,
            "engine": engine, "without_link_notes": no_notes,
            "without_link_notes_with_internal_notes": no_notes_internal, "naive": naive,
            "floor_per_bug": round((pages + bugs) / bugs, 3),
            "floor_per_bug_without_link_notes": round(pages / bugs, 3),
            "ratio": round(naive["reamaze_per_bug"] / engine["reamaze_per_bug"], 2)}
