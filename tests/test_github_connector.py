"""The GitHub connector against the GitHub simulator: tickets, comments, markers, the
change feed, error mapping and GitHub's rate-limit answers."""

from __future__ import annotations

import json

import httpx
import pytest
from github_support import REPO, GitHubWorld

from connectors.github.connector import classify
from connectors.github.sim import GitHubSimulator
from syncer.errors import AuthError, NotFoundError, RateLimitedError, RejectedError, TransientError
from syncer.models import NewComment, NewTicket, TicketState, TicketUpdate, Visibility


def ticket(marker: str = "rs-issue-1", **kw: object) -> NewTicket:
    return NewTicket(subject="Crash on save", description="It crashes.", marker=marker,
                     **kw)  # type: ignore[arg-type]


def note(marker: str, visibility: Visibility = Visibility.PUBLIC,
         body: str = "A note") -> NewComment:
    return NewComment(body=body, visibility=visibility, marker=marker)


@pytest.fixture
def gh() -> GitHubWorld:
    return GitHubWorld()


# -- tickets --------------------------------------------------------------------------------

def test_create_read_update_close_and_reopen(gh: GitHubWorld) -> None:
    conn = gh.connector()
    created = conn.create_ticket(ticket(tags=("bug", "customer"), assignee_id="dev-dana"))
    issue = gh.sim.state.issue(gh.repo, int(created.id))
    assert issue.body is not None and issue.body.endswith("<!-- reamaze-sync:rs-issue-1 -->")
    assert created.description == "It crashes." and created.marker == "rs-issue-1"
    assert created.tags == ("bug", "customer") and created.assignee is not None
    assert created.author_id == "sync-bot" and created.url == f"https://github.com/{REPO}/issues/1"

    closed = conn.update_ticket(created.id, TicketUpdate(state=TicketState.CLOSED,
                                                         tags=("bug",), assignee_id=""))
    assert closed.status.state is TicketState.CLOSED and issue.state_reason == "completed"
    assert closed.tags == ("bug",) and closed.assignee is None
    reopened = conn.update_ticket(created.id, TicketUpdate(state=TicketState.OPEN))
    assert reopened.status.state is TicketState.OPEN and issue.state_reason == "reopened"

    conn.update_ticket(created.id, TicketUpdate(state=TicketState.SPAM))
    assert issue.state == "closed" and issue.state_reason == "not_planned"


def test_an_update_that_changes_nothing_sends_nothing(gh: GitHubWorld) -> None:
    conn = gh.connector()
    created = conn.create_ticket(ticket(tags=("bug",)))
    before = len(gh.writes())
    conn.update_ticket(created.id, TicketUpdate(state=TicketState.OPEN, tags=("bug",)))
    assert len(gh.writes()) == before


def test_dropped_labels_and_assignees_are_refusals_not_silence(gh: GitHubWorld) -> None:
    """GitHub drops labels and assignees from a user without push access: the connector
    reads the answer and says so."""
    gh.sim.grant(gh.repo, gh.bot.login, "read")
    gh.sim.add_issue(gh.repo, gh.bot.login, "Own issue")
    conn = gh.connector()
    with pytest.raises(RejectedError, match="push access"):
        conn.update_ticket("1", TicketUpdate(tags=("bug",)))


def test_pull_requests_are_not_issues(gh: GitHubWorld) -> None:
    gh.sim.add_issue(gh.repo, "dev-dana", "A PR", pull_request=True)
    with pytest.raises(NotFoundError):
        gh.connector().get_ticket("1")


# -- comments -------------------------------------------------------------------------------

def test_public_comments_round_trip_with_their_marker(gh: GitHubWorld) -> None:
    conn = gh.connector()
    created = conn.create_ticket(ticket())
    batch = conn.create_comments(created.id, [note("rs-c-1"), note("rs-c-2", body="Second")])
    assert batch.error is None and len(batch.created) == 2
    gh.person().post(f"/repos/{REPO}/issues/{created.id}/comments", json={"body": "By Dana"})
    comments = conn.list_comments(created.id)
    assert [(c.body, c.marker, c.author.id) for c in comments] == [
        ("A note", "rs-c-1", "sync-bot"), ("Second", "rs-c-2", "sync-bot"),
        ("By Dana", None, "dev-dana")]
    assert all(c.visibility is Visibility.PUBLIC for c in comments)
    conn.delete_comment(created.id, comments[0].id)
    assert [c.marker for c in conn.list_comments(created.id)] == ["rs-c-2", None]


def test_an_internal_note_is_refused_before_anything_is_sent(gh: GitHubWorld) -> None:
    conn = gh.connector()
    created = conn.create_ticket(ticket())
    before = len(gh.exchanges)
    with pytest.raises(RejectedError, match="no private comments"):
        conn.create_comment(created.id, note("rs-secret", Visibility.INTERNAL))
    assert len(gh.exchanges) == before
    assert conn.capabilities.private_comments is False


