"""Pagination objects and walk_pages, against bare decoded pages (no HTTP)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from connectors.paging import OffsetPaginator, PageNumberPaginator, position, walk_pages
from syncer.errors import BadPayloadError

Page = dict[str, Any]


def recording(pages: Callable[[dict[str, Any]], Any]) -> tuple[Callable[[dict[str, Any]], Any],
                                                                  list[dict[str, Any]]]:
    """Wrap a page function so the test can see every parameter set that was fetched."""
    calls: list[dict[str, Any]] = []

    def fetch(params: dict[str, Any]) -> Any:
        calls.append(dict(params))
        return pages(params)

    return fetch, calls


def numbered(items: list[int], per_page: int, *, page_count: bool = True,
             key: str = "conversations") -> Callable[[dict[str, Any]], Page]:
    """A server paging `items` by page number, like Re:amaze (page 1..page_count)."""
    count = max(1, -(-len(items) // per_page))

    def fetch(params: dict[str, Any]) -> Page:
        page = params["page"]
        chunk = items[(page - 1) * per_page: page * per_page]
        out: Page = {key: [{"id": i} for i in chunk]}
        if page_count:
            out["page_count"] = count
            out["page_size"] = per_page
            out["total_count"] = len(items)
        return out

    return fetch


def offsets(items: list[int], *, total_count: bool = True,
            server_max: int = 100) -> Callable[[dict[str, Any]], Page]:
    """A server paging `items` by offset/limit, like Redmine (limit capped server-side)."""

    def fetch(params: dict[str, Any]) -> Page:
        offset, limit = params["offset"], min(params["limit"], server_max)
        out: Page = {"issues": [{"id": i} for i in items[offset: offset + limit]],
                     "offset": offset, "limit": limit}
        if total_count:
            out["total_count"] = len(items)
        return out

    return fetch


def ids(walk: Any) -> list[int]:
    return [item["id"] for _, items in walk for item in items]


# -- PageNumberPaginator --------------------------------------------------------------------

def test_page_number_stops_at_page_count() -> None:
    """With page_count present the walk fetches exactly pages 1..page_count."""
    fetch, calls = recording(numbered(list(range(25)), 10))
    got = ids(walk_pages(fetch, PageNumberPaginator(), "conversations", connector="t"))
    assert got == list(range(25))
    assert calls == [{"page": 1}, {"page": 2}, {"page": 3}]


def test_page_number_stops_on_empty_page() -> None:
    """An empty page ends the walk even if page_count promised more."""
    pages = {1: {"conversations": [{"id": 1}], "page_count": 5},
             2: {"conversations": [], "page_count": 5}}
    fetch, calls = recording(lambda p: pages[p["page"]])
    got = ids(walk_pages(fetch, PageNumberPaginator(), "conversations", connector="t"))
    assert got == [1]
    assert [c["page"] for c in calls] == [1, 2]


def test_page_number_without_page_count_reads_until_empty() -> None:
    """Without page_count the walk keeps going until the first empty page."""
    fetch, calls = recording(numbered(list(range(7)), 3, page_count=False))
    got = ids(walk_pages(fetch, PageNumberPaginator(), "conversations", connector="t"))
    assert got == list(range(7))
    assert [c["page"] for c in calls] == [1, 2, 3, 4]  # page 4 is the empty one


def test_page_number_single_empty_listing() -> None:
    """An empty listing yields one empty page and stops."""
    fetch, calls = recording(numbered([], 10))
    pages = list(walk_pages(fetch, PageNumberPaginator(), "conversations", connector="t"))
    assert [items for _, items in pages] == [[]]
    assert len(calls) == 1


def test_page_number_custom_start() -> None:
    """A paginator started at page 3 asks for page 3 first."""
    fetch, calls = recording(numbered(list(range(50)), 10))
    got = ids(walk_pages(fetch, PageNumberPaginator(start=3), "conversations", connector="t"))
    assert got == list(range(20, 50))
    assert calls[0] == {"page": 3}


def test_page_number_ignores_non_integer_page_count() -> None:
    """A page_count that is not an integer is ignored rather than trusted."""
    pager = PageNumberPaginator()
    assert pager.next({"page_count": "1"}, [{"id": 1}]) == {"page": 2}
    assert pager.next({"page_count": 2}, [{"id": 2}]) is None


# -- OffsetPaginator ------------------------------------------------------------------------

def test_offset_with_total_count() -> None:
    """Offsets advance by the number of items received and stop at total_count."""
    fetch, calls = recording(offsets(list(range(250))))
    got = ids(walk_pages(fetch, OffsetPaginator(limit=100), "issues", connector="t"))
    assert got == list(range(250))
    assert calls == [{"offset": 0, "limit": 100}, {"offset": 100, "limit": 100},
                     {"offset": 200, "limit": 100}]


def test_offset_exact_multiple_does_not_fetch_an_extra_page() -> None:
    """When total_count is a multiple of the limit no empty extra page is requested."""
    fetch, calls = recording(offsets(list(range(200))))
    assert len(ids(walk_pages(fetch, OffsetPaginator(limit=100), "issues", connector="t"))) == 200
    assert len(calls) == 2


def test_offset_server_caps_limit() -> None:
    """A server returning fewer items than asked for still pages completely via total_count."""
    fetch, calls = recording(offsets(list(range(120)), server_max=25))
    got = ids(walk_pages(fetch, OffsetPaginator(limit=100), "issues", connector="t"))
    assert got == list(range(120))
    assert [c["offset"] for c in calls] == [0, 25, 50, 75, 100]


def test_offset_without_total_count_stops_on_short_page() -> None:
    """Without total_count a page shorter than the limit is the last one."""
    fetch, calls = recording(offsets(list(range(45)), total_count=False))
    got = ids(walk_pages(fetch, OffsetPaginator(limit=20), "issues", connector="t"))
    assert got == list(range(45))
    assert [c["offset"] for c in calls] == [0, 20, 40]


def test_offset_without_total_count_exact_multiple_ends_on_empty_page() -> None:
    """Without total_count a full last page is followed by one empty page, then the end."""
    fetch, calls = recording(offsets(list(range(40)), total_count=False))
    got = ids(walk_pages(fetch, OffsetPaginator(limit=20), "issues", connector="t"))
    assert got == list(range(40))
    assert [c["offset"] for c in calls] == [0, 20, 40]


def test_offset_starting_offset() -> None:
    """The first request uses the configured starting offset."""
    assert OffsetPaginator(limit=50, offset=150).first() == {"offset": 150, "limit": 50}


# -- walk_pages guards ----------------------------------------------------------------------

class StuckPaginator:
    """A paginator whose position never advances (a bug, or a server ignoring a cursor)."""

    def first(self) -> dict[str, Any]:
        return {"cursor": "a"}

    def next(self, page: Mapping[str, Any], items: list[Any]) -> dict[str, Any] | None:
        return {"cursor": "a"}


def test_loop_on_repeated_params_is_detected() -> None:
    """Asking for the same parameters twice raises instead of looping forever."""
    fetch, calls = recording(lambda p: {"items": [{"id": len(p)}], "n": 0})
    walk = walk_pages(fetch, StuckPaginator(), "items", connector="t")
    with pytest.raises(BadPayloadError, match="pagination loop"):
        list(walk)
    assert len(calls) == 1


def test_loop_on_repeated_page_is_detected() -> None:
    """A server that ignores `page` and repeats the same non-empty page is caught."""
    fetch, calls = recording(lambda p: {"conversations": [{"id": 1}, {"id": 2}]})
    seen: list[int] = []
    with pytest.raises(BadPayloadError, match="repeats the previous page"):
        for _, items in walk_pages(fetch, PageNumberPaginator(), "conversations", connector="t"):
            seen.extend(i["id"] for i in items)
    assert seen == [1, 2]  # the duplicate page is never handed out
    assert len(calls) == 2


def test_identical_empty_pages_are_not_a_loop() -> None:
    """Two consecutive empty pages are not treated as a repeat (nothing would be duplicated)."""

    class TwoEmpty:
        def __init__(self) -> None:
            self.n = 0

        def first(self) -> dict[str, Any]:
            return {"n": 0}

        def next(self, page: Mapping[str, Any], items: list[Any]) -> dict[str, Any] | None:
            self.n += 1
            return {"n": self.n} if self.n < 2 else None

    pages = list(walk_pages(lambda p: {"items": []}, TwoEmpty(), "items", connector="t"))
    assert len(pages) == 2


@pytest.mark.parametrize("page", [[{"id": 1}], "oops", None, 42])
def test_non_object_page_is_bad_payload(page: Any) -> None:
    """A page that is not a JSON object raises BadPayloadError naming its type."""
    with pytest.raises(BadPayloadError, match="page is not an object") as info:
        list(walk_pages(lambda p: page, PageNumberPaginator(), "items", connector="redmine"))
    assert info.value.connector == "redmine"


@pytest.mark.parametrize("items", [{"id": 1}, "abc", 3])
def test_non_list_items_is_bad_payload(items: Any) -> None:
    """An items field that is not a list raises BadPayloadError."""
    with pytest.raises(BadPayloadError, match="'issues' is not a list"):
        list(walk_pages(lambda p: {"issues": items}, OffsetPaginator(), "issues", connector="t"))


def test_missing_items_key_is_an_empty_page() -> None:
    """A page without the items key counts as empty and ends the walk."""
    pages = list(walk_pages(lambda p: {"total_count": 0}, OffsetPaginator(), "issues",
                            connector="t"))
    assert [items for _, items in pages] == [[]]


def test_max_pages_guard_stops_endless_listing() -> None:
    """A listing that keeps producing new pages is cut off after max_pages."""
    fetch, calls = recording(lambda p: {"conversations": [{"id": p["page"]}]})
    walk = walk_pages(fetch, PageNumberPaginator(), "conversations", connector="t", max_pages=5)
    with pytest.raises(BadPayloadError, match="more than 5 pages"):
        list(walk)
    assert len(calls) == 5


def test_listing_of_exactly_max_pages_is_complete() -> None:
    """A listing with exactly max_pages pages finishes without an error."""
    fetch, calls = recording(numbered(list(range(30)), 10))
    got = ids(walk_pages(fetch, PageNumberPaginator(), "conversations", connector="t",
                         max_pages=3))
    assert got == list(range(30))
    assert len(calls) == 3


def test_walk_yields_the_page_with_its_items() -> None:
    """Each yielded pair carries the whole page, so callers can read counts or cursors."""
    walk = walk_pages(numbered(list(range(3)), 2), PageNumberPaginator(), "conversations",
                      connector="t")
    first_page, first_items = next(walk)
    assert first_page["page_count"] == 2 and first_page["total_count"] == 3
    assert first_items == [{"id": 0}, {"id": 1}]


# -- bounded by what the listing announced --------------------------------------------------

def endless(announce: dict[str, int], *, fresh: bool, key: str = "conversations",
            give_up_after: int = 1000) -> Callable[[dict[str, Any]], Page]:
    """A server announcing ``announce`` on every page and never running out: either the
    same three items in a new order each time (``fresh=False``) or new items each time.
    After ``give_up_after`` requests it answers an empty page, so a walk that is not
    stopped still ends, as a test failure instead of a hang."""
    served = {"n": 0}

    def fetch(params: dict[str, Any]) -> Page:
        served["n"] += 1
        n = served["n"]
        if n > give_up_after:
            return {key: [], **announce}
        ids = [n * 3, n * 3 + 1, n * 3 + 2] if fresh else [(n + k) % 3 for k in range(3)]
        return {key: [{"id": i} for i in ids], **announce}

    return fetch


@pytest.mark.parametrize(("paginator", "announce"), [
    (PageNumberPaginator, {"page_count": 1_000_000, "total_count": 30_000_000}),
    (OffsetPaginator, {"total_count": 1_000_000}),
])
def test_reordered_repeats_under_a_huge_count_stop_within_a_few_requests(
        paginator: Callable[[], Any], announce: dict[str, int]) -> None:
    """A server announcing a million pages and sending the same items reordered is
    stopped after a few pages that bring nothing new, with an error naming the listing,
    what it announced and where the walk stopped."""
    fetch, calls = recording(endless(announce, fresh=False, key="items"))
    with pytest.raises(BadPayloadError) as info:
        list(walk_pages(fetch, paginator(), "items", connector="t", listing="GET /things"))
    assert len(calls) <= 5
    text = str(info.value)
    assert "GET /things" in text and "nothing new" in text
    assert "announced 1000000 " in text
    assert f"stopped at {position(calls[-1])} after {len(calls)} pages" in text


def test_a_walk_past_the_announced_page_count_plus_margin_fails() -> None:
    """A listing that announced 20 pages on its first page, then always one more, with new
    items every time, is cut off after 20 + 10 % + 3 pages."""

    def fetch(params: dict[str, Any]) -> Page:
        page = params["page"]
        if page > 1000:  # a walk nobody stopped ends here, failing the test, not hanging
            return {"conversations": [], "page_count": page}
        return {"conversations": [{"id": page}], "page_count": 20 if page == 1 else page + 1}

    fetch, calls = recording(fetch)
    with pytest.raises(BadPayloadError, match=r"announced 20 pages.*page=26"):
        list(walk_pages(fetch, PageNumberPaginator(), "conversations", connector="t",
                        listing="GET /conversations"))
    assert len(calls) == 25


def test_a_listing_growing_within_the_margin_is_read_to_the_end() -> None:
    """Lists grow while being read: 20 pages announced, 25 read, no error."""
    items = list(range(30 * 25))

    def fetch(params: dict[str, Any]) -> Page:
        page = params["page"]
        count = 20 if page == 1 else 25  # conversations arrived after the first read
        return {"conversations": [{"id": i} for i in items[(page - 1) * 30: page * 30]],
                "page_count": count}

    assert len(ids(walk_pages(fetch, PageNumberPaginator(), "conversations",
                              connector="t"))) == len(items)


def test_two_pages_of_items_already_read_are_tolerated() -> None:
    """Pages shift while a list is read: two pages bringing nothing new in a row are not yet
    an error when new items follow."""
    pages = {1: [1, 2, 3], 2: [3, 2, 1], 3: [2, 3, 1], 4: [4, 5], 5: []}
    fetch, calls = recording(lambda p: {"items": [{"id": i} for i in pages[p["page"]]]})
    got = ids(walk_pages(fetch, PageNumberPaginator(), "items", connector="t"))
    assert got == [1, 2, 3, 3, 2, 1, 2, 3, 1, 4, 5]
    assert len(calls) == 5
