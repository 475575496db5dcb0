"""python-gitlab, the client GitLab users already use, run against the GitLab simulator on
a loopback port for every call the connector makes (the user, the project, issues listed
by ``updated_after``, got, created, edited by ``state_event``/labels/assignees; notes
listed, created internal or not, deleted; uploads; users by name): it must parse every
answer, page through the listings by their headers, and see what the connector sees."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import gitlab
import pytest
from gitlab_support import PROJECT, GitLabWorld

from connectors.loopback import LoopbackServer
from syncer.models import NewComment, NewTicket, TicketState, TicketUpdate, Visibility

_OPEN: list[gitlab.Gitlab] = []


@pytest.fixture
def served() -> Iterator[tuple[GitLabWorld, str]]:
    gl = GitLabWorld()
    with LoopbackServer(gl.sim.handle) as server:
        yield gl, server.url
        while _OPEN:  # a kept-alive connection would hold the server's shutdown
            _OPEN.pop().session.close()


def client(url: str, token: str) -> gitlab.Gitlab:
    g = gitlab.Gitlab(url.rstrip("/"), private_token=token, retry_transient_errors=False,
                      keep_base_url=True)
    _OPEN.append(g)
    return g


def test_python_gitlab_reads_what_the_connector_writes(served: tuple[GitLabWorld, str]) -> None:
    gl, url = served
    conn = gl.connector()
    created = conn.create_ticket(NewTicket(subject="Crash on save", description="It crashes.",
                                           marker="rs-py-1", tags=("bug",),
                                           assignee_id="dev-dana"))
    conn.create_comment(created.id, NewComment(body="Copied reply", marker="rs-py-c1",
                                               visibility=Visibility.PUBLIC))
    conn.create_comment(created.id, NewComment(body="Staff only", marker="rs-py-c2",
                                               visibility=Visibility.INTERNAL))
    conn.update_ticket(created.id, TicketUpdate(state=TicketState.CLOSED))

    g = client(url, gl.dev.token)
    g.auth()
    assert g.user is not None and g.user.username == "dev-dana"
    project = g.projects.get(PROJECT)
    assert project.path_with_namespace == PROJECT
    assert project.permissions["project_access"]["access_level"] == 30
    issue = project.issues.get(int(created.id))
    assert (issue.title, issue.state, issue.author["username"]) == (
        "Crash on save", "closed", "sync-bot")
    assert issue.labels == ["bug"] and [a["username"] for a in issue.assignees] == ["dev-dana"]
    assert issue.description.endswith("<!-- reamaze-sync:rs-py-1 -->")
    notes = [n for n in issue.notes.list(get_all=True, sort="asc") if not n.system]
    assert [(n.body.split("\n")[0], n.internal, n.author["username"]) for n in notes] == [
        ("Copied reply", False, "sync-bot"), ("Staff only", True, "sync-bot")]
    # A Guest's python-gitlab does not see the internal note.
    guest = client(url, gl.guest.token).projects.get(PROJECT).issues.get(int(created.id))
    assert [n.body.split("\n")[0] for n in guest.notes.list(get_all=True)
            if not n.system] == ["Copied reply"]
    [user] = g.users.list(username="dev-dana")
    assert user.id == gl.dev.id


def test_the_connector_reads_what_python_gitlab_writes(served: tuple[GitLabWorld, str]) -> None:
    gl, url = served
    project = client(url, gl.dev.token).projects.get(PROJECT)
    issue = project.issues.create({"title": "Seen by python-gitlab",
                                   "description": "From the web", "labels": ["feature"]})
    issue.notes.create({"body": "First!"})
    issue.notes.create({"body": "Between us", "internal": True})
    issue.notes.create({"body": "Second"}).delete()
    issue.state_event = "close"
    issue.labels = ["feature", "ui"]
    issue.assignee_ids = [gl.dev.id]
    issue.save()
    upload = project.upload("log.txt", filedata=b"boom")
    issue.notes.create({"body": f"Log: {upload['markdown']}"})

    ticket, comments = gl.connector().read_ticket(str(issue.iid))
    assert ticket.subject == "Seen by python-gitlab" and ticket.tags == ("feature", "ui")
    assert ticket.status.state is TicketState.CLOSED
    assert ticket.assignee is not None and ticket.assignee.id == "dev-dana"
    assert [(c.body, c.visibility, c.author.id) for c in comments] == [
        ("First!", Visibility.PUBLIC, "dev-dana"), ("Between us", Visibility.INTERNAL, "dev-dana"),
        (f"Log: {upload['markdown']}", Visibility.PUBLIC, "dev-dana")]
    assert [a.name for a in comments[-1].attachments] == ["log.txt"]
    assert upload["url"].startswith("/uploads/")


def test_python_gitlab_pages_the_change_listing_like_the_connector(
        served: tuple[GitLabWorld, str]) -> None:
    gl, url = served
    for n in range(45):
        gl.sim.add_issue(gl.project, "dev-dana", f"issue {n}")
        gl.sim.clock.advance(1)
    gl.sim.set_state(gl.project, "dev-dana", 3, "closed")
    since = gl.sim.clock.current - timedelta(hours=1)
    listed = client(url, gl.dev.token).projects.get(PROJECT).issues.list(
        updated_after=since.isoformat(), order_by="updated_at", sort="asc", scope="all",
        per_page=10, iterator=True)
    theirs = [i.iid for i in listed]
    conn = gl.connector()
    conn.feed.settings = type(conn.feed.settings)(page_size=10)
    ours = [int(t.id) for page in conn.iter_changes(None) for t in page.tickets]
    assert theirs == ours == [n for n in range(1, 46) if n != 3] + [3]


def test_python_gitlab_searches_like_the_connector(served: tuple[GitLabWorld, str]) -> None:
    gl, url = served
    conn = gl.connector()
    created = conn.create_ticket(NewTicket(subject="Find me", description="text",
                                           marker="rs-search-1"))
    found = client(url, gl.dev.token).projects.get(PROJECT).issues.list(
        search="rs-search-1", scope="all", get_all=True)
    assert [i.iid for i in found] == [int(created.id)]
    assert conn.find_ticket_by_marker("rs-search-1") is not None
