"""The poll after a backfill: every new link's internal link note moved its conversation,
and the conversations read by the backfill held no internal note of their own, so their
``message_count`` was never seen to count one. Once one conversation shows that Re:amaze
counts internal notes, the others are recognised as the sync's own change without being
read; where the count is missing or counts only public messages, each is read as before,
and a message someone else wrote after the backfill is copied in every case."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_support import STAFF, issue_for, journals, run_pass, sandbox

from syncer.app import Engine
from syncer.sandbox import Sandbox

CONVERSATIONS = 6


def backfilled(tmp_path: Path, count: str) -> tuple[Sandbox, Engine, list[str]]:
    sb = sandbox(tmp_path)
    sb.reamaze.message_count = count
    slugs = []
    for i in range(CONVERSATIONS):
        slug = sb.reamaze.add_conversation(f"Crash {i}", f"It crashes ({i}).",
                                           f"c{i}@customer.example", tags=["bug"])
        sb.reamaze.add_staff_message(slug, f"Looking into it ({i}).", email=STAFF)
        slugs.append(slug)
    engine = sb.engine()
    result = run_pass(engine, kind="backfill", full=True)
    assert result.counts["issues_created"] == CONVERSATIONS
    return sb, engine, slugs


def message_reads(sb: Sandbox, since: int) -> int:
    return sum(1 for r in sb.reamaze.requests[since:]
               if r.method == "GET" and r.path.endswith("/messages"))


@pytest.mark.parametrize(("count", "reads", "restarted"), [
    ("all", 0, False),  # the backfill learnt how Re:amaze counts
    ("all", 1, True),  # a new process learns it again from one conversation
    ("public", CONVERSATIONS, False), ("missing", CONVERSATIONS, False)])
def test_the_poll_after_a_backfill_reads_what_the_count_cannot_vouch_for(
        tmp_path: Path, count: str, reads: int, restarted: bool) -> None:
    sb, engine, _ = backfilled(tmp_path, count)
    if restarted:
        engine.close()
        engine = sb.engine()
    mark = len(sb.reamaze.requests)
    run_pass(engine)
    assert message_reads(sb, mark) == reads
    mark = len(sb.reamaze.requests)
    run_pass(engine)
    assert message_reads(sb, mark) == 0


@pytest.mark.parametrize("count", ["all", "public", "missing"])
@pytest.mark.parametrize("visibility", [0, 1])
@pytest.mark.parametrize("learnt", [False, True])
def test_a_staff_message_after_the_backfill_is_copied(tmp_path: Path, count: str,
                                                      visibility: int, learnt: bool) -> None:
    """A staff reply or note leaves ``last_customer_at`` as it was: only the count tells
    it from the sync's own link note, and it must not be taken for one, before or after
    the engine learnt how Re:amaze counts."""
    sb, engine, slugs = backfilled(tmp_path, count)
    if learnt:
        run_pass(engine)
    sb.reamaze.add_staff_message(slugs[3], "NEW-1 a workaround", email=STAFF,
                                 visibility=visibility)
    run_pass(engine)
    run_pass(engine)
    issue = issue_for(engine, slugs[3])
    assert [j.private for j in journals(sb, issue) if "NEW-1" in j.text] == [bool(visibility)]