def test_comment_listing_follows_every_page(gh: GitHubWorld) -> None:
    conn = gh.connector()
    created = conn.create_ticket(ticket())
    for n in range(230):
        gh.sim.add_comment(gh.repo, "dev-dana", int(created.id), f"note {n}")
    bodies = [c.body for c in conn.list_comments(created.id)]
    assert bodies == [f"note {n}" for n in range(230)]


# -- markers: recovery and re-adoption -------------------------------------------------------

def test_own_issue_found_by_marker_recent_or_through_search(gh: GitHubWorld) -> None:
    conn = gh.connector()
    first = conn.create_ticket(ticket("rs-old"))
    for n in range(120):  # pushes the first one out of the newest-100 listing
        gh.sim.add_issue(gh.repo, "sync-bot", f"filler {n}")
    found = conn.find_ticket_by_marker("rs-old")
    assert found is not None and found.id == first.id
    assert any(e.request.url.path == "/search/issues" for e in gh.exchanges)


def test_a_missing_issue_costs_one_listing_while_the_user_has_under_a_page(
        gh: GitHubWorld) -> None:
    """The duplicate check before a create: the API user's issues fit one page, so that
    listing is the whole answer and search (which lags anyway) is not asked."""
    conn = gh.connector()
    conn.create_ticket(ticket("rs-one"))
    conn.whoami()
    before = len(gh.exchanges)
    assert conn.find_ticket_by_marker("rs-none") is None
    assert [e.request.url.path for e in gh.exchanges[before:]] == [f"/repos/{REPO}/issues"]


def test_a_fresh_create_is_found_while_search_lags(gh: GitHubWorld) -> None:
    gh.sim.state.search_lag = 120.0
    conn = gh.connector()
    created = conn.create_ticket(ticket("rs-fresh"))
    found = conn.find_ticket_by_marker("rs-fresh")
    assert found is not None and found.id == created.id


def test_a_marker_in_someone_elses_issue_or_comment_is_not_ours(gh: GitHubWorld) -> None:
    conn = gh.connector()
    gh.sim.add_issue(gh.repo, "dev-dana", "Forged",
                     "copied\n\n<!-- reamaze-sync:rs-forged -->")
    assert conn.find_ticket_by_marker("rs-forged") is None
    created = conn.create_ticket(ticket())
    gh.sim.add_comment(gh.repo, "dev-dana", int(created.id),
                       "quoting\n\n<!-- reamaze-sync:rs-c-9 -->")
    assert conn.find_comment_by_marker(created.id, "rs-c-9") is None


def test_a_create_whose_answer_is_lost_is_found_not_repeated(gh: GitHubWorld) -> None:
    gh.sim.faults.add(status=502, method="POST", path=r"/issues$", commit=True)
    conn = gh.connector()
    created = conn.create_ticket(ticket("rs-lost"))
    assert len([i for i in gh.sim.state.issues.values()]) == 1
    assert created.marker == "rs-lost"
    gh.sim.faults.add(status=502, method="POST", path=r"/comments$", commit=True)
    comment = conn.create_comment(created.id, note("rs-lost-c"))
    assert comment.marker == "rs-lost-c" and len(gh.sim.state.comments) == 1


# -- change feed ----------------------------------------------------------------------------

def test_changes_include_closed_and_reopened_issues_and_skip_pull_requests(
        gh: GitHubWorld) -> None:
    conn = gh.connector()
    gh.sim.add_issue(gh.repo, "dev-dana", "one")
    gh.sim.add_issue(gh.repo, "dev-dana", "PR", pull_request=True)
    gh.sim.add_issue(gh.repo, "dev-dana", "three")
    gh.sim.set_state(gh.repo, "dev-dana", 1, "closed")
    pages = list(conn.iter_changes(None))
    assert sorted(t.subject for p in pages for t in p.tickets) == ["one", "three"]
    cursor = pages[-1].checkpoint
    assert cursor is not None
    gh.sim.clock.advance(5)
    assert [t.id for p in conn.iter_changes(cursor) for t in p.tickets] == []
    gh.sim.set_state(gh.repo, "dev-dana", 1, "open")
    again = [t for p in conn.iter_changes(cursor) for t in p.tickets]
    assert [(t.id, t.status.state) for t in again] == [("1", TicketState.OPEN)]


