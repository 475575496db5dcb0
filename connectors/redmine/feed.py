"""The Redmine change feed: issues of one project by ascending ``updated_on``, keyset-paged.

Why not plain offset paging: when an issue already read is updated during the walk it
moves to the end of the ``updated_on`` order, every later issue shifts back by one, and
the next offset skips one of them. So each page re-queries from the newest second read so
far (``updated_on>=T``, which Redmine runs as ``updated_on > T - 1s`` on sub-second stored
times) and drops what it already yielded by ``(id, updated_on)``. Where more than half a
page of issues read shares those seconds (crowded seconds: a bulk edit, a fast
backfill), re-querying would re-read them, so the walk keeps its query and pages on by
offset with half a page of overlap; a page that does not start with an issue already
read shows that more issues moved away than the overlap absorbs, and the walk steps
back half a page at a time (with no checkpoint until it has), so a shift skips nothing.

Cursor: ``watermark`` is the newest ``updated_on`` read, ``seen`` the keys ``id@updated_on``
the next query can return again (the look-back of ``overlap_seconds`` plus Redmine's 1 s),
so an idle poll is one request that yields nothing. Timestamps have second precision, so
an issue read at second S and updated again within S would keep its key; a key only
enters ``seen`` once its second is over by ``skew_seconds`` on our clock (the server's
clock may differ by that much). Until then the issue is yielded again on the next poll:
the feed is at-least-once, never at-most-once.

Bounds (``connectors.paging.WalkGuard``): a walk may read the ``total_count`` of its first
page plus a margin, counted in issues because keyset pages overlap by a varying amount,
and ends with an error when pages stop bringing issues it has not met.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.paging import WalkGuard, position
from connectors.redmine.wire import CONNECTOR, Issue, ListPage
from syncer.models import ChangePage, Cursor, Ticket

MAX_PAGES = 10_000
ONE_SECOND = timedelta(seconds=1)

Fetch = Callable[[Mapping[str, Any]], tuple[list[Issue], ListPage]]


def redmine_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def item_key(issue: Issue) -> str:
    return f"{issue.id}@{redmine_time(issue.updated_on)}"


def key_time(key: str) -> datetime | None:
    _, _, stamp = key.partition("@")
    try:
        parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC)


def whole_second(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class FeedSettings:
    project: str
    overlap_seconds: float = 2.0
    skew_seconds: float = 1.0
    page_size: int = 100


class ChangeFeed:
    def __init__(self, fetch: Fetch, to_ticket: Callable[[Issue], Ticket],
                 settings: FeedSettings, now: Callable[[], datetime]) -> None:
        self.fetch = fetch
        self.to_ticket = to_ticket
        self.settings = settings
        self.now = now

    def walk(self, since: Cursor | None) -> Iterator[ChangePage]:
        started = self.now()
        prior_seen = set(since.seen) if since else set()
        watermark = since.watermark if since else None
        lower = (whole_second(watermark - timedelta(seconds=self.settings.overlap_seconds))
                 if watermark is not None else None)
        # Keys met in this walk (dedupe, the guard, the cursor's ``seen``), pruned as the
        # window moves. Keys the previous cursor had are met too, but not yielded again.
        read: dict[str, datetime] = {}
        guard = WalkGuard("GET /issues.json (changes)", connector=CONNECTOR,
                          max_pages=MAX_PAGES)
        offset = 0
        while True:
            params = self._params(lower, offset)
            guard.before(position(params))
            issues, meta = self.fetch(params)
            if guard.pages == 0 and meta.total_count is not None:
                guard.announce_items(meta.total_count, self.settings.page_size)
            page_limit = min(self.settings.page_size, meta.limit or self.settings.page_size)
            half = max(1, page_limit // 2)
            # Pages of one query overlap by half a page; a page that does not start with an
            # issue already read shows that more than that moved away (changed since),
            # shifting the rest back past issues not read yet.
            gap = offset > 0 and bool(issues) and item_key(issues[0]) not in read
            fresh: list[Issue] = []
            met = 0
            for issue in issues:
                key = item_key(issue)
                if key in read:
                    continue
                read[key] = issue.updated_on
                met += 1
                if key not in prior_seen:
                    fresh.append(issue)
            guard.page(items=len(issues), new=met, at=position(params))
            if issues:
                newest = max(i.updated_on for i in issues)
                watermark = newest if watermark is None else max(watermark, newest)
            # Past a gap, a checkpoint would vouch for the issues skipped.
            checkpoint = (Cursor(watermark=watermark,
                                 seen=self._seen(prior_seen, read, watermark, started))
                          if watermark is not None and not gap else None)
            yield ChangePage(tickets=tuple(self.to_ticket(i) for i in fresh),
                             checkpoint=checkpoint)
            if gap:
                offset = max(0, offset - half)  # back, until a page starts with a known one
                continue
            if len(issues) < page_limit or watermark is None:
                return
            last = whole_second(max(i.updated_on for i in issues))
            if self._window(read, last) <= half:
                # Few issues read from ``last - 1s`` on: query again from there.
                lower, offset = last, 0
            else:
                # Crowded seconds (a bulk edit): a query from ``last`` would re-read pages of
                # issues already read, so this one goes on, half a page further.
                offset += max(1, len(issues) - half)
            # Later queries return nothing older than lower - 1s, and the cursor keeps
            # nothing older than the horizon: forget the rest (keeps long backfills linear).
            horizon = self._horizon(watermark)
            floor = min(lower - ONE_SECOND, horizon) if lower is not None else horizon
            read = {k: t for k, t in read.items() if t >= floor}

    @staticmethod
    def _window(read: dict[str, datetime], lower: datetime) -> int:
        """How many issues this walk read that a query ``>= lower`` (from ``lower - 1s``
        on) returns again."""
        return sum(1 for t in read.values() if t >= lower - ONE_SECOND)

    def _params(self, lower: datetime | None, offset: int) -> dict[str, Any]:
        params: dict[str, Any] = {"project_id": self.settings.project, "status_id": "*",
                                  "sort": "updated_on,id", "limit": self.settings.page_size,
                                  "offset": offset}
        if lower is not None:
            params["updated_on"] = ">=" + redmine_time(lower)
        return params

    def _horizon(self, watermark: datetime) -> datetime:
        return (whole_second(watermark - timedelta(seconds=self.settings.overlap_seconds))
                - ONE_SECOND)

    def _seen(self, prior: set[str], read: dict[str, datetime], watermark: datetime,
              started: datetime) -> tuple[str, ...]:
        # The next walk queries >= watermark - overlap, i.e. stored times above one second
        # less than that; every key it can return again must be remembered.
        horizon = self._horizon(watermark)
        settled_before = started - timedelta(seconds=self.settings.skew_seconds) - ONE_SECOND
        keep = set()
        for key in prior:
            stamp = key_time(key)
            if stamp is not None and stamp >= horizon:
                keep.add(key)
        for key, stamp in read.items():
            if horizon <= stamp <= settled_before:
                keep.add(key)
        return tuple(sorted(keep))
