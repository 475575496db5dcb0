"""The GitLab connector against its simulator: internal notes (refused below Reporter,
read back, removed when they came back public, on old GitLab too), pagination without
``x-total``, rate limits, roles that drop fields, uploads, ``check`` and the GitLab
markdown escaper."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from gitlab_support import PROJECT, GitLabWorld
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from connectors.gitlab import GitLabConnector
from connectors.gitlab.config import GitLabConfig
from connectors.gitlab.sim import GitLabSimulator
from connectors.gitlab.sim.state import GUEST, PLANNER, REPORTER
from syncer.errors import AuthError, LeakError, PrivacyUnavailableError, RejectedError
from syncer.markup import escape, escape_glfm
from syncer.models import (
    Attachment,
    FileData,
    NewComment,
    NewTicket,
    TicketUpdate,
    Visibility,
)
from syncer.render import neutralise_mentions

ZWSP = "\u200b"


def mk() -> str:
    return f"rs-{uuid.uuid4().hex[:20]}"


def note(body: str, visibility: Visibility = Visibility.PUBLIC, **kw: object) -> NewComment:
    return NewComment(body=body, visibility=visibility, marker=mk(), **kw)  # type: ignore[arg-type]


def issue(gl: GitLabWorld) -> str:
    return gl.connector().create_ticket(NewTicket(subject="Bug", description="d",
                                                  marker=mk())).id


def note_posts(gl: GitLabWorld) -> int:
    return sum(1 for e in gl.writes()
               if e.request.method == "POST" and e.request.url.path.endswith("/notes"))


# -- internal notes ---------------------------------------------------------------------------

def test_an_internal_note_is_sent_internal_and_read_back() -> None:
    gl = GitLabWorld()
    iid = issue(gl)
    made = gl.connector().create_comment(iid, note("card 4242", Visibility.INTERNAL))
    assert made.visibility is Visibility.INTERNAL
    [stored] = gl.notes(int(iid))
    assert stored.internal
    reads = [e for e in gl.exchanges if e.request.method == "GET"
             and e.request.url.path.endswith(f"/notes/{made.id}")]
    assert len(reads) == 1  # the read-back of the note on its own


def test_below_reporter_an_internal_note_is_refused_before_anything_is_sent() -> None:
    gl = GitLabWorld()
    iid = issue(gl)
    gl.sim.grant(gl.project, gl.bot.username, PLANNER)
    conn = gl.connector()
    with pytest.raises(PrivacyUnavailableError, match="Reporter"):
        conn.create_comment(iid, note("card 4242", Visibility.INTERNAL))
    assert note_posts(gl) == 0 and gl.notes(int(iid)) == []


def test_a_role_lost_after_the_check_leaks_one_note_which_is_removed_at_once() -> None:
    """The verdict is cached: a role taken away meanwhile makes GitLab drop ``internal``
    silently. The read-back sees it, deletes the note and stops trying."""
    gl = GitLabWorld()
    iid = issue(gl)
    conn = gl.connector()
    conn.create_comment(iid, note("first", Visibility.INTERNAL))
    gl.sim.grant(gl.project, gl.bot.username, GUEST)  # GitLab drops internal for Guests
    with pytest.raises(LeakError) as leak:
        conn.create_comment(iid, note("SECRET", Visibility.INTERNAL))
    assert leak.value.removed
    assert not any("SECRET" in n.body for n in gl.notes(int(iid)))
    with pytest.raises(PrivacyUnavailableError):
        conn.create_comment(iid, note("SECRET again", Visibility.INTERNAL))


@pytest.mark.parametrize(("flag", "kept"), [("internal", True), ("confidential", True),
                                            (None, False)])
def test_which_gitlab_versions_can_keep_a_note_internal(flag: str | None, kept: bool) -> None:
    """GitLab since the rename answers ``internal``; before it only ``confidential``;
    before internal notes neither, and there the copy is removed and reported."""
    gl = GitLabWorld(sim=GitLabSimulator(notes_flag=flag))  # type: ignore[arg-type]
    iid = issue(gl)
    conn = gl.connector()
    if kept:
        assert conn.create_comment(iid, note("x", Visibility.INTERNAL)).visibility is \
            Visibility.INTERNAL
        assert [c.visibility for c in conn.list_comments(iid)] == [Visibility.INTERNAL]
    else:
        with pytest.raises(LeakError) as leak:
            conn.create_comment(iid, note("x", Visibility.INTERNAL))
        assert leak.value.removed and gl.notes(int(iid)) == []
        with pytest.raises(PrivacyUnavailableError, match="without an internal flag"):
            conn.create_comment(iid, note("y", Visibility.INTERNAL))
        assert note_posts(gl) == 1


def test_a_leak_that_cannot_be_removed_says_so() -> None:
    gl = GitLabWorld(sim=GitLabSimulator(notes_flag=None))
    iid = issue(gl)
    gl.sim.faults.add(status=500, times=None, method="DELETE")
    with pytest.raises(LeakError) as leak:
        gl.connector().create_comment(iid, note("x", Visibility.INTERNAL))
    assert not leak.value.removed and "by hand" in leak.value.message


def test_system_notes_are_no_comments_and_internal_ones_come_back_internal() -> None:
    gl = GitLabWorld()
    iid = int(issue(gl))
    gl.sim.add_note(gl.project, "dev-dana", iid, "public")
    gl.sim.add_note(gl.project, "dev-dana", iid, "between us", internal=True)
    gl.sim.set_state(gl.project, "dev-dana", iid, "closed")
    assert gl.notes(iid, system=True)
    comments = gl.connector().list_comments(str(iid))
    assert [(c.body, c.visibility) for c in comments] == [
        ("public", Visibility.PUBLIC), ("between us", Visibility.INTERNAL)]


# -- listings ---------------------------------------------------------------------------------

def test_notes_are_all_read_when_gitlab_leaves_out_x_total() -> None:
    """Over ``count_limit`` GitLab sends no ``x-total`` and no ``rel="last"``: the
    connector follows ``x-next-page``/``rel="next"`` all the same."""
    gl = GitLabWorld(sim=GitLabSimulator(count_limit=5))
    iid = int(issue(gl))
    for n in range(230):
        gl.sim.add_note(gl.project, "dev-dana", iid, f"n{n}")
    comments = gl.connector().list_comments(str(iid))
    assert [c.body for c in comments] == [f"n{n}" for n in range(230)]
    pages = [e for e in gl.exchanges if e.request.url.path.endswith("/notes")]
    assert len(pages) == 3 and "x-total" not in pages[0].response.headers


def test_the_feed_asks_gitlab_for_every_state_by_update_time() -> None:
    gl = GitLabWorld()
    conn = gl.connector()
    iid = issue(gl)
    conn.update_ticket(iid, TicketUpdate(state="closed"))  # type: ignore[arg-type]
    pages = list(conn.iter_changes(None))
    assert [t.id for p in pages for t in p.tickets] == [iid]
    query = next(e.request.url.params for e in gl.exchanges
                 if e.request.url.path.endswith("/issues") and e.request.method == "GET")
    assert (query["order_by"], query["sort"], query["scope"]) == ("updated_at", "asc", "all")
    assert "state" not in query


# -- rate limits ------------------------------------------------------------------------------

def test_the_note_creation_limit_is_waited_out_and_every_note_lands_once() -> None:
    gl = GitLabWorld(sim=GitLabSimulator(notes_per_minute=2))
    iid = issue(gl)
    batch = gl.connector().create_comments(iid, [note(f"p{n}") for n in range(4)])
    assert batch.error is None
    assert [n.body.split("\n")[0] for n in gl.notes(int(iid))] == ["p0", "p1", "p2", "p3"]
    assert any(s >= 30 for s in gl.clock.sleeps)  # Retry-After of the minute window


def test_a_429_without_retry_after_waits_for_ratelimit_reset() -> None:
    gl = GitLabWorld()
    iid = issue(gl)
    reset = int(gl.sim.clock.current.timestamp())  # the sim's clock is an hour behind
    gl.sim.faults.add(status=429, method="GET", headers={"RateLimit-Reset": str(reset)})
    conn = gl.connector()
    assert conn.get_ticket(iid).id == iid
    assert gl.clock.sleeps == [1.0]  # a reset already past: the one-second floor


def test_the_default_write_budget_is_gitlab_coms_note_limit() -> None:
    cfg = GitLabConfig.model_validate({"kind": "gitlab", "project": PROJECT})
    assert (cfg.http.requests_per_minute, cfg.http.writes_per_minute) == (2000, 60)


# -- fields -----------------------------------------------------------------------------------

def test_labels_assignee_and_state_round_trip() -> None:
    gl = GitLabWorld()
    conn = gl.connector()
    made = conn.create_ticket(NewTicket(subject="s", description="d", marker=mk(),
                                        tags=("bug",), assignee_id="dev-dana"))
    assert made.tags == ("bug",) and made.assignee is not None
    after = conn.update_ticket(made.id, TicketUpdate(tags=("bug", "ui"), assignee_id="",
                                                     state="closed"))  # type: ignore[arg-type]
    assert (after.tags, after.assignee, after.status.code) == (("bug", "ui"), None, "closed")
    body = next(json.loads(e.request.content) for e in reversed(gl.writes())
                if e.request.method == "PUT")
    assert (body["state_event"], body["assignee_ids"]) == ("close", [])


def test_a_guest_token_s_dropped_labels_are_an_error_not_a_silent_no_op() -> None:
    gl = GitLabWorld()
    iid = issue(gl)
    gl.sim.grant(gl.project, gl.bot.username, GUEST)
    with pytest.raises(RejectedError, match="labels"):
        gl.connector().update_ticket(iid, TicketUpdate(tags=("bug",)))


# -- attachments ------------------------------------------------------------------------------

def test_uploads_go_to_the_project_and_links_read_back_as_attachments() -> None:
    gl = GitLabWorld()
    iid = issue(gl)
    conn = gl.connector()
    att = conn.upload_attachment(iid, "log.txt", "text/plain", b"boom")
    assert att.url is not None and att.url.startswith(f"https://gitlab.com/{PROJECT}/uploads/")
    [(name, data)] = gl.project.uploads.values()
    assert (name, data) == ("log.txt", b"boom")
    made = conn.create_comment(iid, note("see file", attachments=(att,)))
    assert [a.name for a in made.attachments] == ["log.txt"]
    # Files handed with a public copy are uploaded and linked; a file elsewhere is left to
    # the engine's own list of the message's files.
    linked = conn.create_comment(iid, note("with a file", files=(
        FileData(name="shot [1].png", content_type="image/png", data=b"\x89PNG"),),
        attachments=(Attachment(name="shot [1].png", url="https://x.example/a.png"),)))
    assert "[shot \\[1\\].png](/uploads/" in linked.body
    assert "x.example" not in linked.body
    assert sorted(data for _, data in gl.project.uploads.values()) == [b"boom", b"\x89PNG"]
    internal = conn.create_comment(iid, note("internal with a file", Visibility.INTERNAL, files=(
        FileData(name="secret.txt", data=b"s"),)))
    assert "/uploads/" not in internal.body and len(gl.project.uploads) == 2


# -- check, secrets ---------------------------------------------------------------------------

def test_check_names_the_role_that_is_missing() -> None:
    gl = GitLabWorld()
    assert "Reporter" in gl.connector().check()
    gl.sim.grant(gl.project, gl.bot.username, PLANNER)
    with pytest.raises(RejectedError, match="internal notes need Reporter"):
        gl.connector().check()
    gl.sim.grant(gl.project, gl.bot.username, 0)
    with pytest.raises(Exception, match="does not exist or is not visible to sync-bot"):
        gl.connector().check()


def test_the_token_goes_in_private_token_and_never_into_errors() -> None:
    gl = GitLabWorld()
    conn = gl.connector()
    conn.check()
    assert gl.exchanges[0].request.headers["private-token"] == gl.bot.token
    gl.sim.faults.add(status=401, times=None, method="GET")
    with pytest.raises(AuthError) as denied:
        conn.get_ticket("1")
    assert gl.bot.token not in str(denied.value)
    assert REPORTER  # the roles the sim knows


# -- markup -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "broken"), [
    ("see #12", "#" + ZWSP + "12"),
    ("merge !34", "!" + ZWSP + "34"),
    ("label ~bug", "~" + ZWSP + "bug"),
    ('label ~"two words"', "~" + ZWSP + '"'),
    ("milestone %v1.0", "%" + ZWSP + "v1"),
    ("epic &5", "&" + ZWSP + "5"),
    ("snippet $6", "$" + ZWSP + "6"),
    ("other group/project#1", "#" + ZWSP + "1"),
    ("iteration *iteration:3", "*" + ZWSP + "iteration"),
    ("[vulnerability:1]", "[" + ZWSP + "vulnerability"),
])
def test_gitlab_references_from_customers_link_nothing(text: str, broken: str) -> None:
    assert broken in escape("glfm", text)


def test_mentions_of_users_and_groups_ping_nobody() -> None:
    out = neutralise_mentions(escape("glfm", "ping @dana and @acme/devs"))
    assert "@dana" not in out and "@acme" not in out


@given(st.text(max_size=80))
def test_the_escaper_only_adds_invisible_characters_and_backslashes(text: str) -> None:
    out = escape_glfm(text.replace("\r", ""))
    assert out.replace(ZWSP, "").replace("\\", "") .count("~") == text.count("~")


def test_an_issue_past_the_users_newest_hundred_is_found_through_search() -> None:
    """Crash recovery: the newest-issues page is complete for most users (no search
    then); past a hundred issues, GitLab's search over descriptions finds the old one."""
    gl = GitLabWorld()
    conn = gl.connector()
    marker = mk()
    old = conn.create_ticket(NewTicket(subject="old", description="d", marker=marker))
    for n in range(101):
        gl.sim.add_issue(gl.project, "sync-bot", f"later {n}")
    found = conn.find_ticket_by_marker(marker)
    assert found is not None and found.id == old.id
    searched = [e for e in gl.exchanges if e.request.url.params.get("search") == marker]
    assert len(searched) == 1
    fresh = GitLabWorld()
    assert fresh.connector().find_ticket_by_marker(marker) is None
    assert not any("search" in e.request.url.params for e in fresh.exchanges)


