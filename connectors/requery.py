"""A change listing ordered by ascending change time, read without skipping anything while
it shifts under the walk (GitHub's and GitLab's issue listings, GitHub's comment listing).

Following ``next`` links is not enough: an item changed while the walk runs moves to the
end of the order, every later item shifts back by one, and the next page skips one. So
each page re-queries from the newest change time read so far (at the API's precision,
the bound treated as inclusive; the caller's overlap covers an exclusive one) and drops
what this walk already met, by key. Only when more than half a page shares that newest
time (a bulk edit: re-querying would return the same page) does the walk follow the
``next`` link of that query; a shift there can skip an item, so that case is logged
(``<connector>_feed_crowded``) and left to a full re-read (``verify``, the sweep).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import structlog

from connectors.paging import WalkGuard

log = structlog.get_logger("reamaze_sync.feeds")

T = TypeVar("T")
# A query (its parameters), or whatever the API gives to read the page after one.
Request = dict[str, Any] | Any


@dataclass
class Requery(Generic[T]):
    """One listing: how to read a page, query from a time, and tell its items apart."""

    fetch: Callable[[Request], tuple[list[T], Request | None]]
    query_from: Callable[[datetime | None], dict[str, Any]]
    key: Callable[[T], str]  # an item's version: its id and change time
    changed: Callable[[T], datetime]
    precision: Callable[[datetime], datetime]  # a time as the API's filter reads it
    listing: str  # for errors and logs
    connector: str
    page_size: int = 100
    max_pages: int = 100_000
    # What this walk met: key -> change time (at the API's precision).
    read: dict[str, datetime] = field(default_factory=dict)

    def pages(self, lower: datetime | None) -> Iterator[tuple[list[T], list[T]]]:
        """Each page as (its items, those this walk had not met before)."""
        guard = WalkGuard(self.listing, connector=self.connector, max_pages=self.max_pages)
        request: Request = self.query_from(lower)
        while True:
            guard.before(repr(request))
            items, next_request = self.fetch(request)
            new = []
            for item in items:
                key = self.key(item)
                if key not in self.read:
                    self.read[key] = self.precision(self.changed(item))
                    new.append(item)
            guard.page(items=len(items), new=len(new), at=repr(request))
            yield items, new
            if next_request is None or not items:
                return
            last = self.precision(max(self.changed(i) for i in items))
            crowd = sum(1 for t in self.read.values() if t >= last)
            if crowd <= self.page_size // 2:
                request = self.query_from(last)
            else:
                log.warning(f"{self.connector}_feed_crowded", connector=self.connector,
                            at=last.isoformat(), items=crowd, listing=self.listing,
                            action="following the next page of this query")
                request = next_request
