"""The GitLab change feed: a project's issues by ascending ``updated_at``.

``GET /projects/:id/issues?scope=all&order_by=updated_at&sort=asc&updated_after=T
&per_page=100`` (no ``state``: every state is listed, closings included). GitLab's
``updated_after`` is "updated on or after" (inclusive) and times are millisecond-precise.

As in the GitHub feed, offset pages shift when an issue is updated during the walk, so
the listing is read by ``connectors.requery`` (each page re-queried from the newest
millisecond read so far, issues told apart by ``iid@updated``); the next page of a crowded
query is named by ``x-next-page`` or ``link: rel="next"`` (``x-total`` is not needed:
GitLab omits it on lists over 10,000 items).

Cursor: ``watermark`` is the newest ``updated_at`` read, ``seen`` the keys the next poll's
look-back (``overlap_seconds``) returns again, each kept only once its millisecond is over
on our clock (minus ``skew_seconds``), so an idle poll costs one request and yields nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.gitlab.wire import CONNECTOR, GlIssueWire
from connectors.requery import Requery
from syncer.models import ChangePage, Cursor, Ticket

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
        listing = Requery[GlIssueWire](
            fetch=self.fetch, query_from=self._params, key=item_key,
            changed=lambda i: i.updated_at, precision=_ms,
            listing="GET /projects/:id/issues (changes)", connector=CONNECTOR,
            page_size=self.settings.page_size, max_pages=MAX_PAGES)
        for issues, new in listing.pages(lower):
            fresh = [i for i in new if item_key(i) not in prior]
            if issues:
                newest = max(i.updated_at for i in issues)
                watermark = newest if watermark is None else max(watermark, newest)
            checkpoint = (Cursor(watermark=watermark, seen=self._seen(
                prior, listing.read, watermark, started)) if watermark is not None else None)
            yield ChangePage(tickets=tuple(self.to_ticket(i) for i in fresh),
                             checkpoint=checkpoint)

    def _seen(self, prior: set[str], read: dict[str, datetime], watermark: datetime,
              started: datetime) -> tuple[str, ...]:
        horizon = _ms(watermark - timedelta(seconds=self.settings.overlap_seconds)) - ONE_MS
        settled_before = started - timedelta(seconds=self.settings.skew_seconds) - ONE_MS
        keep = {k for k in prior if (t := _key_time(k)) is not None and t >= horizon}
        keep |= {k for k, t in read.items() if horizon <= t <= settled_before}
        return tuple(sorted(keep))
