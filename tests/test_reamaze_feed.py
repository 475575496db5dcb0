"""The Re:amaze change feed: first run, idle polls, overlap, resumption, concurrent changes."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reamaze_support import RecordingClock, make_connector

from connectors.reamaze.connector import ReamazeConnector
from connectors.reamaze.feed import change_key
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.reamaze.sim.state import SimClock
from syncer.errors import TransientError
from syncer.models import ChangePage, Cursor, Ticket

pytest_plugins = ["reamaze_fixtures"]

LIST = "/api/v1/conversations"


def seed(rz_sim: ReamazeSimulator, rz_clock: SimClock, n: int, gap: float = 600) -> list[str]:
    slugs = []
    for i in range(n):
        rz_clock.advance(gap)
        slugs.append(rz_sim.add_conversation(f"Conv {i}", "body", f"c{i}@x.example"))
    return slugs


def poll(rz_conn: ReamazeConnector, since: Cursor | None) -> tuple[list[Ticket], Cursor | None,
                                                                 list[ChangePage]]:
    pages = list(rz_conn.iter_changes(since))
    tickets = [t for p in pages for t in p.tickets]
    cursor = pages[-1].checkpoint if pages else since
    return tickets, cursor, pages


def list_calls(rz_sim: ReamazeSimulator) -> int:
    return len(rz_sim.calls("GET", LIST))


def on_page(rz_sim: ReamazeSimulator, page: str, action: Callable[[], None]) -> None:
    """Run ``action`` once, just before the simulator answers that list page."""
    done: list[bool] = []

    def hook(request: httpx.Request) -> None:
        if request.url.path == LIST and request.url.params.get("page") == page and not done:
            done.append(True)
            action()

    rz_sim.before_request.append(hook)


def test_first_run_walks_everything_and_only_the_last_page_checkpoints(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, rz_sim_clock: SimClock) -> None:
    """With no cursor every conversation is returned once; only the final page has a cursor."""
    slugs = seed(rz_sim, rz_sim_clock, 70)
    rz_sim.set_status(slugs[0], 4)  # archived ones are part of the feed too
    tickets, cursor, pages = poll(rz_conn, None)
    assert sorted(t.id for t in tickets) == sorted(slugs)
    assert [p.checkpoint is None for p in pages] == [True, True, False]
    assert cursor is not None
    assert cursor.watermark == max(t.updated_at for t in tickets)
    assert list_calls(rz_sim) == 3


def test_empty_brand_yields_nothing(rz_conn: ReamazeConnector) -> None:
    """A brand without conversations produces no pages and no cursor."""
    assert poll(rz_conn, None)[0:2] == ([], None)


def test_idle_poll_costs_one_request_and_returns_nothing(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, rz_sim_clock: SimClock) -> None:
    """Polling again with nothing changed makes one list call and yields no pages."""
    seed(rz_sim, rz_sim_clock, 70)
    _, cursor, _ = poll(rz_conn, None)
    before = list_calls(rz_sim)
    rz_sim_clock.advance(3600)
    tickets, again, pages = poll(rz_conn, cursor)
    assert (tickets, pages, again) == ([], [], cursor)
    assert list_calls(rz_sim) - before == 1


def test_changes_since_the_cursor_are_returned_once(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, rz_sim_clock: SimClock) -> None:
    """Only conversations changed after the cursor come back, each exactly once."""
    slugs = seed(rz_sim, rz_sim_clock, 70)
    _, cursor, _ = poll(rz_conn, None)
    rz_sim_clock.advance(30)
    rz_sim.add_customer_message(slugs[5], "again")
    rz_sim.set_tags(slugs[40], ["bug"])
    tickets, cursor2, _ = poll(rz_conn, cursor)
    assert [t.id for t in tickets] == [slugs[40], slugs[5]]
    assert cursor2 is not None and cursor is not None
    assert cursor2.watermark > cursor.watermark
    assert poll(rz_conn, cursor2)[0] == []


def test_overlap_window_deduplicates_the_boundary(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, rz_sim_clock: SimClock) -> None:
    """Items re-read inside the overlap are dropped, but a new change at the same instant is not."""
    slugs = seed(rz_sim, rz_sim_clock, 5, gap=10)  # all five inside the 120 s overlap
    _, cursor, _ = poll(rz_conn, None)
    assert cursor is not None and len(cursor.seen) == 5
    rz_sim.set_tags(slugs[0], ["late"])  # same millisecond as the watermark
    tickets, cursor2, _ = poll(rz_conn, cursor)
    assert [t.id for t in tickets] == [slugs[0]]
    assert cursor2 is not None and cursor2.watermark == cursor.watermark
    assert change_key(tickets[0]) in cursor2.seen
    assert poll(rz_conn, cursor2)[0] == []


def test_a_failed_walk_gives_no_cursor_and_can_be_resumed(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, rz_sim_clock: SimClock) -> None:
    """A walk that dies on page 2 yields no checkpoint; re-polling the old cursor loses nothing."""
    slugs = seed(rz_sim, rz_sim_clock, 40)
    _, cursor, _ = poll(rz_conn, None)
    rz_sim_clock.advance(60)
    for s in slugs:
        rz_sim_clock.advance(1)
        rz_sim.add_customer_message(s, "bump")
    rz_sim.faults.add(503, times=None, path_prefix=LIST, params={"page": "2"})
    seen_pages: list[ChangePage] = []
    with pytest.raises(TransientError):
        for page in rz_conn.iter_changes(cursor):
            seen_pages.append(page)
    assert all(p.checkpoint is None for p in seen_pages)
    rz_sim.faults.clear()
    tickets, cursor2, _ = poll(rz_conn, cursor)
    assert sorted(t.id for t in tickets) == sorted(slugs)
    assert cursor2 is not None and cursor is not None and cursor2.watermark > cursor.watermark


def test_a_change_during_the_walk_is_caught_by_the_next_poll(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, rz_sim_clock: SimClock) -> None:
    """A conversation that jumps to the front mid-walk is not skipped: the next poll has it."""
    slugs = seed(rz_sim, rz_sim_clock, 70)
    oldest = slugs[0]  # on page 3 of sort=changed when the walk starts

    def change_oldest() -> None:
        rz_sim_clock.advance(5)
        rz_sim.add_customer_message(oldest, "changed while you were reading")

    on_page(rz_sim, "2", change_oldest)
    first, cursor, _ = poll(rz_conn, None)
    assert cursor is not None
    assert len({t.id for t in first}) == len(first)  # no duplicates within a walk
    assert cursor.watermark < rz_sim.conversations[oldest].updated_at
    second, _, _ = poll(rz_conn, cursor)
    assert [t.id for t in second] == [oldest]
    assert second[0].updated_at == rz_sim.conversations[oldest].updated_at
    assert {t.id for t in first} | {t.id for t in second} == set(slugs)


def test_pages_shifting_mid_walk_do_not_duplicate(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, rz_sim_clock: SimClock) -> None:
    """A new conversation pushing items onto the next page does not return any twice."""
    seed(rz_sim, rz_sim_clock, 65)
    on_page(rz_sim, "2", lambda: (rz_sim_clock.advance(1),
                               rz_sim.add_conversation("Arrived", "b", "new@x.example")))
    first, cursor, _ = poll(rz_conn, None)
    assert len(first) == len({t.id for t in first}) == 65
    second, _, _ = poll(rz_conn, cursor)
    assert [t.id for t in second] == ["arrived"]


def test_missing_updated_at_still_feeds(rz_sim: ReamazeSimulator, rz_clock: RecordingClock,
                                        rz_sim_clock: SimClock) -> None:
    """List items without updated_at fall back to their newest message time."""
    rz_conn = make_connector(rz_sim, rz_clock)
    seed(rz_sim, rz_sim_clock, 3)
    original = rz_sim.render_conversation

    def without_updated(conv: object, *, full: bool = False) -> dict[str, object]:
        out = original(conv, full=full)  # type: ignore[arg-type]
        out.pop("updated_at")
        return out

    rz_sim.render_conversation = without_updated  # type: ignore[method-assign]
    tickets, cursor, _ = poll(rz_conn, None)
    assert len(tickets) == 3 and cursor is not None


OPS = st.lists(st.one_of(
    st.tuples(st.just("advance"), st.integers(0, 400)),
    st.tuples(st.just("change"), st.integers(0, 79)),
    st.tuples(st.just("create"), st.just(0)),
    st.tuples(st.just("poll"), st.integers(-1, 79)),
), max_size=25)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=st.integers(0, 75), ops=OPS, mid_page=st.sampled_from(["1", "2", "3"]))
def test_property_every_final_version_is_delivered_exactly_once(
        initial: int, ops: list[tuple[str, int]], mid_page: str) -> None:
    """Under any interleaving of changes and polls (even mid-walk), two quiet polls at the end
    have delivered the current version of every conversation, and no version twice."""
    rz_sim_clock = SimClock()
    rz_sim = ReamazeSimulator(clock=rz_sim_clock, token="t")
    rz_conn = make_connector(rz_sim, RecordingClock(rz_sim_clock), token="t",
                          login_email="bot@acme.example")
    slugs = seed(rz_sim, rz_sim_clock, initial, gap=37)
    delivered: list[str] = []
    cursor: Cursor | None = None

    def change(i: int) -> None:
        if slugs:
            rz_sim.add_customer_message(slugs[i % len(slugs)], "x")

    for op, arg in ops:
        if op == "advance":
            rz_sim_clock.advance(arg)
        elif op == "change":
            change(arg)
        elif op == "create":
            slugs.append(rz_sim.add_conversation("New", "b", "n@x.example"))
        else:
            if arg >= 0:
                on_page(rz_sim, mid_page, lambda a=arg: change(a))  # type: ignore[misc]
            tickets, cursor, _ = poll(rz_conn, cursor)
            delivered.extend(change_key(t) for t in tickets)
            rz_sim.before_request.clear()
    for _ in range(2):
        tickets, cursor, _ = poll(rz_conn, cursor)
        delivered.extend(change_key(t) for t in tickets)
    assert len(delivered) == len(set(delivered))
    final = {f"{s}@{rz_sim.conversations[s].updated_at.isoformat(timespec='microseconds')}"
             for s in slugs}
    assert final <= set(delivered)


def test_without_updated_at_a_status_change_deep_in_the_list_is_found_with_few_keys(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, rz_sim_clock: SimClock) -> None:
    """List items without `updated_at`: after a first walk over 150 conversations the
    cursor keeps the keys of the top 100 only; a status change of the oldest one moves it
    to the front and the next poll finds it reading one page; an idle poll after that
    returns nothing."""
    rz_sim.list_items_without_updated_at = True
    slugs = seed(rz_sim, rz_sim_clock, 150)
    tickets, cursor, _ = poll(rz_conn, None)
    assert len(tickets) == 150 and cursor is not None
    assert len(cursor.seen) == 100 and all("#" in k for k in cursor.seen)
    rz_sim.set_status(slugs[0], 2)
    before = list_calls(rz_sim)
    tickets, cursor, _ = poll(rz_conn, cursor)
    assert [t.id for t in tickets] == [slugs[0]] and tickets[0].status.state.value == "closed"
    assert list_calls(rz_sim) - before == 1
    tickets, cursor, _ = poll(rz_conn, cursor)
    assert tickets == []
