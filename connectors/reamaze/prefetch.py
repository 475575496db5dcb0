"""A backfill's messages read across conversations: ``GET /messages?tag=T``, 30 a page.

Reading each conversation's messages costs one request per conversation; the brand-wide
listing, filtered by the conversation tag the pair's rules name, reads the messages of
about six five-message conversations per request. What the reference does not confirm is
the listing's order (newest first, by one secondary source) and whether it can skip or
repeat a message while new ones arrive, so nothing here relies on either:

* A conversation's messages are handed out only when the listing gave exactly as many
  distinct messages for it as its list item's ``message_count`` says it has. The caller
  asks only once it knows that count includes internal notes (``syncer.expect``): then a
  message the listing skipped shows as one too few, one written since the list item was
  read as one too many, and either way the conversation is read on its own, as before.
* The listing is read only as far as the conversation asked for needs: in the order a
  backfill walks (the conversations that changed last first) a newest-first listing
  holds their messages at about the same place. Messages of conversations not asked for
  yet wait in a buffer; past ``max_buffered`` of them (a listing in another order, a tag
  on many conversations the walk skips) nothing more is read and conversations not
  complete by then are read on their own. The listing's cost is bounded by what it would
  cost to read ``max_buffered`` messages, whatever its order.
* Messages of a conversation already handed out, or read on its own, are dropped: the
  walk never asks for it again in the same version (the runner reads a changed version
  on its own).
* The listing grows while it is read: the backfill's own link notes land at its head. A
  walk bounded by the count its first page announced (``connectors.paging``) would stop
  short of the end, so a walk stopped by its bound resumes at the next page with the
  count announced then, at most ``MAX_RESUMES`` times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import structlog

from connectors.paging import PageNumberPaginator, walk_pages
from connectors.reamaze.mapping import comments_from_wire, fingerprint_id
from connectors.reamaze.wire import CONNECTOR, WireMessage, parse_items
from syncer.errors import SyncError
from syncer.models import Comment, Ticket

log = structlog.get_logger("reamaze_sync.reamaze")

FetchPage = Callable[[dict[str, Any]], Any]
MAX_BUFFERED = 3000  # messages waiting for their conversation: about 100 pages, a few MB
MAX_RESUMES = 3


class MessagePrefetch:
    """The messages of the conversations carrying ``tags``, one listing walk per tag."""

    def __init__(self, fetch: FetchPage, tags: Sequence[str], *,
                 max_buffered: int = MAX_BUFFERED) -> None:
        self._fetch = fetch
        self._walks: dict[str, Iterator[tuple[Mapping[str, Any], list[Any]]] | None] = {
            t: None for t in tags}
        self._last_page: dict[str, int] = dict.fromkeys(tags, 0)
        self._resumes: dict[str, int] = dict.fromkeys(tags, 0)
        self._ended: set[str] = set()
        self._max = max_buffered
        # slug -> distinct messages read for it, keyed as ``comments_from_wire`` dedupes
        self._buffer: dict[str, dict[tuple[str | None, str], WireMessage]] = {}
        self._buffered = 0
        self._handed: set[str] = set()
        self.pages = 0
        self.handed_out = 0
        self.read_alone = 0

    def messages_for(self, ticket: Ticket) -> list[Comment] | None:
        """The conversation's messages, when the listing gave exactly ``message_count`` of
        them; None: read it on its own (the listing could not vouch for its messages)."""
        listed = ticket.listed_comments
        tag = next((t for t in ticket.tags if t in self._walks), None)
        if listed is None or tag is None or ticket.id in self._handed:
            self._alone(ticket.id)
            return None
        while True:
            have = self._buffer.get(ticket.id, {})
            if len(have) == listed:
                return self._hand_out(ticket.id)
            if len(have) > listed or tag in self._ended or self._buffered >= self._max:
                self._alone(ticket.id)
                return None
            self._read_page(tag)

    def _walk(self, tag: str, start: int) -> Iterator[tuple[Mapping[str, Any], list[Any]]]:
        def fetch(p: dict[str, Any]) -> Any:
            page = self._fetch({"tag": tag, "include": "original_body", **p})
            self._last_page[tag] = int(p["page"])
            return page
        return walk_pages(fetch, PageNumberPaginator(start), "messages", connector=CONNECTOR,
                          listing="GET /messages")

    def _read_page(self, tag: str) -> None:
        walk = self._walks[tag]
        if walk is None:
            walk = self._walks[tag] = self._walk(tag, 1)
        try:
            _page, items = next(walk)
        except StopIteration:
            self._ended.add(tag)
            return
        except SyncError as exc:
            if self._resumes[tag] < MAX_RESUMES and self._last_page[tag] > 0:
                self._resumes[tag] += 1
                log.info("reamaze_message_listing_resumed", tag=tag,
                         page=self._last_page[tag] + 1, reason=str(exc))
                self._walks[tag] = self._walk(tag, self._last_page[tag] + 1)
                return
            # A listing that misbehaves (a paging loop, a bad page) only costs the saving:
            # every conversation is read on its own from here on.
            log.warning("reamaze_message_listing_abandoned", tag=tag, **exc.log_fields())
            self._ended.add(tag)
            return
        self.pages += 1
        for msg in parse_items(WireMessage, items, kind="message"):
            slug = msg.conversation.slug if msg.conversation is not None else None
            if not slug or slug in self._handed:
                continue
            kept = self._buffer.setdefault(slug, {})
            key = (msg.origin_id, fingerprint_id(slug, msg))
            if key not in kept:
                kept[key] = msg
                self._buffered += 1

    def _hand_out(self, slug: str) -> list[Comment]:
        messages = self._drop(slug)
        self.handed_out += 1
        return comments_from_wire(slug, messages)

    def _alone(self, slug: str) -> None:
        self._drop(slug)
        self.read_alone += 1

    def _drop(self, slug: str) -> list[WireMessage]:
        self._handed.add(slug)
        kept = self._buffer.pop(slug, {})
        self._buffered -= len(kept)
        return list(kept.values())
