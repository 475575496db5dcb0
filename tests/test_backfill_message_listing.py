"""A backfill reads its conversations' messages across conversations (``GET /messages?tag=``,
30 a page) instead of one request per conversation, and copies exactly what a read of
each conversation would have: whatever the listing's order, whether it honours ``tag``,
whether ``message_count`` counts internal notes, and when the listing skips a message or
someone writes while the backfill runs."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import STAFF, issue_for, journals, run_pass, sandbox

from syncer.app import Engine
from syncer.sandbox import Sandbox

BUGS, OTHERS = 40, 15
LOGIN = "sync-bot@acme.example"


def seed(sb: Sandbox) -> list[str]:
    """Bug conversations of four or five messages (every third with an internal note),
    and conversations of another tag between them."""
    rz = sb.reamaze
    slugs = []
    for i in range(BUGS):
        slug = rz.add_conversation(f"Crash {i}", f"B{i}-M0 it crashes", f"c{i}@customer.example",
                                   tags=["bug"])
        rz.add_staff_message(slug, f"B{i}-M1 which version?", email=STAFF)
        rz.add_customer_message(slug, f"B{i}-M2 version 4.{i}")
        if i % 3 == 0:
            rz.add_staff_message(slug, f"B{i}-M3 escalating", email=STAFF, visibility=1)
        rz.add_customer_message(slug, f"B{i}-M4 still crashing")
        slugs.append(slug)
        if i < OTHERS:
            other = rz.add_conversation(f"Question {i}", f"Q{i} how do I?",
                                        f"q{i}@customer.example", tags=["question"])
            rz.add_customer_message(other, f"Q{i} thanks")
    return slugs


def people_messages(sb: Sandbox, slug: str) -> list[tuple[str, bool]]:
    return [(m.body, m.visibility == 1) for m in sb.reamaze.conversations[slug].messages
            if (m.author.email or "").lower() != LOGIN]


def assert_copied_once(sb: Sandbox, engine: Engine, slugs: list[str]) -> None:
    """Every person's message is on its issue exactly once, private when it was internal."""
    for slug in slugs:
        notes = journals(sb, issue_for(engine, slug))
        for body, internal in people_messages(sb, slug):
            copies = [n for n in notes if body in n.text]
            assert [n.private for n in copies] == [internal], (slug, body)


def reads(sb: Sandbox, since: int = 0) -> tuple[int, int]:
    """(requests for one conversation's messages, pages of the brand's message listing)."""
    alone = brand = 0
    for r in sb.reamaze.requests[since:]:
        path = r.path.removeprefix("/api/v1")
        if r.method == "GET" and path.startswith("/conversations/") and \
                path.endswith("/messages"):
            alone += 1
        elif r.method == "GET" and path == "/messages":
            brand += 1
    return alone, brand


def backfill(sb: Sandbox, slugs: list[str], *, complete: bool = True) -> int:
    """The backfill pass, then two polls; the number of Re:amaze requests the backfill
    pass ended at. ``complete``: the backfill alone copied everything (the polls after it
    would repair a conversation it read short)."""
    engine = sb.engine()
    result = run_pass(engine, kind="backfill", full=True)
    assert result.counts["issues_created"] == BUGS
    ended = len(sb.reamaze.requests)
    if complete:
        assert_copied_once(sb, engine, slugs)
    run_pass(engine)
    run_pass(engine)
    assert_copied_once(sb, engine, slugs)
    engine.close()
    return ended