def test_an_issue_updated_mid_walk_shifts_nothing_past_the_walk(gh: GitHubWorld) -> None:
    """250 issues; while page 2 is read, an issue of page 1 is updated (it moves to the end
    of the order): every issue is still yielded, the moved one in its new version too."""
    for n in range(250):
        gh.sim.add_issue(gh.repo, "dev-dana", f"issue {n}")
        gh.sim.clock.advance(1)

    def bump(_request: httpx.Request) -> None:
        gh.sim.add_comment(gh.repo, "dev-dana", 3, "moved")

    gh.sim.faults.add(action=bump, method="GET", path=r"/issues$", skip=1)
    conn = gh.connector()
    seen = [t for p in conn.iter_changes(None) for t in p.tickets]
    assert {t.id for t in seen} == {str(n) for n in range(1, 251)}
    assert [t.id for t in seen].count("3") == 2


def test_a_crowded_second_is_paged_through(gh: GitHubWorld) -> None:
    for n in range(230):  # all in one second
        gh.sim.add_issue(gh.repo, "dev-dana", f"bulk {n}")
    seen = [t.id for p in gh.connector().iter_changes(None) for t in p.tickets]
    assert sorted(seen, key=int) == [str(n) for n in range(1, 231)]


@pytest.mark.parametrize("exclusive", [False, True])
def test_since_inclusive_or_not_loses_nothing(exclusive: bool) -> None:
    gh = GitHubWorld(sim=GitHubSimulator(since_exclusive=exclusive))
    conn = gh.connector()
    gh.sim.add_issue(gh.repo, "dev-dana", "first")
    [page] = list(conn.iter_changes(None))
    assert page.checkpoint is not None
    gh.sim.add_issue(gh.repo, "dev-dana", "same second")  # the watermark's own second
    later = [t.subject for p in conn.iter_changes(page.checkpoint) for t in p.tickets]
    assert later == ["same second"]


# -- errors and rate limits -----------------------------------------------------------------

def test_error_answers_map_to_the_engines_errors(gh: GitHubWorld) -> None:
    conn = gh.connector()
    with pytest.raises(NotFoundError):
        conn.get_ticket("99")
    with pytest.raises(NotFoundError):  # GitHub hides a private repository: 404, not 403
        gh.connector(user=gh.sim.add_user("nobody")).get_ticket("1")
    bad = gh.connector()
    bad.api.client.headers["Authorization"] = "Bearer wrong"
    with pytest.raises(AuthError, match="rejected the token"):
        bad.whoami()
    with pytest.raises(RejectedError):
        conn.create_comment(conn.create_ticket(ticket()).id, note("rs-x", body="x" * 70_000))
    gh.sim.faults.add(status=503, times=None, method="GET")
    with pytest.raises(TransientError):
        conn.get_ticket("1")


def test_the_secondary_limit_is_waited_out(gh: GitHubWorld) -> None:
    gh.sim.secondary_per_minute = 3
    conn = gh.connector()
    created = conn.create_ticket(ticket())
    for n in range(4):
        conn.create_comment(created.id, note(f"rs-s-{n}"))
    assert len(gh.sim.state.comments) == 4  # one 403, waited out, none duplicated
    limited = [e for e in gh.exchanges if e.response.status_code == 403]
    assert len(limited) == 1 and gh.clock.sleeps and max(gh.clock.sleeps) >= 1
    assert conn.api.stats.rate_limited == 1


def test_classify_reads_githubs_rate_limit_answers() -> None:
    def body(message: str) -> bytes:
        return json.dumps({"message": message}).encode()

    primary = classify(403, body("API rate limit exceeded for user ID 1."),
                       httpx.Headers({"x-ratelimit-remaining": "0",
                                      "x-ratelimit-reset": "1120"}), now=lambda: 1000.0)
    assert isinstance(primary, RateLimitedError) and primary.retry_after == 120.0
    secondary = classify(403, body("You have exceeded a secondary rate limit."),
                         httpx.Headers({"x-ratelimit-remaining": "4000"}))
    assert isinstance(secondary, RateLimitedError) and secondary.retry_after == 60.0
    told = classify(429, b"{}", httpx.Headers({"retry-after": "7"}))
    assert isinstance(told, RateLimitedError) and told.retry_after == 7.0
    assert classify(403, body("Must have admin rights to Repository."),
                    httpx.Headers({"x-ratelimit-remaining": "4000"})) is None
    assert classify(404, b"{}", httpx.Headers()) is None


def test_check_needs_push_access(gh: GitHubWorld) -> None:
    assert "sync-bot" in gh.connector().check()
    gh.sim.grant(gh.repo, gh.bot.login, "triage")
    with pytest.raises(RejectedError, match="no push access"):
        gh.connector().check()
    gh.sim.revoke(gh.repo, gh.bot.login)
    conn = gh.connector()
    assert conn.setting_problems() == [("repo", f"{REPO} does not exist or is not visible "
                                                "to sync-bot")]


def test_every_request_names_the_api_version(gh: GitHubWorld) -> None:
    gh.connector().whoami()
    assert all(e.request.headers["X-GitHub-Api-Version"] == "2022-11-28"
               for e in gh.exchanges)


