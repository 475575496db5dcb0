"""The GitHub change feed: a repository's issues by ascending ``updated_at``.

``GET /repos/O/R/issues?state=all&sort=updated&direction=asc&since=T&per_page=100``
(``state=all``: the default lists open issues only, and closings would be missed). Pull
requests come in the same listing and are dropped here, after they moved the watermark.

The listing shifts while it is read (an issue updated meanwhile moves to the end), so it
is read by ``connectors.requery``: each page re-queried from the newest second read so far
(``since`` is second-precise; whether GitHub's "updated after" is inclusive does not
matter: the overlap re-reads that second), issues told apart by ``number@updated``.

Cursor: ``watermark`` is the newest ``updated_at`` read, ``seen`` the keys the next poll's
look-back (``overlap_seconds``) returns again, each kept only once its second is over on
our clock (minus ``skew_seconds``), so an idle poll costs one request and yields nothing.

Comment edits do not move their issue's ``updated_at``, so after the issues the walk reads
the repository's comments changed since the last walk (``GET /repos/O/R/issues/comments?
sort=updated&direction=asc&since=T``, the same re-query from the newest second, keys
``c<id>@<updated>`` in ``seen``, its own watermark in ``Cursor.comments``) and yields the
issues of changed comments that the issue walk did not (one read each; a pull request's
comment is dropped there). An idle poll costs one more request; a first walk, which reads
every issue anyway, starts the comment watermark at the newest comment (one request)
instead of reading the repository's history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.github.wire import CONNECTOR, GhCommentWire, GhIssueWire
from connectors.requery import Requery
from syncer.models import ChangePage, Cursor, Ticket

MAX_PAGES = 10_000
ONE_SECOND = timedelta(seconds=1)

# (params, or the URL of a next page) -> (issues, URL of the next page or None)
Fetch = Callable[[dict[str, Any] | str], tuple[list[GhIssueWire], str | None]]
FetchComments = Callable[[dict[str, Any] | str], tuple[list[GhCommentWire], str | None]]
# An issue by number; None when it is gone or is a pull request.
GetIssue = Callable[[int], GhIssueWire | None]


def github_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def item_key(issue: GhIssueWire) -> str:
    return f"{issue.number}@{github_time(issue.updated_at)}"


def comment_key(comment: GhCommentWire) -> str:
    return f"c{comment.id}@{github_time(comment.updated_at)}"


def _issue_number(comment: GhCommentWire) -> int | None:
    tail = (comment.issue_url or "").rstrip("/").rsplit("/", 1)[-1]
    return int(tail) if tail.isascii() and tail.isdigit() else None


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
                 settings: FeedSettings, now: Callable[[], datetime],
                 comments: tuple[FetchComments, GetIssue] | None = None) -> None:
        self.fetch = fetch
        self.to_ticket = to_ticket
        self.settings = settings
        self.now = now
        self.comments = comments

    def _params(self, since: datetime | None) -> dict[str, Any]:
        # Without state=all the listing holds open issues only, and closings are missed.
        return {"state": "all", **self._comment_params(since)}

    def walk(self, since: Cursor | None) -> Iterator[ChangePage]:
        started = self.now()
        comments_at = since.comments if since is not None else None
        prior_comments = tuple(k for k in (since.seen if since else ()) if k.startswith("c"))
        if comments_at is None and self.comments is not None:
            # A first walk reads every issue: comments count from the newest one now (the
            # server's time, like every watermark here, never our clock).
            comments_at, prior_comments = self._newest_comments(started)
        issues_since = (since.model_copy(update={"seen": tuple(
            k for k in since.seen if not k.startswith("c"))}) if since is not None else None)
        yielded: set[int] = set()
        final: Cursor | None = None
        for page in self._walk_issues(issues_since, started, yielded):
            final = page.checkpoint or final
            if page.checkpoint is not None:
                page = page.model_copy(update={"checkpoint": page.checkpoint.model_copy(
                    update={"seen": page.checkpoint.seen + prior_comments,
                            "comments": comments_at})})
            yield page
        if self.comments is None or since is None or since.comments is None:
            if final is None and since is not None and comments_at is not None:
                # A cursor from before comments were watched: watch them from now on.
                yield ChangePage(tickets=(), checkpoint=since.model_copy(
                    update={"comments": comments_at}))
            return
        base = final or issues_since
        if base is None:
            return
        yield from self._walk_comments(base, since.comments, set(prior_comments), started,
                                       yielded)

    def _second(self, t: datetime) -> datetime:
        return t.replace(microsecond=0)

    def _walk_comments(self, issues: Cursor, since: datetime, prior: set[str],
                       started: datetime, yielded: set[int]) -> Iterator[ChangePage]:
        assert self.comments is not None
        fetch, get_issue = self.comments
        watermark = since
        listing = Requery[GhCommentWire](
            fetch=fetch, query_from=self._comment_params, key=comment_key,
            changed=lambda c: c.updated_at, precision=self._second,
            listing="GET /repos/{owner}/{repo}/issues/comments (changes)", connector=CONNECTOR,
            page_size=self.settings.page_size, max_pages=MAX_PAGES)
        lower = since - timedelta(seconds=self.settings.overlap_seconds)
        for comments, new in listing.pages(lower):
            numbers: list[int] = []
            for comment in new:
                number = _issue_number(comment)
                if comment_key(comment) not in prior and number is not None \
                        and number not in yielded:
                    yielded.add(number)
                    numbers.append(number)
            if comments:
                watermark = max(watermark, max(c.updated_at for c in comments))
            tickets = tuple(self.to_ticket(i) for i in map(get_issue, numbers)
                            if i is not None)
            seen = issues.seen + self._seen(prior, listing.read, watermark, started)
            yield ChangePage(tickets=tickets, checkpoint=issues.model_copy(
                update={"seen": seen, "comments": watermark}))

    def _newest_comments(self, started: datetime) -> tuple[datetime, tuple[str, ...]]:
        """The newest comment's time, and the keys of those the next walk's look-back
        will list again (accounted for by this walk's read of every issue), as ``_seen``
        keeps them: only once their second is over."""
        assert self.comments is not None
        newest, _ = self.comments[0]({"sort": "updated", "direction": "desc",
                                      "per_page": self.settings.page_size})
        if not newest:
            return datetime(1970, 1, 1, tzinfo=UTC), ()
        top = max(c.updated_at for c in newest)
        return top, self._seen(set(), {comment_key(c): c.updated_at for c in newest}, top,
                               started)

    def _comment_params(self, since: datetime | None) -> dict[str, Any]:
        """Oldest change first, from ``since``: the query both listings share."""
        params: dict[str, Any] = {"sort": "updated", "direction": "asc",
                                  "per_page": self.settings.page_size}
        if since is not None:
            params["since"] = github_time(since)
        return params

    def _walk_issues(self, since: Cursor | None, started: datetime,
                     yielded: set[int]) -> Iterator[ChangePage]:
        prior = set(since.seen) if since else set()
        watermark = since.watermark if since else None
        lower = (watermark - timedelta(seconds=self.settings.overlap_seconds)
                 if watermark is not None else None)
        listing = Requery[GhIssueWire](
            fetch=self.fetch, query_from=self._params, key=item_key,
            changed=lambda i: i.updated_at, precision=self._second,
            listing="GET /repos/{owner}/{repo}/issues (changes)", connector=CONNECTOR,
            page_size=self.settings.page_size, max_pages=MAX_PAGES)
        for issues, new in listing.pages(lower):
            fresh = [i for i in new if item_key(i) not in prior and not i.is_pull_request]
            yielded.update(i.number for i in fresh)
            if issues:
                newest = max(i.updated_at for i in issues)
                watermark = newest if watermark is None else max(watermark, newest)
            checkpoint = (Cursor(watermark=watermark, seen=self._seen(
                prior, listing.read, watermark, started)) if watermark is not None else None)
            yield ChangePage(tickets=tuple(self.to_ticket(i) for i in fresh),
                             checkpoint=checkpoint)

    def _seen(self, prior: set[str], read: dict[str, datetime], watermark: datetime,
              started: datetime) -> tuple[str, ...]:
        horizon = (watermark - timedelta(seconds=self.settings.overlap_seconds)).replace(
            microsecond=0) - ONE_SECOND
        settled_before = started - timedelta(seconds=self.settings.skew_seconds) - ONE_SECOND
        keep = {k for k in prior if (t := _key_time(k)) is not None and t >= horizon}
        keep |= {k for k, t in read.items() if horizon <= t <= settled_before}
        return tuple(sorted(keep))
