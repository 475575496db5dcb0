"""Pagination styles as small objects, unit-tested against bare responses.

A paginator is told each decoded page and answers the query parameters of the next one,
or None when the listing is complete. The walk refuses to loop: a page identical to the
previous one, or a position that does not advance, ends it with an error instead of
spinning. And it refuses to run on (``WalkGuard``): a server that announces a million
pages and sends the same items reordered defeats both of those checks, so a walk also
ends when pages stop bringing items it has not met, and when it outruns what its listing
announced on the first page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from syncer.errors import BadPayloadError

MAX_PAGES = 100_000
# Pages in a row without an item not met before in the walk. Pages shift while a list is
# read (new items push old ones onto the next page), so one or two such pages happen;
# three need a whole page of arrivals between each two reads.
STALE_PAGES = 3
# Lists grow while being read: a walk may go 10 % and this many pages past the count its
# listing announced on the first page.
MARGIN_PAGES = 3


class Paginator(Protocol):
    def first(self) -> dict[str, Any]: ...
    def next(self, page: Mapping[str, Any], items: list[Any]) -> dict[str, Any] | None: ...


class PageNumberPaginator:
    """`page` 1..page_count (Re:amaze); stops on an empty page or page >= page_count."""

    def __init__(self, start: int = 1) -> None:
        self.page = start

    def first(self) -> dict[str, Any]:
        return {"page": self.page}

    def next(self, page: Mapping[str, Any], items: list[Any]) -> dict[str, Any] | None:
        page_count = page.get("page_count")
        if not items:
            return None
        if isinstance(page_count, int) and self.page >= page_count:
            return None
        self.page += 1
        return {"page": self.page}


class OffsetPaginator:
    """`offset`/`limit` with `total_count` (Redmine)."""

    def __init__(self, limit: int = 100, offset: int = 0) -> None:
        self.limit = limit
        self.offset = offset

    def first(self) -> dict[str, Any]:
        return {"offset": self.offset, "limit": self.limit}

    def next(self, page: Mapping[str, Any], items: list[Any]) -> dict[str, Any] | None:
        if not items:
            return None
        self.offset += len(items)
        total = page.get("total_count")
        if isinstance(total, int) and self.offset >= total:
            return None
        if not isinstance(total, int) and len(items) < self.limit:
            return None
        return {"offset": self.offset, "limit": self.limit}


class WalkGuard:
    """Ends a walk that outruns its listing's own announcement, or whose pages stop
    bringing anything new. Every walk over a listing, whatever its paging style, keeps one.

    The announcement is taken from the first page only: a server raising its count on
    every page must not raise the bound with it. It is a page count for listings paged by
    number or offset; an item count (``announce_items``) for keyset feeds, whose pages
    overlap by a varying amount.
    """

    def __init__(self, listing: str, *, connector: str, max_pages: int = MAX_PAGES) -> None:
        self.listing = listing
        self.connector = connector
        self.max_pages = max_pages
        self.pages = 0
        self.new_items = 0
        self.stale = 0
        self.announced: str | None = None
        self._page_limit = max_pages
        self._item_limit: int | None = None

    def announce_pages(self, pages: int, told: str | None = None) -> None:
        self.announced = told or f"{pages} pages"
        self._page_limit = min(self.max_pages, pages + pages // 10 + MARGIN_PAGES)

    def announce_items(self, items: int, page_size: int) -> None:
        self.announced = f"{items} items"
        self._item_limit = items + items // 10 + MARGIN_PAGES * page_size

    def page(self, *, items: int, new: int, at: str) -> None:
        """Account for a page read at ``at`` (its query): ``items`` on it, ``new`` of them
        not met before in this walk."""
        self.pages += 1
        self.new_items += new
        self.stale = self.stale + 1 if items and not new else 0
        if self.stale >= STALE_PAGES:
            raise self._error(f"{self.stale} pages in a row brought nothing new", at)
        if self._item_limit is not None and self.new_items > self._item_limit:
            raise self._error(f"more than {self._item_limit} items read", at)

    def before(self, at: str) -> None:
        """Called before fetching the page at ``at``: a listing of exactly the limit is
        complete, only a page beyond it is an error."""
        if self.pages >= self._page_limit:
            raise self._error(f"more than {self._page_limit} pages", at, stopped="before")

    def _error(self, what: str, at: str, stopped: str = "at") -> BadPayloadError:
        told = (f"the listing announced {self.announced} on its first page"
                if self.announced is not None else "the listing announced no count")
        return BadPayloadError(f"{self.listing}: {what} ({told}); stopped {stopped} {at} "
                               f"after {self.pages} pages", connector=self.connector)


def position(params: Mapping[str, Any]) -> str:
    """A page's query, for error messages: ``page=4`` or ``offset=300, limit=100``."""
    return ", ".join(f"{k}={v}" for k, v in params.items())


def announced_pages(page: Mapping[str, Any], items: list[Any]) -> tuple[int, str] | None:
    """How many pages the listing says it has, and how it said so: ``page_count``, or
    ``total_count`` over the page size (the page's ``page_size`` or ``limit``, else its
    length)."""
    count = page.get("page_count")
    if isinstance(count, int) and count >= 0:
        return count, f"{count} pages"
    total = page.get("total_count")
    size = page.get("page_size") or page.get("limit") or len(items)
    if isinstance(total, int) and total >= 0 and isinstance(size, int) and size > 0:
        pages = -(-total // size)
        return pages, f"{total} items ({pages} pages of {size})"
    return None


def _item_id(item: Any) -> int:
    # Whole items, not ids: listings differ in their id field, and an item that changed
    # while the walk went on is news worth reading again.
    return hash(json.dumps(item, sort_keys=True, default=str))


def walk_pages(
    fetch: Callable[[dict[str, Any]], Any],
    paginator: Paginator,
    items_key: str,
    *,
    connector: str,
    max_pages: int = MAX_PAGES,
    listing: str | None = None,
) -> Iterator[tuple[Mapping[str, Any], list[Any]]]:
    """Yield (page, items) pairs; `fetch(params)` returns one decoded page. ``listing``
    names the listing in errors (e.g. ``GET /conversations``)."""
    guard = WalkGuard(listing or f"'{items_key}' listing", connector=connector,
                      max_pages=max_pages)
    params: dict[str, Any] | None = paginator.first()
    seen_params: set[str] = set()
    met: set[int] = set()
    last_page: tuple[int, ...] | None = None
    while params is not None:
        guard.before(position(params))
        key = json.dumps(params, sort_keys=True)
        if key in seen_params:
            raise BadPayloadError(f"pagination loop at {params}", connector=connector)
        seen_params.add(key)
        page = fetch(params)
        if not isinstance(page, Mapping):
            raise BadPayloadError(f"page is not an object: {type(page).__name__}",
                                  connector=connector)
        items = page.get(items_key)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise BadPayloadError(f"'{items_key}' is not a list", connector=connector)
        ids = tuple(_item_id(item) for item in items)
        if items and ids == last_page:
            raise BadPayloadError(f"pagination loop: page {params} repeats the previous page",
                                  connector=connector)
        last_page = ids
        if guard.pages == 0:
            told = announced_pages(page, items)
            if told is not None:
                guard.announce_pages(*told)
        new = set(ids) - met
        met |= new
        guard.page(items=len(items), new=len(new), at=position(params))
        yield page, items
        params = paginator.next(page, items)
