"""The backfill's read-ahead of messages (``connectors.reamaze.prefetch``) on its own: a
conversation's messages are handed out only when exactly as many as its count came, the
listing is read only as far as asked, and its cost is bounded whatever its order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.reamaze.prefetch import MessagePrefetch
from syncer.models import Ticket, TicketState, TicketStatus

START = datetime(2026, 1, 1, tzinfo=UTC)


def message(slug: str, n: int, *, visibility: int = 0) -> dict[str, Any]:
    return {"body": f"{slug} message {n}", "visibility": visibility,
            "created_at": (START + timedelta(minutes=n)).isoformat(),
            "user": {"name": "Carol", "email": "carol@customer.example"},
            "conversation": {"slug": slug}}


class Listing:
    """Pages of 30 of ``items``, counting the pages asked for; ``grow`` new messages land at
    its head after each page (as a backfill's link notes do)."""

    def __init__(self, items: list[dict[str, Any]], grow: int = 0) -> None:
        self.items = items
        self.asked: list[dict[str, Any]] = []
        self.grow = grow

    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(params)
        for n in range(self.grow):
            self.items.insert(0, message(f"note-{len(self.asked)}-{n}", 10_000))
        page = int(params["page"])
        count = (len(self.items) + 29) // 30
        return {"page_size": 30, "page_count": count, "total_count": len(self.items),
                "messages": self.items[(page - 1) * 30: page * 30]}


def ticket(slug: str, count: int | None, tags: tuple[str, ...] = ("bug",)) -> Ticket:
    return Ticket(id=slug, subject=slug, tags=tags, listed_comments=count,
                  status=TicketStatus(code="0", name="Open", state=TicketState.OPEN),
                  created_at=START, updated_at=START)


def test_messages_are_handed_out_when_the_count_agrees() -> None:
    listing = Listing([message("a", 3), message("b", 2), message("a", 1, visibility=1)])
    prefetch = MessagePrefetch(listing, ["bug"])
    got = prefetch.messages_for(ticket("a", 2))
    assert got is not None and [c.body for c in got] == ["a message 1", "a message 3"]
    assert listing.asked == [{"tag": "bug", "include": "original_body", "page": 1}]
    assert prefetch.messages_for(ticket("b", 2)) is None  # one short: read it alone
    assert prefetch.messages_for(ticket("a", 2)) is None  # handed out already


def test_a_count_missing_or_another_tag_is_never_vouched_for() -> None:
    listing = Listing([message("a", 1)])
    prefetch = MessagePrefetch(listing, ["bug"])
    assert prefetch.messages_for(ticket("a", None)) is None
    assert prefetch.messages_for(ticket("c", 1, tags=("vip",))) is None
    assert listing.asked == []  # nothing was read for either


def test_one_message_too_many_is_read_alone() -> None:
    prefetch = MessagePrefetch(Listing([message("a", 2), message("a", 1)]), ["bug"])
    assert prefetch.messages_for(ticket("a", 1)) is None


def test_the_listing_is_read_only_as_far_as_asked() -> None:
    items = [message(f"c{i}", 1) for i in range(90)]
    listing = Listing(items)
    prefetch = MessagePrefetch(listing, ["bug"])
    assert prefetch.messages_for(ticket("c0", 1)) is not None
    assert prefetch.messages_for(ticket("c29", 1)) is not None
    assert len(listing.asked) == 1
    assert prefetch.messages_for(ticket("c45", 1)) is not None
    assert len(listing.asked) == 2


def test_past_the_buffer_nothing_more_is_read() -> None:
    """A listing in an order the walk does not follow costs at most the buffer's pages;
    the conversations it had not reached are read alone, the ones it had are served."""
    items = [message(f"c{i}", 1) for i in range(300)]
    listing = Listing(items)
    prefetch = MessagePrefetch(listing, ["bug"], max_buffered=60)
    assert prefetch.messages_for(ticket("c299", 1)) is None
    assert len(listing.asked) == 2
    assert prefetch.messages_for(ticket("c10", 1)) is not None
    # One place free again: one more page, and the buffer is full once more.
    assert prefetch.messages_for(ticket("c200", 1)) is None
    assert len(listing.asked) == 3


def test_a_listing_that_misbehaves_is_abandoned_not_fatal() -> None:
    def broken(params: dict[str, Any]) -> Any:
        return ["not", "a", "page"]
    prefetch = MessagePrefetch(broken, ["bug"])
    assert prefetch.messages_for(ticket("a", 1)) is None
    assert prefetch.messages_for(ticket("b", 1)) is None


def test_a_listing_that_grows_while_it_is_read_is_followed_to_its_end() -> None:
    """The walk's bound comes from the count the first page announced; the backfill's own
    link notes grow the listing past it, and the walk resumes instead of giving up."""
    items = [message(f"c{i}", 4500 - i) for i in range(4500)]  # newest first
    listing = Listing(items, grow=6)
    prefetch = MessagePrefetch(listing, ["bug"], max_buffered=100_000)
    assert prefetch.messages_for(ticket("c4499", 1)) is not None
    assert len(listing.asked) > 4500 // 30 * 1.1 + 3  # past the first walk's bound
