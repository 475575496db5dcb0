"""Redmine connector behaviour that needs the simulator: faults, leaks, guards, hygiene."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest
import structlog
from pydantic import SecretStr

from connectors.base import Connector
from connectors.http import ApiClient, build_http_client
from connectors.loopback import LoopbackServer
from connectors.redmine.connector import RedmineConnector
from syncer.errors import (
    AuthError,
    BadPayloadError,
    NotFoundError,
    OutcomeUnknownError,
    RejectedError,
    TransientError,
)
from syncer.models import Attachment, NewComment, NewTicket, TicketState, TicketUpdate, Visibility

if TYPE_CHECKING:
    from fakes import FakeClock

    from connectors.redmine.sim.simulator import RedmineSimulator

pytest_plugins = ["redmine_fixtures"]


def _note(body: str, visibility: Visibility = Visibility.PUBLIC, marker: str = "rs-n1"
          ) -> NewComment:
    return NewComment(body=body, visibility=visibility, marker=marker)


def _issue(sim: RedmineSimulator, subject: str = "Broken") -> str:
    return str(sim.add_issue(sim.state.project_by_ref("sync"), subject).id)


def _as_user(sim: RedmineSimulator, clock: FakeClock, key: str,
             handler: Callable[[httpx.Request], httpx.Response] | None = None
             ) -> RedmineConnector:
    from redmine_fixtures import SIM_URL, redmine_config

    return RedmineConnector.from_config(redmine_config(SIM_URL, "sync"), SecretStr(key),
                                        transport=httpx.MockTransport(handler or sim.handle),
                                        clock=clock, now=sim.clock.now)


def _journals_with(sim: RedmineSimulator, marker: str) -> list[int]:
    return [j.id for j in sim.state.journals.values() if j.notes and marker in j.notes]


def _writes(sim: RedmineSimulator, method: str, path_start: str) -> int:
    return sum(1 for r in sim.requests if r.method == method and r.path.startswith(path_start))


# -- retries and faults ----------------------------------------------------------------------

def test_503_twice_then_success_is_retried_without_real_sleep(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector,
        redmine_clock: FakeClock) -> None:
    """Two 503s are retried with backoff on the injected clock, then the read succeeds."""
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(status=503, times=2, path=r"^/issues/\d+\.json$")
    assert redmine_conn.get_ticket(issue_id).subject == "Broken"
    assert redmine_conn.api.stats.retries == 2 and len(redmine_clock.sleeps) == 2


def test_429_retry_after_is_honoured(redmine_sim: RedmineSimulator,
                                     redmine_conn: RedmineConnector,
                                     redmine_clock: FakeClock) -> None:
    """A 429 waits exactly the server's Retry-After before trying again."""
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(status=429, headers={"Retry-After": "7"}, path=r"^/issues/")
    redmine_conn.get_ticket(issue_id)
    assert redmine_clock.sleeps == [7.0]


def test_persistent_timeouts_end_in_transient_error(redmine_sim: RedmineSimulator,
                                                    redmine_conn: RedmineConnector) -> None:
    """Timeouts are retried up to max_attempts and then surface as TransientError."""
    issue_id = _issue(redmine_sim)
    fault = redmine_sim.faults.add(timeout=True, times=100, path=r"^/issues/")
    with pytest.raises(TransientError, match="timeout"):
        redmine_conn.get_ticket(issue_id)
    assert fault.hits == 4