def test_pages_are_followed_by_x_next_page_when_there_is_no_link_header() -> None:
    """Some proxies drop ``link``; ``x-next-page`` alone still leads through the list."""
    gl = GitLabWorld()
    iid = int(issue(gl))
    for n in range(150):
        gl.sim.add_note(gl.project, "dev-dana", iid, f"n{n}")

    def without_link(request: httpx.Request) -> httpx.Response:
        answer = gl.sim.handle(request)
        answer.read()
        headers = {k: v for k, v in answer.headers.items() if k.lower() != "link"}
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)

    conn = GitLabConnector.from_config(gl.config(), SecretStr(gl.bot.token),
                                       transport=httpx.MockTransport(without_link),
                                       clock=gl.clock)
    assert [c.body for c in conn.list_comments(str(iid))] == [f"n{n}" for n in range(150)]


def test_reamaze_sync_check_reports_the_gitlab_connection_and_a_missing_role() -> None:
    """`check` through the engine's own path: the token, the project, the role, and the
    usernames of ``staff_to_user`` looked up among the project's members."""
    from gitlab_support import World

    from syncer.check import run_check

    w = World(staff_to_user={"jane@acme.example": "dev-dana"})

    def run() -> tuple[list[str], int]:
        report = run_check(w.config, environ=w.environ, transports={
            "reamaze": httpx.MockTransport(w.reamaze.handle), "gl": w.gl.transport()},
            clock=w.gl.clock)
        return report.lines + report.problems, report.exit_code

    lines, code = run()
    assert code == 0 and any("gitlab acme/app as sync-bot (Reporter" in line for line in lines)
    w.gl.sim.grant(w.gl.project, w.gl.bot.username, PLANNER)
    lines, code = run()
    assert code != 0 and any("internal notes need Reporter" in line for line in lines)


def test_an_edited_internal_note_keeps_its_marker_and_stays_internal() -> None:
    gl = GitLabWorld()
    iid = issue(gl)
    conn = gl.connector()
    made = conn.create_comment(iid, note("first", Visibility.INTERNAL))
    edited = conn.update_comment(iid, made.id, "second")
    assert (edited.body, edited.marker, edited.visibility) == (
        "second", made.marker, Visibility.INTERNAL)
    conn.delete_comment(iid, made.id)
    assert conn.list_comments(iid) == []