def test_assignable_users_are_the_repositorys_collaborators(gh: GitHubWorld) -> None:
    assert sorted(u.id for u in gh.connector().list_users()) == ["acme", "dev-dana", "sync-bot"]


def test_named_statuses_close_with_their_reason(gh: GitHubWorld) -> None:
    """A pair's status table may name GitHub's states; the close reason is the status."""
    conn = gh.connector()
    assert [s.name for s in conn.list_statuses()] == [
        "open", "closed (completed)", "closed (not_planned)", "closed (duplicate)"]
    created = conn.create_ticket(ticket())
    done = conn.update_ticket(created.id, TicketUpdate(state=TicketState.CLOSED,
                                                       status_code="closed:not_planned"))
    assert done.status.name == "closed (not_planned)"
    moved = conn.update_ticket(created.id, TicketUpdate(status_code="open"))
    assert moved.status.state is TicketState.OPEN
    with pytest.raises(RejectedError, match="no status"):
        conn.update_ticket(created.id, TicketUpdate(status_code="closed:whatever"))


def test_editing_a_comment_keeps_its_marker_and_reads_only_that_comment(
        gh: GitHubWorld) -> None:
    conn = gh.connector()
    created = conn.create_ticket(ticket())
    for n in range(150):  # more than a page of comments
        gh.sim.add_comment(gh.repo, "dev-dana", int(created.id), f"dev {n}")
    ours = conn.create_comment(created.id, note("rs-edit-1"))
    before = len(gh.exchanges)
    edited = conn.update_comment(created.id, ours.id, "Corrected text")
    assert (edited.body, edited.marker) == ("Corrected text", "rs-edit-1")
    assert [e.request.method for e in gh.exchanges[before:]] == ["GET", "PATCH"]


def _walk(conn: object, cursor: object) -> tuple[list[str], object]:
    pages = list(conn.iter_changes(cursor))  # type: ignore[attr-defined]
    found = [t.id for p in pages for t in p.tickets]
    return found, next((p.checkpoint for p in reversed(pages) if p.checkpoint), cursor)


@pytest.mark.parametrize("moves_issue", [True, False])
def test_a_comment_edit_is_found_whether_or_not_it_moves_its_issue(
        gh: GitHubWorld, moves_issue: bool) -> None:
    """GitHub does not say whether editing a comment moves its issue's ``updated_at``; the
    repository-wide comment listing finds the edit either way, once."""
    gh.sim.state.comment_edits_move_issue = moves_issue
    gh.sim.add_issue(gh.repo, "dev-dana", "one")
    gh.sim.add_issue(gh.repo, "dev-dana", "two")
    pr = gh.sim.add_issue(gh.repo, "dev-dana", "a pull request", pull_request=True)
    note = gh.sim.add_comment(gh.repo, "dev-dana", 2, "first words")
    pr_note = gh.sim.add_comment(gh.repo, "dev-dana", pr.number, "PR talk")
    conn = gh.connector()
    found, cursor = _walk(conn, None)
    assert sorted(found) == ["1", "2"]
    gh.sim.clock.advance(10)
    assert _walk(conn, cursor)[0] == []
    with gh.sim.state.lock:
        gh.sim.state.edit_comment(gh.repo, gh.dev, note, "second thoughts")
        gh.sim.state.edit_comment(gh.repo, gh.dev, pr_note, "PR talk, edited")
    gh.sim.clock.advance(10)
    found, cursor = _walk(conn, cursor)
    assert found == ["2"]
    gh.sim.clock.advance(10)
    before = len(gh.exchanges)
    assert _walk(conn, cursor)[0] == []
    assert len(gh.exchanges) - before == 2  # the issue listing and the comment listing


def test_a_cursor_from_before_comments_were_watched_starts_watching(gh: GitHubWorld) -> None:
    from syncer.models import Cursor

    gh.sim.add_issue(gh.repo, "dev-dana", "one")
    note = gh.sim.add_comment(gh.repo, "dev-dana", 1, "words")
    conn = gh.connector()
    _, cursor = _walk(conn, None)
    assert isinstance(cursor, Cursor) and cursor.comments is not None
    old = cursor.model_copy(update={"comments": None})
    gh.sim.clock.advance(10)
    assert _walk(conn, old)[0] == []
    _, upgraded = _walk(conn, old)
    assert isinstance(upgraded, Cursor) and upgraded.comments is not None
    gh.sim.state.comment_edits_move_issue = False
    gh.sim.clock.advance(10)
    with gh.sim.state.lock:
        gh.sim.state.edit_comment(gh.repo, gh.dev, note, "changed")
    assert _walk(conn, upgraded)[0] == ["1"]
