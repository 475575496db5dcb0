"""The GitLab change feed: a project's issues by ascending ``updated_at``.

``GET /projects/:id/issues?scope=all&order_by=updated_at&sort=asc&updated_after=T
&per_page=100`` (no ``state``: every state is listed, closings included). GitLab's
``updated_after`` is "updated on or after" (inclusive) and times are millisecond-precise.

As in the GitHub feed, offset pages shift when an issue is updated during the walk (it
moves to the end, and every later issue moves back by one), so each page re-queries from
the newest time read so far and drops what this walk already met by ``iid@updated``. Only
when more than half a page shares the newest millisecond (a bulk import) does the walk
follow the next page of that query, named by ``x-next-page`` or ``link: rel="next"``
(``x-total`` is not needed: GitLab omits it on lists over 10,000 items). That case is
logged (``gitlab_feed_crowded``).

Cursor: ``watermark`` is the newest ``updated_at`` read, ``seen`` the keys the next poll's
look-back (``overlap_seconds``) returns again, each kept only once its millisecond is over
on our clock (minus ``skew_seconds``), so an idle poll costs one request and yields nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from connectors.gitlab.wire import CONNECTOR, GlIssueWire
from connectors.paging import WalkGuard
from syncer.models import ChangePage, Cursor, Ticket

log = structlog.get_logger("reamaze_sync.gitlab")

MAX_PAGES = 10_000
ONE_MS = timedelta(milliseconds=1)
_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"

# (params, or the params/URL of a next page) -> (issues, next page request or None)
Request = dict[str, Any] | str
Fetch = Callable[[Request], tuple[list[GlIssueWire], Request | None]]


def gitlab_time(value: datetime) -> str:
    """Millisecond ISO 8601 in UTC, as GitLab writes it."""
    return value.astimezone(UTC).strftime(_FORMAT)[:-3] + "Z"


def _ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def item_key(issue: GlIssueWire) -> str:
    return f"{issue.iid}@{gitlab_time(issue.updated_at)}"


def _key_time(key: str) -> datetime | None:
    try:
        return datetime.strptime(key.partition("@")[2].removesuffix("Z"),
                                 _FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class FeedSettings:
    overlap_seconds: float = 2.0
    skew_seconds: float = 1.0
    page_size: int = 100


class ChangeFeed:
    def __init__(self, fetch: Fetch, to_ticket: Callable[[GlIssueWire], Ticket],
                 settings: FeedSettings, now: Callable[[], datetime]) -> None:
        self.fetch = fetch
        self.to_ticket = to_ticket
        self.settings = settings
        self.now = now

    def _params(self, since: datetime | None) -> dict[str, Any]:
        params: dict[str, Any] = {"scope": "all", "order_by": "updated_at", "sort": "asc",
                                  "per_page": self.settings.page_size}
        if since is not None:
            params["updated_after"] = gitlab_time(since)
        return params

    def walk(self, since: Cursor | None) -> Iterator[ChangePage]:
        started = self.now()
        prior = set(since.seen) if since else set()
        watermark = since.watermark if since else None
        lower = (watermark - timedelta(seconds=self.settings.overlap_seconds)
                 if watermark is not None else None)
        read: dict[str, datetime] = {}
        guard = WalkGuard("GET /projects/:id/issues (changes)", connector=CONNECTOR,
                          max_pages=MAX_PAGES)
        request: Request = self._params(lower)
        while True:
            guard.before(repr(request))
            issues, next_request = self.fetch(request)
            fresh: list[GlIssueWire] = []
            met = 0
            for issue in issues:
                key = item_key(issue)
                if key in read:
                    continue
                read[key] = _ms(issue.updated_at)
                met += 1
                if key not in prior:
                    fresh.append(issue)
            guard.page(items=len(issues), new=met, at=repr(request))
            if issues:
                newest = max(i.updated_at for i in issues)
                watermark = newest if watermark is None else max(watermark, newest)
            checkpoint = (Cursor(watermark=watermark, seen=self._seen(prior, read, watermark,
                                                                        started))
                          if watermark is not None else None)
            yield ChangePage(tickets=tuple(self.to_ticket(i) for i in fresh),
                             checkpoint=checkpoint)
            if next_request is None or not issues:
                return
            last = _ms(max(i.updated_at for i in issues))
            crowd = sum(1 for t in read.values() if t >= last)
            if crowd <= self.settings.page_size // 2:
                request = self._params(last)
            else:
                log.warning("gitlab_feed_crowded", connector=CONNECTOR,
                            millisecond=gitlab_time(last), issues=crowd,
                            action="following the next page of this query")
                request = next_request

    def _seen(self, prior: set[str], read: dict[str, datetime], watermark: datetime,
              started: datetime) -> tuple[str, ...]:
        horizon = _ms(watermark - timedelta(seconds=self.settings.overlap_seconds)) - ONE_MS
        settled_before = started - timedelta(seconds=self.settings.skew_seconds) - ONE_MS
        keep = {k for k in prior if (t := _key_time(k)) is not None and t >= horizon}
        keep |= {k for k, t in read.items() if horizon <= t <= settled_before}
        return tuple(sorted(keep))
