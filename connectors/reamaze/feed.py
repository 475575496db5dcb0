"""The conversation change feed, built on ``GET /conversations?filter=all&sort=changed``.

Re:amaze has no ``updated_since`` filter; ``sort=changed`` lists every conversation newest
change first. So a poll walks pages from the front until it reaches items older than the
stored watermark minus an overlap window, and stops there.

Why the cursor is shaped the way it is:

* **Only the last page carries a checkpoint.** A newest-first walk vouches for nothing
  until it reaches its end: stopping after page 1 and saving its newest time would skip
  everything still unread on page 2.
* **The watermark is the newest ``updated_at`` actually read**, never "now". A
  conversation that changes while we are walking jumps to the front of the list, past
  our position; it is newer than anything we read, so the next poll (whose window starts
  at or below the watermark) picks it up. Nothing is skipped.
* **Closed lower bound plus ``seen``.** Each poll re-reads the overlap window below the
  watermark (clock skew, several changes in one millisecond) and drops the items whose
  ``slug@updated_at`` key the previous cursor already recorded. A conversation that
  changed again has a new key and is returned again. An idle poll therefore costs one
  list request and yields no pages at all (the caller keeps its cursor). When some pages
  had nothing new, the checkpoint rides on the last page that did, after the walk ended.
* **De-duplication within a walk**: when the list shifts between page reads, the last
  items of one page show up again at the top of the next; each slug is returned once.
* **List items without ``updated_at``.** Re:amaze's documented list item has none (only
  client models show it). Such an item's time is derived from its messages
  (``conversation_updated_at``), which a status or tag change does not move, so time alone
  would miss those changes. Its key then also carries a digest of what the item shows
  (status, tags, assignee, message count, last messages): any visible change makes a new
  key. ``sort=changed`` is documented to order by any update or status change, so what
  changed since the last walk comes before what did not: the walk stops at the end of the
  first page holding an item whose key the last walk recorded, and the cursor records the
  keys of every item read (not just the overlap window). A change the list item does not
  show (an edited note) is left to the sweep (``syncer.sweep``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from connectors.paging import PageNumberPaginator, walk_pages
from connectors.reamaze.mapping import utc_iso
from connectors.reamaze.wire import CONNECTOR
from syncer.models import ChangePage, Cursor, Ticket

FetchPage = Callable[[dict[str, Any]], Any]
DERIVED_KEYS_KEPT = 100  # about three pages
ToTickets = Callable[[list[Any]], list[Ticket]]


def change_key(ticket: Ticket) -> str:
    if time_is_derived(ticket):
        return f"{_key(ticket.id, ticket.updated_at)}#{_digest(ticket)}"
    return _key(ticket.id, ticket.updated_at)


def time_is_derived(ticket: Ticket) -> bool:
    """The list item carried no ``updated_at``: its time is its newest message's."""
    return not ticket.updated_at_exact


