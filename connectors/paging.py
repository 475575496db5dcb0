"""Pagination styles as small objects, unit-tested against bare responses.

A paginator is told each decoded page and answers the query parameters of the next one,
or None when the listing is complete. It refuses to loop: a page identical to the previous
one, or a position that does not advance, ends the walk with an error instead of spinning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from syncer.errors import BadPayloadError

MAX_PAGES = 100_000


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


def _digest(items: list[Any]) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def walk_pages(
    fetch: Callable[[dict[str, Any]], Any],
    paginator: Paginator,
    items_key: str,
    *,
    connector: str,
    max_pages: int = MAX_PAGES,
) -> Iterator[tuple[Mapping[str, Any], list[Any]]]:
    """Yield (page, items) pairs; `fetch(params)` returns one decoded page."""
    params: dict[str, Any] | None = paginator.first()
    seen_params: set[str] = set()
    last_digest: str | None = None
    pages = 0
    while params is not None:
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
        digest = _digest(items)
        if items and digest == last_digest:
            raise BadPayloadError(f"pagination loop: page {params} repeats the previous page",
                                  connector=connector)
        last_digest = digest
        yield page, items
        pages += 1
        params = paginator.next(page, items)
        # Only a page that would be fetched beyond the limit is an error: a listing of
        # exactly max_pages pages is complete.
        if params is not None and pages >= max_pages:
            raise BadPayloadError(f"more than {max_pages} pages", connector=connector)
