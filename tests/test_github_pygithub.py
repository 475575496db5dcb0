"""PyGithub, the client GitHub users already use, run against the GitHub simulator on a
loopback port for every call the connector makes: it must parse every answer, page
through the listings by their ``link`` headers, and see what the connector sees."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import github
import pytest
from github_support import REPO, GitHubWorld

from connectors.loopback import LoopbackServer
from syncer.models import NewComment, NewTicket, TicketState, TicketUpdate, Visibility

_OPEN: list[github.Github] = []


@pytest.fixture
def served() -> Iterator[tuple[GitHubWorld, str]]:
    gh = GitHubWorld()
    with LoopbackServer(gh.sim.handle) as server:
        yield gh, server.url
        while _OPEN:  # a kept-alive connection would hold the server's shutdown
            _OPEN.pop().close()


def client(gh: GitHubWorld, url: str) -> github.Github:
    # No client-side pacing: the simulator is local (PyGithub waits 0.25 s between requests
    # and 1 s between writes by default).
    g = github.Github(auth=github.Auth.Token(gh.dev.token), base_url=url, retry=None,
                      seconds_between_requests=None, seconds_between_writes=None)
    _OPEN.append(g)
    return g


def test_pygithub_reads_what_the_connector_writes(served: tuple[GitHubWorld, str]) -> None:
    gh, url = served
    conn = gh.connector()
    created = conn.create_ticket(NewTicket(subject="Crash on save", description="It crashes.",
                                           marker="rs-py-1", tags=("bug",),
                                           assignee_id="dev-dana"))
    conn.create_comment(created.id, NewComment(body="Copied reply", marker="rs-py-c1",
                                               visibility=Visibility.PUBLIC))
    conn.update_ticket(created.id, TicketUpdate(state=TicketState.CLOSED))

    g = client(gh, url)
    assert g.get_user().login == "dev-dana"
    repo = g.get_repo(REPO)
    assert repo.full_name == REPO and repo.permissions.push
    issue = repo.get_issue(int(created.id))
    assert issue.title == created.subject and issue.state == "closed"
    assert issue.state_reason == "completed" and issue.user.login == "sync-bot"
    assert [label.name for label in issue.labels] == ["bug"]
    assert [a.login for a in issue.assignees] == ["dev-dana"]
    assert issue.body.endswith("<!-- reamaze-sync:rs-py-1 -->")
    [comment] = list(issue.get_comments())
    assert comment.body.startswith("Copied reply") and comment.user.login == "sync-bot"


def test_the_connector_reads_what_pygithub_writes(served: tuple[GitHubWorld, str]) -> None:
    gh, url = served
    repo = client(gh, url).get_repo(REPO)
    issue = repo.create_issue(title="Seen by PyGithub", body="From the web",
                              labels=["enhancement"])
    comment = issue.create_comment("First!")
    comment.edit("First, edited")
    issue.create_comment("Second").delete()
    issue.edit(state="closed", state_reason="not_planned")
    conn = gh.connector()
    ticket, comments = conn.read_ticket(str(issue.number))
    assert ticket.subject == "Seen by PyGithub" and ticket.tags == ("enhancement",)
    assert ticket.status.state is TicketState.CLOSED and ticket.data["state_reason"] == \
        "not_planned"
    assert [(c.body, c.author.id) for c in comments] == [("First, edited", "dev-dana")]


def test_pygithub_pages_the_change_listing_like_the_connector(
        served: tuple[GitHubWorld, str]) -> None:
    gh, url = served
    for n in range(120):
        gh.sim.add_issue(gh.repo, "dev-dana", f"issue {n}")
        gh.sim.clock.advance(1)
    gh.sim.add_issue(gh.repo, "dev-dana", "a PR", pull_request=True)
    since = gh.sim.clock.current - timedelta(hours=1)
    listed = client(gh, url).get_repo(REPO).get_issues(
        state="all", sort="updated", direction="asc", since=since.astimezone(UTC))
    # raw_data: reading ``pull_request`` of an issue makes PyGithub fetch it again.
    theirs = [i.number for i in listed if "pull_request" not in i.raw_data]
    ours = [int(t.id) for page in gh.connector().iter_changes(None) for t in page.tickets]
    assert theirs == ours == list(range(1, 121))


def test_pygithub_searches_like_the_connector(served: tuple[GitHubWorld, str]) -> None:
    gh, url = served
    conn = gh.connector()
    created = conn.create_ticket(NewTicket(subject="Find me", description="text",
                                           marker="rs-search-1"))
    found = client(gh, url).search_issues(f'"rs-search-1" repo:{REPO} is:issue in:body')
    assert [i.number for i in found] == [int(created.id)]
    assert conn.find_ticket_by_marker("rs-search-1") is not None
    assert datetime.now(UTC) > found[0].created_at


def test_pygithub_as_a_github_app_accepts_the_simulators_exchange(
        served: tuple[GitHubWorld, str]) -> None:
    """The app flow as PyGithub does it (JWT, ``GET /app``, the token exchange, then the
    installation token), against the simulator the connector's app tests use."""
    gh, url = served
    app_id, installation_id, pem = gh.sim.add_app("acme-support-sync", gh.repo)
    app_auth = github.Auth.AppAuth(app_id, pem)
    integration = github.GithubIntegration(auth=app_auth, base_url=url)
    app = integration.get_app()
    assert app.slug == "acme-support-sync" and app.id == app_id
    access = integration.get_access_token(installation_id)
    assert access.token.startswith("ghs_") and access.permissions == {
        "issues": "write", "metadata": "read"}
    assert access.expires_at > datetime.now(UTC) + timedelta(minutes=55)
    g = github.Github(auth=app_auth.get_installation_auth(installation_id), base_url=url,
                      retry=None, seconds_between_requests=None, seconds_between_writes=None)
    _OPEN.append(g)
    issue = g.get_repo(REPO).create_issue(title="Filed by the app")
    assert issue.user.login == "acme-support-sync[bot]" and issue.user.type == "Bot"
    integration.close()