def test_note_whose_response_timed_out_is_not_posted_twice(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """If the PUT landed but its answer was lost, the marker is found and nothing is resent."""
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(timeout=True, commit=True, method="PUT", path=r"^/issues/")
    with structlog.testing.capture_logs() as logs:
        comment = redmine_conn.create_comment(issue_id, _note("only once", marker="rs-once"))
    assert _journals_with(redmine_sim, "rs-once") == [int(comment.id)]
    assert _writes(redmine_sim, "PUT", "/issues/") == 1
    assert any(e["event"] == "write_found_after_error" for e in logs)


def test_note_answered_503_is_looked_for_never_sent_again(redmine_sim: RedmineSimulator,
                                                         redmine_conn: RedmineConnector,
                                                         redmine_clock: FakeClock) -> None:
    """A 503 may come after the server processed the note: it is looked for at spaced
    intervals, and when not found it is reported as unknown, not sent a second time (the
    journal keeps it pending for recovery)."""
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(status=503, method="PUT", path=r"^/issues/")
    with pytest.raises(OutcomeUnknownError):
        redmine_conn.create_comment(issue_id, _note("hello", marker="rs-retry"))
    assert _journals_with(redmine_sim, "rs-retry") == []
    assert _writes(redmine_sim, "PUT", "/issues/") == 1
    lookups = [r for r in redmine_sim.requests if r.method == "GET"
               and r.path == f"/issues/{issue_id}.json"]
    assert len(lookups) == 3 and sum(redmine_clock.sleeps) >= 10


def test_note_that_lands_while_we_wait_is_found_not_resent(redmine_sim: RedmineSimulator,
                                                           redmine_conn: RedmineConnector,
                                                           redmine_clock: FakeClock) -> None:
    """The server answers 504 but commits the note a few seconds later: a later lookup
    finds it, one journal."""
    issue_id = _issue(redmine_sim)
    held: list[httpx.Request] = []
    redmine_sim.faults.add(status=504, method="PUT", path=r"^/issues/",
                           action=held.append)
    waits = iter([False, True])
    redmine_sim.faults.add(method="GET", path=rf"^/issues/{issue_id}\.json$", times=2,
                           action=lambda _r: next(waits) and redmine_sim.handle(held[0]))
    comment = redmine_conn.create_comment(issue_id, _note("late", marker="rs-late"))
    assert _journals_with(redmine_sim, "rs-late") == [int(comment.id)]
    assert _writes(redmine_sim, "PUT", "/issues/") == 2  # ours, and the server's late commit


def test_note_rate_limited_is_sent_after_retry_after(redmine_sim: RedmineSimulator,
                                                     redmine_conn: RedmineConnector,
                                                     redmine_clock: FakeClock) -> None:
    """A 429 on the note PUT was not processed: wait Retry-After, send again, one journal."""
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(status=429, headers={"Retry-After": "3"}, method="PUT")
    redmine_conn.create_comment(issue_id, _note("hello", marker="rs-limited"))
    assert len(_journals_with(redmine_sim, "rs-limited")) == 1 and 3.0 in redmine_clock.sleeps


def test_issue_create_whose_response_was_lost_is_not_duplicated(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """A POST that created the issue but timed out is recovered by its marker."""
    redmine_sim.faults.add(timeout=True, commit=True, method="POST", path=r"^/issues\.json$")
    created = redmine_conn.create_ticket(NewTicket(subject="Once", description="d",
                                                   marker="rs-create1"))
    assert [i.id for i in redmine_sim.state.issues.values()] == [int(created.id)]
    assert created.marker == "rs-create1"


def test_persistent_write_failure_is_unknown_after_checking(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """When the note PUT fails with 502, the note is looked for, reported unknown, and
    sent only once."""
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(status=502, times=100, method="PUT")
    with pytest.raises(OutcomeUnknownError):
        redmine_conn.create_comment(issue_id, _note("never", marker="rs-never"))
    assert _journals_with(redmine_sim, "rs-never") == []
    assert _writes(redmine_sim, "PUT", "/issues/") == 1


def test_connection_refused_before_sending_is_retried_at_once(
        redmine_sim: RedmineSimulator, redmine_clock: FakeClock) -> None:
    """No connection was made, so nothing can have landed: the note is simply sent again."""
    refused = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and refused["n"] == 0:
            refused["n"] += 1
            raise httpx.ConnectError("connection refused", request=request)
        return redmine_sim.handle(request)

    conn = _as_user(redmine_sim, redmine_clock, redmine_sim.admin_key, handler=flaky)
    issue_id = _issue(redmine_sim)
    comment = conn.create_comment(issue_id, _note("again", marker="rs-again"))
    assert _journals_with(redmine_sim, "rs-again") == [int(comment.id)]


@pytest.mark.parametrize(("body", "message"), [
    (b"<html>maintenance</html>", "not JSON"),
    (b"\xff\xfe\xfd", "not UTF-8"),
    (b'{"issue": {"id": 1, "subject": "no status"}}', "malformed issue"),
    (b'{"something": "else"}', "no 'issue' object"),
    (b"[1, 2, 3]", "no 'issue' object"),
])
def test_malformed_bodies_are_bad_payload_errors(redmine_sim: RedmineSimulator,
                                                 redmine_conn: RedmineConnector,
                                                 body: bytes, message: str) -> None:
    """A 200 with a broken body raises BadPayloadError instead of crashing."""
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(status=200, body=body, path=r"^/issues/\d+\.json$",
                           headers={"Content-Type": "application/json"})
    with pytest.raises(BadPayloadError, match=message):
        redmine_conn.get_ticket(issue_id)


def test_write_answered_with_an_odd_body_still_counts_as_done(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """PUT answers are not decoded: a proxy's HTML 200 after a landed write is not an error."""
    issue_id = _issue(redmine_sim)
    redmine_sim.faults.add(status=200, commit=True, method="PUT", body=b"<html>ok</html>",
                           times=2)
    comment = redmine_conn.create_comment(issue_id, _note("hi", marker="rs-odd"))
    assert _journals_with(redmine_sim, "rs-odd") == [int(comment.id)]
    closed = redmine_conn.update_ticket(issue_id, TicketUpdate(state=TicketState.CLOSED))
    assert closed.status.state is TicketState.CLOSED


def test_huge_body_is_refused(redmine_sim: RedmineSimulator) -> None:
    """A response over the body cap is a BadPayloadError, not a memory problem."""
    from redmine_fixtures import SIM_URL, redmine_config

    client = build_http_client(SIM_URL, transport=httpx.MockTransport(redmine_sim.handle),
                               headers={"X-Redmine-API-Key": redmine_sim.admin_key})
    conn = RedmineConnector(ApiClient("redmine", client, max_body_bytes=2_000),
                            redmine_config(SIM_URL, "sync"))
    issue_id = _issue(redmine_sim)
    redmine_sim.add_note(int(issue_id), "x" * 5_000)
    with pytest.raises(BadPayloadError, match="larger than 2000 bytes"):
        conn.list_comments(issue_id)


# -- private notes: the leak guard ------------------------------------------------------------

def test_private_note_that_comes_back_public_is_removed(
        redmine_sim: RedmineSimulator, redmine_clock: FakeClock) -> None:
    """A note Redmine made public despite the permission is deleted at once and reported."""
    project = redmine_sim.state.project_by_ref("sync")
    user = redmine_sim.add_user("leaky", drop_private_notes=True)
    redmine_sim.add_member(project, user, ("Manager",))
    conn = _as_user(redmine_sim, redmine_clock, user.api_key)
    issue_id = _issue(redmine_sim)
    with structlog.testing.capture_logs() as logs, pytest.raises(
            RejectedError, match="came back public; removed"):
        conn.create_comment(issue_id, _note("internal only", Visibility.INTERNAL, "rs-leak"))
    assert _journals_with(redmine_sim, "rs-leak") == []
    removed = [e for e in logs if e["event"] == "visibility_leak_removed"]
    assert len(removed) == 1 and removed[0]["log_level"] == "error"
    puts = _writes(redmine_sim, "PUT", "/issues/")
    with pytest.raises(RejectedError, match="set_notes_private"):
        conn.create_comment(issue_id, _note("second", Visibility.INTERNAL, "rs-leak2"))
    assert _writes(redmine_sim, "PUT", "/issues/") == puts


def test_role_change_after_the_check_is_caught_and_the_note_removed(
        redmine_sim: RedmineSimulator, redmine_clock: FakeClock) -> None:
    """A role that loses set_notes_private (but may edit own notes) after the cached check
    gets its public copy deleted by the connector itself."""
    project = redmine_sim.state.project_by_ref("sync")
    base = ("view_issues", "add_issue_notes", "edit_own_issue_notes")
    helper = redmine_sim.add_role("Helper", (*base, "set_notes_private"))
    editor = redmine_sim.add_role("Editor", base)
    user = redmine_sim.add_user("helper")
    member = redmine_sim.add_member(project, user, [helper.id])
    conn = _as_user(redmine_sim, redmine_clock, user.api_key)
    issue_id = _issue(redmine_sim)
    assert conn.create_comment(issue_id, _note("ok", Visibility.INTERNAL, "rs-ok")
                               ).visibility is Visibility.INTERNAL
    member.role_ids = [editor.id]
    with pytest.raises(RejectedError, match="removed"):
        conn.create_comment(issue_id, _note("now leaks", Visibility.INTERNAL, "rs-gone"))
    assert _journals_with(redmine_sim, "rs-gone") == []
    assert len(_journals_with(redmine_sim, "rs-ok")) == 1


def test_permission_answer_is_cached_then_refreshed(redmine_sim: RedmineSimulator,
                                                    redmine_clock: FakeClock) -> None:
    """The permission lookup happens once per TTL, not once per note."""
    project = redmine_sim.state.project_by_ref("sync")
    user = redmine_sim.add_user("dev")
    redmine_sim.add_member(project, user, ("Developer",))
    conn = _as_user(redmine_sim, redmine_clock, user.api_key)
    issue_id = _issue(redmine_sim)
    for n in range(3):
        conn.create_comment(issue_id, _note(f"n{n}", Visibility.INTERNAL, f"rs-c{n}"))
    lookups = sum(1 for r in redmine_sim.requests if r.path == "/users/current.json")
    assert lookups == 1
    redmine_clock.sleep(61)
    conn.create_comment(issue_id, _note("later", Visibility.INTERNAL, "rs-later"))
    assert sum(1 for r in redmine_sim.requests if r.path == "/users/current.json") == 2


def test_non_member_cannot_send_internal_notes(redmine_sim: RedmineSimulator,
                                               redmine_clock: FakeClock) -> None:
    """Without a membership (public project) internal notes are refused up front."""
    user = redmine_sim.add_user("outsider")
    conn = _as_user(redmine_sim, redmine_clock, user.api_key)
    issue_id = _issue(redmine_sim)
    with pytest.raises(RejectedError, match="not a member"):
        conn.create_comment(issue_id, _note("x", Visibility.INTERNAL))
    assert conn.create_comment(issue_id, _note("public is fine")).visibility is Visibility.PUBLIC


def test_admin_needs_no_role_lookup(redmine_sim: RedmineSimulator,
                                    redmine_conn: RedmineConnector) -> None:
    """An administrator may set notes private; no /roles request is made."""
    verdict = redmine_conn.guard.verdict()
    assert verdict.allowed and "administrator" in verdict.reason
    assert not any(r.path.startswith("/roles/") for r in redmine_sim.requests)


def test_edit_refuses_to_blank_a_note(redmine_sim: RedmineSimulator,
                                      redmine_conn: RedmineConnector) -> None:
    """Blanking a note would delete it in Redmine, so an empty edit is refused."""
    issue_id = _issue(redmine_sim)
    journal = redmine_sim.add_note(int(issue_id), "a human note")
    with pytest.raises(RejectedError, match="blank"):
        redmine_conn.update_comment(issue_id, str(journal.id), "  \n")
    assert redmine_sim.state.journals[journal.id].notes == "a human note"


# -- hygiene ---------------------------------------------------------------------------------

def test_key_travels_in_the_header_and_never_in_logs_or_errors(
        redmine_sim: RedmineSimulator) -> None:
    """Requests carry X-Redmine-API-Key and Accept JSON; no log event or error shows the key."""
    from fakes import FakeClock
    from redmine_fixtures import SIM_URL, redmine_config

    seen: list[httpx.Request] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return redmine_sim.handle(request)

    conn = RedmineConnector.from_config(redmine_config(SIM_URL, "sync"),
                                        SecretStr(redmine_sim.admin_key),
                                        transport=httpx.MockTransport(spy), clock=FakeClock(),
                                        now=redmine_sim.clock.now)
    with structlog.testing.capture_logs() as logs:
        conn.check()
        list(conn.iter_changes(None))
        redmine_sim.faults.add(status=403, path=r"^/issues/")
        with pytest.raises(AuthError) as err:
            conn.get_ticket("1")
    assert all(r.headers["X-Redmine-API-Key"] == redmine_sim.admin_key for r in seen)
    assert all(r.headers["Accept"] == "application/json" for r in seen)
    assert all("key=" not in str(r.url) for r in seen)
    assert redmine_sim.admin_key not in repr(logs) and redmine_sim.admin_key not in str(err.value)


def test_feed_query_is_percent_encoded_on_the_wire(redmine_sim: RedmineSimulator,
                                                   redmine_conn: RedmineConnector) -> None:
    """The >= of updated_on is sent as %3E%3D (puma rejects it raw)."""
    redmine_sim.add_issue(redmine_sim.state.project_by_ref("sync"), "x")
    redmine_sim.clock.advance(5)
    raw: list[bytes] = []
    inner = redmine_conn.api.client._transport  # the MockTransport from the fixture

    class Spy(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            raw.append(request.url.raw_path)
            return inner.handle_request(request)

    redmine_conn.api.client._transport = Spy()
    cursor = list(redmine_conn.iter_changes(None))[-1].checkpoint
    list(redmine_conn.iter_changes(cursor))
    assert b"updated_on=%3E%3D" in raw[-1] and b">=" not in raw[-1]


def test_ids_are_validated_before_any_request(redmine_sim: RedmineSimulator,
                                              redmine_conn: RedmineConnector) -> None:
    """Non-numeric issue ids and odd markers never reach the server."""
    with pytest.raises(NotFoundError):
        redmine_conn.get_ticket("1/../../users")
    with pytest.raises(ValueError, match="not a sync marker"):
        redmine_conn.create_comment("1", _note("x", marker="rs-x --> <b>hi</b>"))
    with pytest.raises(RejectedError, match="numeric"):
        redmine_conn.update_ticket(_issue(redmine_sim), TicketUpdate(assignee_id="bob"))
    assert not any(r.method in ("PUT", "POST") for r in redmine_sim.requests)


def test_download_uses_our_base_url_only(redmine_sim: RedmineSimulator,
                                         redmine_conn: RedmineConnector) -> None:
    """An attachment URL on another host is fetched from our Redmine, so the key stays home."""
    issue_id = _issue(redmine_sim)
    att = redmine_conn.upload_attachment(issue_id, "a.txt", "text/plain", b"data")
    foreign = att.model_copy(update={"url": "http://evil.example/attachments/download/1/a.txt"})
    assert redmine_conn.download_attachment(foreign) == b"data"
    with pytest.raises(RejectedError):
        redmine_conn.download_attachment(Attachment(name="x", url="http://evil.example/x"))


def test_capabilities_follow_text_formatting(redmine_sim: RedmineSimulator) -> None:
    """Markers count as hidden markdown only under common_mark, and text from outside is
    escaped for the configured text format; the rest is fixed."""
    from redmine_fixtures import SIM_URL, redmine_config

    def caps(fmt: str) -> tuple[bool, str, bool, bool, bool]:
        conn = RedmineConnector.from_config(redmine_config(SIM_URL, "sync", text_formatting=fmt),
                                            SecretStr("k" * 40),
                                            transport=httpx.MockTransport(redmine_sim.handle))
        assert isinstance(conn, Connector)
        c = conn.capabilities
        return c.markdown_markers, c.markup, c.private_comments, c.labels, c.attachments_upload

    assert caps("common_mark") == (True, "common_mark", True, False, True)
    assert caps("textile") == (False, "textile", True, False, True)


def test_non_admin_list_users_returns_members_only(redmine_sim: RedmineSimulator,
                                                   redmine_clock: FakeClock) -> None:
    """A non-admin cannot read /users.json (403), so members of the project are returned."""
    project = redmine_sim.state.project_by_ref("sync")
    dev, rep = redmine_sim.add_user("dev"), redmine_sim.add_user("rep")
    redmine_sim.add_member(project, dev, ("Developer",))
    redmine_sim.add_member(project, rep, ("Reporter",))
    users = _as_user(redmine_sim, redmine_clock, dev.api_key).list_users()
    assert sorted((u.id, u.name) for u in users) == [(str(dev.id), "Dev User"),
                                                     (str(rep.id), "Rep User")]


def test_works_over_real_http_on_loopback(redmine_sim: RedmineSimulator) -> None:
    """The simulator served on 127.0.0.1 drives the connector through real sockets."""
    from fakes import FakeClock
    from redmine_fixtures import redmine_config

    with LoopbackServer(redmine_sim.handle) as server:
        conn = RedmineConnector.from_config(redmine_config(server.url, "sync"),
                                            SecretStr(redmine_sim.admin_key), clock=FakeClock(),
                                            now=redmine_sim.clock.now)
        created = conn.create_ticket(NewTicket(subject="Over HTTP", description="d",
                                               marker="rs-http"))
        conn.create_comment(created.id, _note("private", Visibility.INTERNAL, "rs-http-n"))
        conn.update_ticket(created.id, TicketUpdate(state=TicketState.CLOSED))
        redmine_sim.clock.advance(5)
        first = list(conn.iter_changes(None))
        assert [t.id for p in first for t in p.tickets] == [created.id]
        assert [t for p in conn.iter_changes(first[-1].checkpoint) for t in p.tickets] == []
        att = conn.upload_attachment(created.id, "f.bin", "application/octet-stream", b"\0\1")
        assert att.url is not None and att.url.startswith(server.url)
        conn.close()


def test_read_ticket_gets_the_issue_and_its_notes_in_one_request(
        redmine_conn: Connector, redmine_sim: RedmineSimulator) -> None:
    """read_ticket answers what get_ticket + list_comments do, with a single GET."""
    issue_id = _issue(redmine_sim)
    redmine_conn.create_comment(issue_id, _note("first", marker="rs-read1"))
    before = len(redmine_sim.requests)
    ticket, comments = redmine_conn.read_ticket(issue_id)
    assert len(redmine_sim.requests) - before == 1
    assert ticket == redmine_conn.get_ticket(issue_id)
    assert comments == redmine_conn.list_comments(issue_id)
    assert [c.body for c in comments] == ["first"]


# -- files with a note ----------------------------------------------------------------------

def test_files_go_with_a_public_note_in_one_journal_and_never_with_an_internal_one(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """The connector itself refuses to upload an internal note's files (Redmine's files
    have no private flag), whatever its caller hands it."""
    from syncer.models import FileData

    issue_id = _issue(redmine_sim)
    files = (FileData(name="log.txt", content_type="text/plain", data=b"trace\n"),)
    redmine_conn.create_comment(issue_id, NewComment(
        body="internal", visibility=Visibility.INTERNAL, marker="rs-f1", files=files))
    assert _writes(redmine_sim, "POST", "/uploads.json") == 0
    redmine_conn.create_comment(issue_id, NewComment(
        body="public", visibility=Visibility.PUBLIC, marker="rs-f2", files=files))
    assert _writes(redmine_sim, "POST", "/uploads.json") == 1
    [att] = redmine_sim.state.attachments.values()
    assert (att.filename, att.data, att.container_id) == ("log.txt", b"trace\n", int(issue_id))
    [journal] = [j for j in redmine_sim.state.journals.values() if j.notes and "public" in j.notes]
    assert [d["new_value"] for d in journal.details] == ["log.txt"]
