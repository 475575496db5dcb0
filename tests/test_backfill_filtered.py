"""A walk through history (a backfill, a pair's first pass) reads only the conversations
the pair's rules can match, with the listing's own ``tag`` / ``category`` filters: a brand
where one conversation in ten is a bug costs a tenth of the listing pages. Nothing is
missed for it: a conversation in two walks is synced once, and one that changes while a
later walk runs is found by the next poll."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from e2e_support import issue_for, journals, run_pass, sandbox

from syncer.plan import Side
from syncer.sandbox import Sandbox, sandbox_config


def listing_reads(sb: Sandbox, since: int = 0) -> list[dict[str, Any]]:
    return [r.params for r in sb.reamaze.requests[since:]
            if r.method == "GET" and r.path.endswith("/conversations")]


def brand(tmp_path: Path, n: int, *, every: int = 10, **pair: Any) -> tuple[Sandbox, list[str]]:
    sb = sandbox(tmp_path, **pair)
    bugs = []
    for i in range(n):
        tags = ["bug"] if i % every == 0 else ["question"]
        slug = sb.reamaze.add_conversation(f"Conversation {i}", "Hello.", f"c{i}@x.example",
                                           tags=tags)
        if tags == ["bug"]:
            bugs.append(slug)
    return sb, bugs


def test_a_backfill_reads_only_the_pages_of_matching_conversations(tmp_path: Path) -> None:
    sb, bugs = brand(tmp_path, 300)
    engine = sb.engine()
    result = run_pass(engine, kind="backfill", full=True)
    assert result.counts["issues_created"] == len(bugs) == 30
    reads = listing_reads(sb)
    assert reads and all(r.get("tag") == "bug" for r in reads)
    assert len(reads) <= 2  # 30 bugs: one page (and one more if the listing shifted)
    engine.close()


def test_rules_the_listing_cannot_filter_read_the_whole_brand(tmp_path: Path) -> None:
    """The baseline: a status rule cannot be a listing filter, so every page is read."""
    sb, _ = brand(tmp_path, 300, match={"tags": ["bug"], "statuses": ["closed"]})
    engine = sb.engine()
    run_pass(engine, kind="backfill", full=True)
    assert len(listing_reads(sb)) >= 10 and all("tag" not in r for r in listing_reads(sb))
    engine.close()


def test_a_conversation_in_two_walks_gets_one_issue(tmp_path: Path) -> None:
    sb = sandbox(tmp_path, match={"tags": ["bug", "crash"], "channels": ["support"]})
    both = sb.reamaze.add_conversation("Crash", "It crashes.", "c@x.example",
                                       tags=["bug", "crash"])
    engine = sb.engine()
    run_pass(engine, kind="backfill", full=True)
    assert len(sb.redmine.state.issues) == 1 and issue_for(engine, both)
    assert {tuple(sorted(r)) for r in listing_reads(sb)} >= {
        ("filter", "page", "sort", "tag"), ("category", "filter", "page", "sort")}
    engine.close()


def test_a_change_while_a_later_walk_runs_is_found_by_the_next_poll(tmp_path: Path) -> None:
    """The first walk read the bug; while the second walk runs, the bug's customer writes
    and then the crash changes too (so the second walk reads a change newer than the
    customer's). The cursor vouches only for the older walk's watermark: with no overlap
    window at all, the next poll still finds the customer's message."""
    data = sandbox_config(f"sqlite:///{tmp_path / 'state.db'}",
                          match={"tags": ["bug", "crash"]})
    data["reamaze"]["overlap_seconds"] = 0
    sb = sandbox(tmp_path, config=data)
    first = sb.reamaze.add_conversation("Bug", "It fails.", "a@x.example", tags=["bug"])
    crash = sb.reamaze.add_conversation("Crash", "It crashes.", "b@x.example", tags=["crash"])
    engine = sb.engine()
    fired: list[bool] = []

    def customer_writes(request: httpx.Request) -> None:
        if not fired and request.url.params.get("tag") == "crash":
            fired.append(True)
            sb.reamaze.add_customer_message(first, "LATE-1 more details")
            sb.reamaze.add_customer_message(crash, "and a crash report")
    sb.reamaze.before_request.append(customer_writes)
    run_pass(engine, kind="backfill", full=True)
    assert fired
    # The cursor must not vouch for the second walk's newer watermark: the message came
    # before it, and the feed would start past it.
    late = next(m for m in sb.reamaze.conversations[first].messages if "LATE-1" in m.body)
    cursor = engine.store.get_cursor("bugs", Side.HELPDESK)
    assert cursor is not None and cursor.watermark < late.created_at
    run_pass(engine)
    assert any("LATE-1" in j.text for j in journals(sb, issue_for(engine, first)))
    engine.close()


def test_a_filtered_backfill_announces_its_total_before_the_first_conversation(
        tmp_path: Path) -> None:
    """The progress bar needs the listing's total from its first page, not at the end."""
    sb, bugs = brand(tmp_path, 300)
    engine = sb.engine()
    runner = engine.runner(engine.config.pairs[0])
    assert not isinstance(runner, Exception)
    events: list[str] = []
    runner.progress = lambda n: events.append("read")
    runner.progress_total = lambda total: events.append(f"total {total}")
    runner.run_once(kind="backfill", full=True)
    assert events[0] == f"total {len(bugs)}" and events.count("read") == len(bugs)
    engine.close()
