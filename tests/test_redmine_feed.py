"""The Redmine change feed on the simulator: no skips, no loss, cheap idle polls."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import structlog

from connectors.redmine.feed import item_key
from connectors.redmine.wire import Issue
from syncer.models import ChangePage, Cursor

if TYPE_CHECKING:
    from connectors.redmine.connector import RedmineConnector
    from connectors.redmine.sim.simulator import RedmineSimulator
    from connectors.redmine.sim.state import SimIssue

pytest_plugins = ["redmine_fixtures"]


def _ids(pages: list[ChangePage]) -> list[str]:
    return [t.id for p in pages for t in p.tickets]


def _spread_issues(sim: RedmineSimulator, count: int, gap: float = 0.5) -> list[SimIssue]:
    project = sim.state.project_by_ref("sync")
    made = []
    for n in range(count):
        made.append(sim.add_issue(project, f"issue {n}"))
        sim.clock.advance(gap)
    sim.clock.advance(5)
    return made


def _on_nth_listing(sim: RedmineSimulator, nth: int, action: Callable[[], None]) -> None:
    """Run ``action`` just before the nth GET /issues.json reaches the simulator."""
    seen = {"n": 0}

    def hook(_request: httpx.Request) -> None:
        seen["n"] += 1
        if seen["n"] == nth:
            action()

    sim.faults.add(method="GET", path=r"^/issues\.json$", times=10_000, action=hook)


def test_naive_offset_paging_skips_when_a_read_issue_moves(redmine_sim: RedmineSimulator) -> None:
    """Control: plain offset paging over updated_on loses an issue when one already read is
    updated mid-walk (the hazard the connector's keyset paging exists for)."""
    made = _spread_issues(redmine_sim, 250)
    _on_nth_listing(redmine_sim, 2, lambda: redmine_sim.touch(made[5].id))
    client = httpx.Client(base_url="http://redmine.test",
                          transport=httpx.MockTransport(redmine_sim.handle),
                          headers={"X-Redmine-API-Key": redmine_sim.admin_key})
    seen: set[int] = set()
    for offset in (0, 100, 200):
        page = client.get("/issues.json", params={"project_id": "sync", "status_id": "*",
                                                  "sort": "updated_on,id", "limit": 100,
                                                  "offset": offset}).json()
        seen |= {i["id"] for i in page["issues"]}
    assert len({i.id for i in made} - seen) == 1


def test_update_of_read_issue_between_pages_skips_nothing(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """With keyset paging every issue is yielded although one already read moves to the end."""
    made = _spread_issues(redmine_sim, 250)
    _on_nth_listing(redmine_sim, 2, lambda: redmine_sim.touch(made[5].id))
    yielded = _ids(list(redmine_conn.iter_changes(None)))
    assert set(yielded) == {str(i.id) for i in made}
    assert yielded.count(str(made[5].id)) == 2  # the old and the new version
    assert len(yielded) == 251


def test_pages_carry_checkpoints_and_a_resumed_walk_loses_nothing(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """Stopping after the first page and resuming from its checkpoint covers every issue."""
    made = _spread_issues(redmine_sim, 230)
    walk = redmine_conn.iter_changes(None)
    first = next(walk)  # the walk stops here, as if the process had died
    assert len(first.tickets) == 100 and first.checkpoint is not None
    assert first.checkpoint.watermark == max(t.updated_at for t in first.tickets)
    rest = _ids(list(redmine_conn.iter_changes(first.checkpoint)))
    assert {t.id for t in first.tickets} | set(rest) == {str(i.id) for i in made}
    assert not {t.id for t in first.tickets} & set(rest)


def test_crowded_second_falls_back_to_offsets_without_duplicates(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """250 issues stamped within one second are all yielded exactly once."""
    project = redmine_sim.state.project_by_ref("sync")
    made = [redmine_sim.add_issue(project, f"burst {n}") for n in range(250)]
    assert len({item_key(_wire(redmine_sim, i)) for i in made}) == 250
    redmine_sim.clock.advance(5)
    yielded = _ids(list(redmine_conn.iter_changes(None)))
    assert sorted(yielded) == sorted(str(i.id) for i in made)


def test_crowded_second_with_a_move_mid_walk_skips_nothing(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """Inside a crowded second the half-page overlap absorbs an issue moving away."""
    project = redmine_sim.state.project_by_ref("sync")
    made = [redmine_sim.add_issue(project, f"burst {n}") for n in range(250)]
    redmine_sim.clock.advance(5)
    _on_nth_listing(redmine_sim, 3, lambda: redmine_sim.touch(made[10].id))
    yielded = set(_ids(list(redmine_conn.iter_changes(None))))
    assert yielded == {str(i.id) for i in made}


def _bulk_edit(sim: RedmineSimulator, per_second: int, seconds: int) -> list[SimIssue]:
    """Issues stamped ``per_second`` a second for ``seconds`` seconds (a bulk edit)."""
    project = sim.state.project_by_ref("sync")
    made = []
    for _ in range(seconds):
        made += [sim.add_issue(project, f"bulk {len(made) + n}") for n in range(per_second)]
        sim.clock.advance(1)
    sim.clock.advance(5)
    return made


def test_several_crowded_seconds_in_a_row_are_walked_without_stalling(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """150 issues a second for four seconds: moving the lower bound to a crowded second
    must not send the walk back to the start of the second before it (three pages of
    issues already read, which the walk guard took for an endless listing: every pass
    failed and the tracker side stalled for good)."""
    made = _bulk_edit(redmine_sim, 150, 4)
    before = len(redmine_sim.requests)
    yielded = _ids(list(redmine_conn.iter_changes(None)))
    assert sorted(yielded, key=int) == [str(i.id) for i in made]
    assert len(redmine_sim.requests) - before <= 2 * len(made) // 100 + 2


def test_crowded_seconds_with_moves_mid_walk_skip_nothing(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """Issues already read moving to the end while the walk is in a crowded window shift
    the others back; the half-page overlap still catches every one of them."""
    made = _bulk_edit(redmine_sim, 150, 4)
    for nth, victim in ((3, 20), (5, 170), (7, 330)):
        _on_nth_listing(redmine_sim, nth, lambda v=victim: redmine_sim.touch(made[v].id))
    yielded = set(_ids(list(redmine_conn.iter_changes(None))))
    assert yielded == {str(i.id) for i in made}


def test_crowded_seconds_with_more_moves_than_the_overlap_skip_nothing(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """More issues already read move away mid-walk than half a page of overlap absorbs
    (the engine writes to the issues while it walks): the page then starts past issues
    not read yet, and the walk steps back instead of skipping them."""
    made = _bulk_edit(redmine_sim, 150, 4)

    def move_many() -> None:
        for issue in made[:90]:  # read by then, at the start of the window the walk is in
            redmine_sim.touch(issue.id)

    _on_nth_listing(redmine_sim, 4, move_many)
    yielded = set(_ids(list(redmine_conn.iter_changes(None))))
    assert yielded == {str(i.id) for i in made}


def test_idle_poll_is_one_request_with_no_tickets(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """Re-reading the overlap window yields nothing and costs a single list request."""
    _spread_issues(redmine_sim, 5)
    cursor = list(redmine_conn.iter_changes(None))[-1].checkpoint
    before = len(redmine_sim.requests)
    idle = list(redmine_conn.iter_changes(cursor))
    assert _ids(idle) == [] and len(redmine_sim.requests) - before == 1
    assert idle[-1].checkpoint == cursor


def test_issue_changed_again_within_the_same_second_is_not_lost(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """A change in the second just read keeps the same (id, updated_on) key, so the feed
    re-yields unsettled issues until their second is safely over."""
    (issue,) = _spread_issues(redmine_sim, 1)
    cursor = list(redmine_conn.iter_changes(None))[-1].checkpoint
    redmine_sim.touch(issue.id)
    right_after = list(redmine_conn.iter_changes(cursor))
    assert _ids(right_after) == [str(issue.id)]
    assert right_after[-1].checkpoint is not None and right_after[-1].checkpoint.seen == ()
    redmine_sim.add_note(issue.id, "a note in the same second")
    again = list(redmine_conn.iter_changes(right_after[-1].checkpoint))
    assert _ids(again) == [str(issue.id)]
    redmine_sim.clock.advance(3)
    settled = list(redmine_conn.iter_changes(again[-1].checkpoint))
    assert _ids(settled) == [str(issue.id)]
    assert _ids(list(redmine_conn.iter_changes(settled[-1].checkpoint))) == []


def test_first_poll_of_an_empty_project_vouches_for_nothing(
        redmine_conn: RedmineConnector) -> None:
    """With nothing read there is no watermark to save: the checkpoint is None."""
    pages = list(redmine_conn.iter_changes(None))
    assert [(p.tickets, p.checkpoint) for p in pages] == [((), None)]


def test_seen_keys_older_than_the_lookback_are_dropped(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """The cursor only remembers keys the next query can return again."""
    made = _spread_issues(redmine_sim, 10, gap=1.0)
    cursor = list(redmine_conn.iter_changes(None))[-1].checkpoint
    assert cursor is not None
    newest = max(made, key=lambda i: i.updated_on)
    assert f"{newest.id}@" in " ".join(cursor.seen)
    assert len(cursor.seen) <= 4  # overlap 2 s + Redmine's 1 s at one issue per second
    prior = Cursor(watermark=cursor.watermark, seen=(*cursor.seen, "bogus", "7@not-a-time"))
    idle = list(redmine_conn.iter_changes(prior))
    assert _ids(idle) == [] and idle[-1].checkpoint == cursor


def test_malformed_issue_in_listing_is_skipped_with_a_warning(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """One issue that fails validation does not stop the feed; it is logged."""
    _spread_issues(redmine_sim, 2)
    good = redmine_sim.handle(httpx.Request(
        "GET", "http://redmine.test/issues.json?status_id=*",
        headers={"X-Redmine-API-Key": redmine_sim.admin_key})).json()
    good["issues"].append({"id": 99, "subject": "no status, no dates"})
    redmine_sim.faults.add(method="GET", path=r"^/issues\.json$", status=200,
                           headers={"Content-Type": "application/json"},
                           body=httpx.Response(200, json=good).content)
    with structlog.testing.capture_logs() as logs:
        pages = list(redmine_conn.iter_changes(None))
    assert len(_ids(pages)) == 2
    assert [e["item_id"] for e in logs if e["event"] == "redmine_item_skipped"] == [99]


def _wire(sim: RedmineSimulator, issue: SimIssue) -> Issue:
    from connectors.redmine.sim import render as sim_render

    return Issue.model_validate(sim_render.issue(sim.state, issue, sim.admin,
                                                 base="http://redmine.test"))