def _digest(ticket: Ticket) -> str:
    raw = ticket.raw or {}
    shown = [ticket.status.state.value, sorted(ticket.tags),
             ticket.assignee.id if ticket.assignee else None, raw.get("message_count"),
             raw.get("last_customer_message"), raw.get("last_staff_message"), raw.get("status")]
    text = json.dumps(shown, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _key(slug: str, updated_at: datetime) -> str:
    return f"{slug}@{utc_iso(updated_at)}"


def walk_changes(
    fetch: FetchPage,
    to_tickets: ToTickets,
    since: Cursor | None,
    overlap: timedelta,
) -> Iterator[ChangePage]:
    """Yield pages of changed tickets; the last one carries the new cursor.

    ``fetch(params)`` returns one decoded page of ``GET /conversations`` (``params`` holds
    ``page``); ``to_tickets`` turns the page's raw items into tickets.
    """
    floor = since.watermark - overlap if since is not None else None
    already = frozenset(since.seen) if since is not None else frozenset()
    # A walk back to a start time (no keys yet) may drop items by their derived time; a
    # poll may not: a status change leaves the derived time where it was.
    derived_floor = floor if not already else None
    # slug -> newest change time read in this walk. Times, not tickets: a backfill walks
    # the whole history, and holding every ticket made memory grow ~12 KB a conversation.
    read: dict[str, datetime] = {}
    derived: dict[str, str] = {}  # slug -> key, for items without ``updated_at``
    held: list[Ticket] = []  # the latest non-empty page, held back until the walk ends
    total: int | None = None  # the listing's total_count, as its first page announced it

    for page, items in walk_pages(fetch, PageNumberPaginator(), "conversations",
                                  connector=CONNECTOR, listing="GET /conversations (changes)"):
        if total is None and isinstance(page.get("total_count"), int):
            total = page["total_count"]
        fresh: list[Ticket] = []
        reached_floor = False
        for ticket in to_tickets(items):
            if time_is_derived(ticket):
                if derived_floor is not None and ticket.updated_at < derived_floor:
                    continue  # older than the walk's start; the order is not by this time
            elif floor is not None and ticket.updated_at < floor:
                reached_floor = True
                continue
            known = read.get(ticket.id)
            if known is not None and known >= ticket.updated_at:
                continue
            read[ticket.id] = ticket.updated_at
            key = change_key(ticket)
            if time_is_derived(ticket):
                derived[ticket.id] = key
                reached_floor = reached_floor or key in already
            if key not in already:
                fresh.append(ticket)
        if fresh:
            if held:
                yield ChangePage(tickets=tuple(held), total=total)
            held = fresh
        if reached_floor:
            break

    new_cursor = _next_cursor(read, since, overlap, derived)
    if held or (new_cursor is not None and new_cursor != since):
        yield ChangePage(tickets=tuple(held), checkpoint=new_cursor, total=total)


def _next_cursor(read: dict[str, datetime], since: Cursor | None, overlap: timedelta,
                 derived: dict[str, str]) -> Cursor | None:
    """Newest time read (never earlier than the old watermark), plus the keys of what was
    read inside the overlap window below it, and of every item read without ``updated_at``."""
    if not read:
        return since

    def key(slug: str, t: datetime) -> str:
        return derived.get(slug) or _key(slug, t)

    watermark: datetime = max(read.values())
    if since is not None and watermark <= since.watermark:
        if all(key(slug, t) in since.seen for slug, t in read.items()):
            return since
        watermark = since.watermark
    low = watermark - overlap
    # Of the items without ``updated_at`` only the first read (the top of the listing)
    # are kept: the next walk stops at the first of them it finds unchanged, and one it
    # does not find only makes it read further. A backfill's walk would keep them all.
    top = set(list(derived)[:DERIVED_KEYS_KEPT])
    seen = sorted(key(slug, t) for slug, t in read.items()
                  if slug in top or (slug not in derived and t >= low))
    return Cursor(watermark=watermark, seen=tuple(seen))


def walk_each(fetch: FetchPage, to_tickets: ToTickets, since: Cursor | None,
              overlap: timedelta, filters: list[dict[str, str]]) -> Iterator[ChangePage]:
    """One walk per listing filter (a tag, a channel), as a backfill of a pair whose rules
    name only those reads far fewer pages than the whole brand. Pages carry no checkpoint
    until every walk ended; then the cursor is the one a single walk would have vouched for
    least: the oldest of the walks' watermarks (a conversation changed after its walk read
    it is newer than that walk's watermark, so the feed that follows finds it), with the
    keys every walk read. A walk that read nothing vouches for nothing and is left out."""
    finals: list[Cursor] = []
    announced = 0
    for where in filters:
        last: Cursor | None = None
        total: int | None = None

        def fetch_where(p: dict[str, Any], where: dict[str, str] = where) -> Any:
            return fetch({**where, **p})

        for page in walk_changes(fetch_where, to_tickets, since, overlap):
            total = page.total if total is None else total
            last = page.checkpoint or last
            if page.tickets:
                yield ChangePage(tickets=page.tickets, total=announced + (total or 0) or None)
        announced += total or 0
        if last is not None and last != since:
            finals.append(last)
    if finals:
        seen = sorted({k for c in finals for k in c.seen})
        yield ChangePage(tickets=(), checkpoint=Cursor(
            watermark=min(c.watermark for c in finals), seen=tuple(seen)),
            total=announced or None)
