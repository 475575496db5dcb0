"""Whole-second change times settle by the tracker's clock, never ours.

Redmine shows change times in whole seconds: a note added later in the second the engine
read the issue in keeps the issue's visible change time, so the engine may take that time
as final only once the tracker's clock has left the second. The tracker's clock is the
one its connector knows (``connectors.base.server_now``: the one the change feed settles
by); ours may be minutes off it in either direction. Here the Redmine simulator's clock
runs far from the real one and the connector is given the simulator's time, as the
benchmarks do; a same-second note must still be copied, on the very next pass, and a
link must still settle (recorded as unchanged) once the tracker's clock moves on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from e2e_support import (
    Engineer,
    Handler,
    Mark,
    assert_same_second_note_is_copied_once,
    issue_for,
    messages,
    run_pass,
    sandbox,
)
from pydantic import SecretStr

from connectors.base import server_now
from connectors.redmine.config import RedmineConfig
from connectors.redmine.connector import RedmineConnector
from syncer.app import Engine
from syncer.sandbox import TRACKER, Sandbox

INTERNAL = 1
# The tracker's clock against ours; far behind: the benchmarks' virtual clock.
OFFSETS = pytest.mark.parametrize("offset", [
    pytest.param(timedelta(days=-120), id="behind-120d"),
    pytest.param(timedelta(minutes=-10), id="behind-10min"),
    pytest.param(timedelta(minutes=10), id="ahead-10min")])


def engine_on_tracker_clock(sb: Sandbox) -> Engine:
    """The sandbox's engine with a Redmine connector that knows the simulator's time."""
    engine = sb.engine()
    clock = sb.redmine.clock

    def tracker_time() -> datetime:
        return clock.current  # its latest reading, without moving it on

    cfg = sb.config.trackers[TRACKER]
    assert isinstance(cfg, RedmineConfig)
    engine.trackers[TRACKER] = RedmineConnector.from_config(
        cfg, SecretStr(sb.environ["REDMINE_API_KEY"]),
        transport=sb.transports()[TRACKER], now=tracker_time)
    return engine


def linked(tmp_path: Path, offset: timedelta) -> tuple[Sandbox, Engine, str, str]:
    sb = sandbox(tmp_path, tracker_clock_offset=offset)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "c@customer.example",
                                       tags=["bug"])
    engine = engine_on_tracker_clock(sb)
    run_pass(engine)
    return sb, engine, slug, issue_for(engine, slug)


@OFFSETS
def test_a_note_in_the_second_of_our_read_is_copied_on_the_next_pass(
        tmp_path: Path, offset: timedelta) -> None:
    sb, engine, slug, issue = linked(tmp_path, offset)
    run_pass(engine)  # reads the issue as it is now, in this very second
    assert_same_second_note_is_copied_once(sb, engine, slug, issue)
    engine.close()


@OFFSETS
def test_a_link_settles_once_the_trackers_clock_leaves_the_second(
        tmp_path: Path, offset: timedelta) -> None:
    """Once the tracker's clock is past the note's second, the link records the issue's
    change time (it reads as unchanged from then on) and an idle pass reads nothing but
    the two listings. A check by our clock would wait ten minutes with the tracker ahead,
    re-reading the issue whenever the feed shows it meanwhile."""
    sb, engine, slug, issue = linked(tmp_path, offset)
    Engineer(sb).note(issue, "A note from the developer")
    assert run_pass(engine).counts["comments_to_helpdesk"] == 1
    for _ in range(2):
        sb.redmine.clock.advance(5)
        run_pass(engine)
    link = engine.store.get_link("bugs", slug)
    assert link is not None and link.snapshot is not None
    changed = engine.trackers[TRACKER].get_ticket(issue)  # type: ignore[union-attr]
    assert link.snapshot.tracker_updated_at == changed.updated_at.isoformat()
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.requests() == 2
    engine.close()


def note_after_our_copy(tmp_path: Path, offset: timedelta, *,
                        tells_time: bool = True) -> tuple[Sandbox, Engine, str]:
    """A developer's note lands just after the sync wrote a copy to the issue and read it
    back, in the same second, and the pass goes on for three seconds of the tracker's
    clock before its tracker feed shows the issue. Returns after that pass."""
    armed: list[str] = []  # the issue, then "written" once the copy went to it

    def wrap(name: str, handler: Handler) -> Handler:
        def handle(request: httpx.Request) -> httpx.Response:
            response = handler(request)
            if name != TRACKER or not armed or request.url.path != f"/issues/{armed[0]}.json":
                return response
            if request.method == "PUT":
                armed.append("written")
            elif request.method == "GET" and armed[-1] == "written":  # the read-back
                issue = int(armed[0])
                armed.clear()
                sb.redmine.add_note(issue, "LATE-1 a note in the second of the copy")
                sb.redmine.clock.advance(3)
            return response
        return handle

    sb = sandbox(tmp_path, tracker_clock_offset=offset)
    sb.wrap = wrap
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "c@customer.example",
                                       tags=["bug"])
    engine = engine_on_tracker_clock(sb)
    if not tells_time:
        del engine.trackers[TRACKER].now  # type: ignore[union-attr]
    run_pass(engine)
    run_pass(engine)
    issue = issue_for(engine, slug)
    sb.reamaze.add_customer_message(slug, "Still broken on 4.2.")
    armed.append(issue)
    run_pass(engine)
    assert not armed, "the hook did not fire: no read-back after the copy"
    return sb, engine, slug


@OFFSETS
def test_a_note_in_the_second_of_our_own_write_is_copied_in_the_same_pass(
        tmp_path: Path, offset: timedelta) -> None:
    """The version the feed shows is not the one the write left (the read-back cannot
    vouch for a second that was not over), and its second is over by then: the issue is
    read again at once and the note copied."""
    sb, engine, slug = note_after_our_copy(tmp_path, offset)
    assert sum(1 for m in messages(sb, slug) if "LATE-1" in m.body) == 1
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []
    engine.close()


def test_without_the_trackers_time_a_note_after_our_copy_is_read_at_once(
        tmp_path: Path) -> None:
    """Nothing says the feed will show the issue again: it is read again in the pass."""
    sb, engine, slug = note_after_our_copy(tmp_path, timedelta(days=-120), tells_time=False)
    assert sum(1 for m in messages(sb, slug) if "LATE-1" in m.body) == 1
    engine.close()


def test_without_the_trackers_time_nothing_is_taken_as_settled(tmp_path: Path) -> None:
    """A tracker connector that does not tell the server's time (its feed still settles
    by its own): a same-second note is copied on the next pass, and once the feed has
    settled the issue an idle pass reads only the two listings (no endless re-reads)."""
    sb = sandbox(tmp_path, tracker_clock_offset=timedelta(days=-120))
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "c@customer.example",
                                       tags=["bug"])
    engine = engine_on_tracker_clock(sb)
    tracker = engine.trackers[TRACKER]
    del tracker.now  # type: ignore[union-attr]  # the feed keeps the clock it was given
    assert server_now(tracker) is None
    run_pass(engine)
    run_pass(engine)
    issue = issue_for(engine, slug)
    sb.redmine.add_note(int(issue), "Same-second note from the developer")
    assert run_pass(engine).counts["comments_to_helpdesk"] == 1
    for _ in range(2):
        sb.redmine.clock.advance(5)
        run_pass(engine)
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.requests() == 2
    assert sum(1 for m in messages(sb, slug) if "Same-second" in m.body) == 1
    engine.close()