def edit_brand_listing(sb: Sandbox, edit: Callable[[list[Any]], list[Any]]) -> None:
    """Re:amaze's answers to the brand-wide message listing, changed by ``edit``."""
    def wrap(name: str, handler: Callable[[httpx.Request], httpx.Response]
             ) -> Callable[[httpx.Request], httpx.Response]:
        if name != "reamaze":
            return handler

        def handle(request: httpx.Request) -> httpx.Response:
            response = handler(request)
            if request.method != "GET" or request.url.path != "/api/v1/messages":
                return response
            page = json.loads(response.read())
            page["messages"] = edit(page["messages"])
            return httpx.Response(response.status_code, json=page)
        return handle
    sb.wrap = wrap


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_a_backfill_reads_messages_across_conversations(tmp_path: Path, order: str) -> None:
    """Newest first (as one source says) the listing is read about once; oldest first
    its cost stays bounded, and each conversation it could not vouch for is read alone."""
    sb = sandbox(tmp_path)
    sb.reamaze.messages_listing_order = order
    slugs = seed(sb)
    backfill(sb, slugs)
    alone, brand = reads(sb)
    bug_messages = sum(len(sb.reamaze.conversations[s].messages) for s in slugs)
    if order == "newest":
        # The first conversation alone (and once more after its link note when it held
        # no internal note); the link notes written meanwhile push the listing down.
        assert alone <= 2
        assert brand <= math.ceil(bug_messages / 30) + 2
    else:
        assert alone + brand <= BUGS + 3000 // 30 + 2


def test_a_listing_that_ignores_the_tag_still_copies_only_the_bugs(tmp_path: Path) -> None:
    sb = sandbox(tmp_path)
    sb.reamaze.messages_listing_ignores_tag = True
    slugs = seed(sb)
    backfill(sb, slugs)
    assert len(sb.redmine.state.issues) == BUGS


@pytest.mark.parametrize("count", ["public", "missing"])
def test_a_count_that_cannot_vouch_for_a_conversation_reads_each_alone(
        tmp_path: Path, count: str) -> None:
    """Only a count known to include internal notes can show that the listing gave a
    conversation all its messages: without one the listing is not read at all."""
    sb = sandbox(tmp_path)
    sb.reamaze.message_count = count
    slugs = seed(sb)
    ended = backfill(sb, slugs)
    alone, brand = reads(sb)
    assert brand == 0 and alone >= BUGS
    # It tried to learn from a conversation after its link note three times, then stopped.
    probes = [r for r in sb.reamaze.requests[:ended] if r.method == "GET"
              and r.path.startswith("/api/v1/conversations/") and r.path.count("/") == 4]
    assert len(probes) == 3


def test_a_message_the_listing_skips_is_read_from_its_conversation(tmp_path: Path) -> None:
    sb = sandbox(tmp_path)
    slugs = seed(sb)
    skipped = "B20-M2"
    edit_brand_listing(sb, lambda items: [m for m in items if skipped not in m["body"]])
    backfill(sb, slugs)
    assert any(r.path.endswith(f"/conversations/{slugs[20]}/messages")
               for r in sb.reamaze.requests)


def test_a_message_repeated_by_a_shifting_listing_is_copied_once(tmp_path: Path) -> None:
    sb = sandbox(tmp_path)
    slugs = seed(sb)
    edit_brand_listing(sb, lambda items: items + items[:5])
    backfill(sb, slugs)
    assert reads(sb)[0] <= 2  # a repeat is recognised, not taken for a new message


@pytest.mark.parametrize("visibility", [0, 1])
def test_a_message_written_while_the_backfill_runs_is_copied_once(
        tmp_path: Path, visibility: int) -> None:
    """Someone writes in a conversation the backfill has not reached yet, after the
    listing gave its messages: its count no longer matches, and it is read alone."""
    sb = sandbox(tmp_path)
    slugs = seed(sb)
    written: list[bool] = []

    def write(request: httpx.Request) -> None:
        # The link note of the tenth conversation the walk reached (newest first).
        if not written and request.method == "POST" and \
                request.url.path.endswith(f"/conversations/{slugs[30]}/messages"):
            written.append(True)
            sb.reamaze.add_staff_message(slugs[5], "LATE-1 a workaround", email=STAFF,
                                         visibility=visibility)
    sb.reamaze.before_request.append(write)
    backfill(sb, slugs, complete=False)
    assert written
