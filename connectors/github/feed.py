"""The GitHub change feed: a repository's issues by ascending ``updated_at``.

``GET /repos/O/R/issues?state=all&sort=updated&direction=asc&since=T&per_page=100``
(``state=all``: the default lists open issues only, and closings would be missed). Pull
requests come in the same listing and are dropped here, after they moved the watermark.

Why not just follow the ``link`` pages: an issue updated while the walk runs moves to the
end of the order, every later issue shifts back by one, and the next page skips one. So
each page re-queries from the newest second read so far (``since`` is second-precise and
treated as inclusive; whether GitHub's "updated after" is inclusive does not matter: the
overlap re-reads that second) and drops what this walk already met by ``number@updated``.
Only when more than half a page shares the newest second (a bulk edit: re-querying would
return the same page) does the walk follow ``rel="next"`` of that query; a shift there can
skip an issue, which the next poll does not see again, so that case is logged
(``github_feed_crowded``) and left to a full re-read (``verify``, the sweep).

Cursor: ``watermark`` is the newest ``updated_at`` read, ``seen`` the keys the next poll's
look-back (``overlap_seconds``) returns again, each kept only once its second is over on
our clock (minus ``skew_seconds``), so an idle poll costs one request and yields nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from connectors.github.wire import CONNECTOR, GhIssueWire
from connectors.paging import WalkGuard
from syncer.models import ChangePage, Cursor, Ticket

log = structlog.get_logger("reamaze_sync.github")

MAX_PAGES = 10_000
ONE_SECOND = timedelta(seconds=1)

# (params, or the URL of a next page) -> (issues, URL of the next page or None)
Fetch = Callable[[dict[str, Any] | str], tuple[list[GhIssueWire], str | None]]


def github_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def item_key(issue: GhIssueWire) -> str:
    return f"{issue.number}@{github_time(issue.updated_at)}"


def _key_time(key: str) -> datetime | None:
    try:
        return datetime.strptime(key.partition("@")[2], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class FeedSettings:
    overlap_seconds: float = 2.0
    skew_seconds: float = 1.0
    page_size: int = 100


class ChangeFeed:
    def __init__(self, fetch: Fetch, to_ticket: Callable[[GhIssueWire], Ticket],
                 settings: FeedSettings, now: Callable[[], datetime]) -> None:
        self.fetch = fetch
        self.to_ticket = to_ticket
        self.settings = settings
        self.now = now

    def _params(self, since: datetime | None) -> dict[str, Any]:
        params: dict[str, Any] = {"state": "all", "sort": "updated", "direction": "asc",
                                  "per_page": self.settings.page_size}
        if since is not None:
            params["since"] = github_time(since)
        return params

    def walk(self, since: Cursor | None) -> Iterator[ChangePage]:
        started = self.now()
        prior = set(since.seen) if since else set()
        watermark = since.watermark if since else None
        lower = (watermark - timedelta(seconds=self.settings.overlap_seconds)
                 if watermark is not None else None)
        read: dict[str, datetime] = {}
        guard = WalkGuard("GET /repos/{owner}/{repo}/issues (changes)", connector=CONNECTOR,
                          max_pages=MAX_PAGES)
        request: dict[str, Any] | str = self._params(lower)
        while True:
            guard.before(repr(request))
            issues, next_url = self.fetch(request)
            fresh: list[GhIssueWire] = []
            met = 0
            for issue in issues:
                key = item_key(issue)
                if key in read:
                    continue
                read[key] = issue.updated_at
                met += 1
                if key not in prior and not issue.is_pull_request:
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
            if next_url is None or not issues:
                return
            last = max(i.updated_at for i in issues).replace(microsecond=0)
            crowd = sum(1 for t in read.values() if t >= last)
            if crowd <= self.settings.page_size // 2:
                request = self._params(last)
            else:
                log.warning("github_feed_crowded", connector=CONNECTOR, second=github_time(last),
                            issues=crowd, action="following the next page of this query")
                request = next_url

    def _seen(self, prior: set[str], read: dict[str, datetime], watermark: datetime,
              started: datetime) -> tuple[str, ...]:
        horizon = (watermark - timedelta(seconds=self.settings.overlap_seconds)).replace(
            microsecond=0) - ONE_SECOND
        settled_before = started - timedelta(seconds=self.settings.skew_seconds) - ONE_SECOND
        keep = {k for k in prior if (t := _key_time(k)) is not None and t >= horizon}
        keep |= {k for k, t in read.items() if horizon <= t <= settled_before}
        return tuple(sorted(keep))
