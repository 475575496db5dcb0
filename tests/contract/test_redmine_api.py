"""Redmine's own API, two backends: every test runs against the simulator and a real
Redmine 5.0.

The same assertions passing on both is what makes the simulator trustworthy for the
faster, fault-injecting tests elsewhere. What every tracker must do (the change feed,
finding our writes by marker, visibility, error mapping, pacing) is in
``test_tracker_contract.py``; this module holds what is Redmine's alone: its statuses and
workflow, private-note permissions, journals, uploads, error bodies and the OpenAPI shapes.
Each test uses its own project for isolation. Sleeps only happen where Redmine's
second-precision timestamps force them (the simulator advances its clock instead).
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import structlog
import yaml
from openapi_schema_validator import OAS30Validator

from syncer.errors import AuthError, NotFoundError, RejectedError
from syncer.models import NewComment, NewTicket, TicketState, TicketUpdate, Visibility

if TYPE_CHECKING:
    from redmine_fixtures import RedmineBackend

pytest_plugins = ["redmine_fixtures"]

SPEC = Path(__file__).parent.parent / "specs" / "redmine-openapi.yaml"


def mk() -> str:
    return f"rs-{uuid.uuid4().hex[:20]}"


def note(body: str, visibility: Visibility = Visibility.PUBLIC,
         marker: str | None = None) -> NewComment:
    return NewComment(body=body, visibility=visibility, marker=marker or mk())


def ticket(subject: str = "Printer on fire", description: str = "It smokes.",
           marker: str | None = None) -> NewTicket:
    return NewTicket(subject=subject, description=description, marker=marker or mk())


# -- issues -------------------------------------------------------------------------------

def test_create_and_get_round_trip_text_and_marker(redmine_backend: RedmineBackend) -> None:
    """A created issue reads back with its subject, its marker-free description and marker."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    marker = mk()
    created = conn.create_ticket(ticket("Crash on save", "Line one\nLine two", marker))
    got = conn.get_ticket(created.id)
    assert (got.subject, got.description, got.marker) == ("Crash on save", "Line one\nLine two",
                                                          marker)
    assert got.status.state is TicketState.OPEN and got.status.name == "New"
    assert got.collection is not None and got.collection.kind == "project"
    assert got.url == f"{redmine_backend.url}/issues/{created.id}"
    raw = redmine_backend.admin.issue(created.id)
    assert raw["description"] == f"Line one\r\nLine two\r\n\r\n<!-- reamaze-sync:{marker} -->"


def test_close_and_reopen_map_to_closed_and_default_status(
        redmine_backend: RedmineBackend) -> None:
    """CLOSED picks the first is_closed status, OPEN the tracker's default; both read back."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    created = conn.create_ticket(ticket())
    closed = conn.update_ticket(created.id, TicketUpdate(state=TicketState.CLOSED))
    assert (closed.status.code, closed.status.name, closed.status.state) == (
        "5", "Closed", TicketState.CLOSED)
    reopened = conn.update_ticket(created.id, TicketUpdate(state=TicketState.OPEN))
    assert (reopened.status.name, reopened.status.state) == ("New", TicketState.OPEN)
    assert redmine_backend.admin.issue(created.id)["closed_on"] is not None


def test_update_that_changes_nothing_sends_no_put(redmine_backend: RedmineBackend) -> None:
    """A state already satisfied sends no PUT, since even a no-op PUT bumps updated_on."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    created = conn.create_ticket(ticket())
    puts = conn.api.stats.by_method.get("PUT", 0)
    same = conn.update_ticket(created.id, TicketUpdate(state=TicketState.PENDING, tags=("x",)))
    assert same.status.state is TicketState.OPEN
    assert conn.api.stats.by_method.get("PUT", 0) == puts


def test_create_wanting_closed_creates_then_closes(redmine_backend: RedmineBackend) -> None:
    """Redmine 5.0 ignores a status on create, so a ticket wanted CLOSED is closed afterwards."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    new = NewTicket(subject="Done already", description="x", marker=mk(),
                    state=TicketState.CLOSED)
    assert conn.create_ticket(new).status.state is TicketState.CLOSED


def test_assignee_set_cleared_and_invalid(redmine_backend: RedmineBackend) -> None:
    """A member can be assigned and unassigned; a non-member is a 422 'Assignee is invalid'."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    member, _ = redmine_backend.new_user(project, "Developer")
    created = conn.create_ticket(ticket())
    assigned = conn.update_ticket(created.id, TicketUpdate(assignee_id=str(member["id"])))
    assert assigned.assignee is not None and assigned.assignee.id == str(member["id"])
    assert conn.update_ticket(created.id, TicketUpdate(assignee_id="")).assignee is None
    outsider = redmine_backend.admin.create_user(f"o{uuid.uuid4().hex[:8]}")
    with pytest.raises(RejectedError) as err:
        conn.update_ticket(created.id, TicketUpdate(assignee_id=str(outsider["id"])))
    assert err.value.status == 422 and "Assignee is invalid" in err.value.body


def test_workflow_refusal_is_reported_not_silent(redmine_backend: RedmineBackend) -> None:
    """Redmine answers 204 but ignores a status the workflow forbids; the connector raises."""
    project = redmine_backend.new_project()
    admin_conn = redmine_backend.connector(project)
    created = admin_conn.create_ticket(ticket())
    admin_conn.update_ticket(created.id, TicketUpdate(state=TicketState.CLOSED))
    developer, _ = redmine_backend.new_user(project, "Developer")
    conn = redmine_backend.connector(project, key=developer["api_key"])
    with pytest.raises(RejectedError, match="ignored the status change"):
        conn.update_ticket(created.id, TicketUpdate(state=TicketState.OPEN))
    assert conn.get_ticket(created.id).status.state is TicketState.CLOSED


def test_unknown_status_id_in_config_is_rejected(redmine_backend: RedmineBackend) -> None:
    """A closed_status_id that does not exist is silently ignored by Redmine; we raise."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project, closed_status_id=99)
    created = conn.create_ticket(ticket())
    with pytest.raises(RejectedError, match="ignored the status change to 99"):
        conn.update_ticket(created.id, TicketUpdate(state=TicketState.CLOSED))


def test_blank_subject_is_a_422_rejection(redmine_backend: RedmineBackend) -> None:
    """A blank subject is refused with Redmine's own message and creates nothing."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    with pytest.raises(RejectedError) as err:
        conn.create_ticket(ticket(subject="   "))
    assert err.value.status == 422 and "Subject cannot be blank" in err.value.body
    listing = redmine_backend.admin.http.get("/issues.json", params={"project_id": project,
                                                                     "status_id": "*"}).json()
    assert listing["total_count"] == 0


def test_bad_key_is_an_auth_error_naming_url_not_key(redmine_backend: RedmineBackend) -> None:
    """A wrong API key gives AuthError that names the server and 'API key', never the key."""
    project = redmine_backend.new_project()
    bad_key = "0123456789abcdef0123456789abcdef01234567"
    conn = redmine_backend.connector(project, key=bad_key)
    with pytest.raises(AuthError) as err:
        conn.check()
    assert err.value.status == 401 and err.value.body == ""
    assert redmine_backend.url in str(err.value) and "API key" in str(err.value)
    assert bad_key not in str(err.value)


def test_check_describes_the_connection(redmine_backend: RedmineBackend) -> None:
    """check() names the server and the login, and fails clearly for an unknown project."""
    project = redmine_backend.new_project()
    assert redmine_backend.connector(project).check() == (
        f"redmine {redmine_backend.url} as admin (may write private notes)")
    with pytest.raises(NotFoundError, match="does not exist"):
        redmine_backend.connector("no-such-project").check()


def test_check_fails_when_the_user_cannot_write_private_notes(
        redmine_backend: RedmineBackend) -> None:
    """A user whose role lacks set_notes_private fails `check`, saying what to grant:
    internal notes would otherwise be refused one by one after the first run."""
    project = redmine_backend.new_project()
    user, _ = redmine_backend.new_user(project, "Reporter")
    with pytest.raises(RejectedError, match="Set notes as private"):
        redmine_backend.connector(project, key=user["api_key"]).check()
    developer, _ = redmine_backend.new_user(project, "Developer")
    assert "may write private notes" in redmine_backend.connector(
        project, key=developer["api_key"]).check()


# -- comments -----------------------------------------------------------------------------

def test_public_and_private_notes_round_trip(redmine_backend: RedmineBackend) -> None:
    """Notes come back oldest first with their visibility, marker, and body without the marker."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    created = conn.create_ticket(ticket())
    m1, m2 = mk(), mk()
    public = conn.create_comment(created.id, note("Hello customer", marker=m1))
    private = conn.create_comment(created.id, note("Staff only\nsecond line",
                                                   Visibility.INTERNAL, m2))
    assert (public.visibility, private.visibility) == (Visibility.PUBLIC, Visibility.INTERNAL)
    listed = conn.list_comments(created.id)
    assert [(c.body, c.visibility, c.marker) for c in listed] == [
        ("Hello customer", Visibility.PUBLIC, m1),
        ("Staff only\nsecond line", Visibility.INTERNAL, m2)]
    assert [c.id for c in listed] == [public.id, private.id]
    assert listed[0].author.name == "Redmine Admin" and listed[0].author.id == "1"
    found = conn.find_comment_by_marker(created.id, m2)
    assert found is not None and found.id == private.id
    assert conn.find_comment_by_marker(created.id, mk()) is None
    raw = {j["id"]: j for j in redmine_backend.admin.issue(created.id)["journals"]}
    assert raw[int(private.id)]["private_notes"] is True
    assert raw[int(private.id)]["notes"] == f"Staff only\nsecond line\n\n<!-- reamaze-sync:{m2} -->"


def test_field_change_journals_are_not_comments(redmine_backend: RedmineBackend) -> None:
    """Status and assignee changes create journals without notes; they are not comments."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    created = conn.create_ticket(ticket())
    conn.update_ticket(created.id, TicketUpdate(state=TicketState.CLOSED, assignee_id="1"))
    conn.create_comment(created.id, note("the only note"))
    journals = redmine_backend.admin.issue(created.id)["journals"]
    assert len(journals) == 2
    assert journals[0]["details"] and journals[0]["notes"] == ""
    assert [c.body for c in conn.list_comments(created.id)] == ["the only note"]


def test_private_note_with_field_change_is_split_by_redmine(
        redmine_backend: RedmineBackend) -> None:
    """Redmine splits a private note sent with a field change into a public change journal
    (notes null) and a private note journal: why the connector sends notes alone."""
    project = redmine_backend.new_project()
    created = redmine_backend.admin.create_issue(project, "split me")
    redmine_backend.admin.put_issue(created["id"], notes="secret", private_notes=True,
                                    status_id=2)
    journals = redmine_backend.admin.issue(created["id"])["journals"]
    assert [(j["notes"], j["private_notes"], [d["name"] for d in j["details"]])
            for j in journals] == [(None, False, ["status_id"]), ("secret", True, [])]
    conn = redmine_backend.connector(project)
    assert [(c.body, c.visibility) for c in conn.list_comments(str(created["id"]))] == [
        ("secret", Visibility.INTERNAL)]


def test_edit_note_keeps_marker_and_visibility(redmine_backend: RedmineBackend) -> None:
    """Editing a note changes its text, keeps our marker and its private flag."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    created = conn.create_ticket(ticket())
    marker = mk()
    private = conn.create_comment(created.id, note("first", Visibility.INTERNAL, marker))
    edited = conn.update_comment(created.id, private.id, "second")
    assert (edited.id, edited.body, edited.marker, edited.visibility) == (
        private.id, "second", marker, Visibility.INTERNAL)
    with pytest.raises(NotFoundError):
        conn.update_comment(created.id, "987654", "nope")


def test_empty_note_edit_deletes_a_journal(redmine_backend: RedmineBackend) -> None:
    """PUT /journals/:id with empty notes deletes a note that has no field changes."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    created = conn.create_ticket(ticket())
    comment = conn.create_comment(created.id, note("oops"))
    with redmine_backend.raw() as raw:
        assert raw.put(f"/journals/{comment.id}.json",
                       json={"journal": {"notes": ""}}).status_code == 204
    assert conn.list_comments(created.id) == []


def test_internal_note_refused_without_set_notes_private(
        redmine_backend: RedmineBackend) -> None:
    """A user whose role lacks set_notes_private never gets to send internal content."""
    project = redmine_backend.new_project()
    created = redmine_backend.connector(project).create_ticket(ticket())
    reporter, _ = redmine_backend.new_user(project, "Reporter")
    conn = redmine_backend.connector(project, key=reporter["api_key"])
    marker = mk()
    with structlog.testing.capture_logs() as logs, pytest.raises(RejectedError,
                                                                 match="set_notes_private"):
        conn.create_comment(created.id, note("card ends 4242", Visibility.INTERNAL, marker))
    assert any(e["event"] == "redmine_private_note_refused" for e in logs)
    journals = redmine_backend.admin.issue(created.id)["journals"]
    assert all("4242" not in (j["notes"] or "") for j in journals)
    public = conn.create_comment(created.id, note("a public remark"))
    assert public.visibility is Visibility.PUBLIC


def test_role_downgrade_after_check_is_detected_and_reported(
        redmine_backend: RedmineBackend) -> None:
    """If the role loses set_notes_private after the check, the public copy is detected; a
    Reporter cannot delete notes, so the connector reports the unremoved leak loudly."""
    project = redmine_backend.new_project()
    created = redmine_backend.connector(project).create_ticket(ticket())
    user, membership = redmine_backend.new_user(project, "Developer")
    conn = redmine_backend.connector(project, key=user["api_key"])
    assert conn.guard.verdict().allowed
    redmine_backend.admin.set_member_role(int(membership["id"]), "Reporter")
    with structlog.testing.capture_logs() as logs, pytest.raises(RejectedError,
                                                                 match="could NOT be removed"):
        conn.create_comment(created.id, note("internal detail", Visibility.INTERNAL))
    assert [e["event"] for e in logs if e["log_level"] == "critical"] == [
        "visibility_leak_unremoved"]
    with pytest.raises(RejectedError, match="set_notes_private"):
        conn.create_comment(created.id, note("another internal", Visibility.INTERNAL))


# -- change feed ----------------------------------------------------------------------------

def test_updated_on_filter_is_second_precision_and_overlapping(
        redmine_backend: RedmineBackend) -> None:
    """updated_on>=T matches stored times above T-1s, so an issue shown at second S matches
    >=S+1 but not >=S+2, and <=S does not match it (shared/redmine.md pitfall 13)."""
    from datetime import datetime, timedelta

    project = redmine_backend.new_project()
    created = redmine_backend.admin.create_issue(project, "timing")
    shown = datetime.fromisoformat(created["updated_on"].replace("Z", "+00:00"))

    def count(op: str, when: datetime) -> int:
        params = {"project_id": project, "status_id": "*",
                  "updated_on": op + when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return int(redmine_backend.admin.http.get("/issues.json", params=params).json()[
            "total_count"])

    assert count(">=", shown) == 1
    assert count(">=", shown + timedelta(seconds=1)) == 1
    assert count(">=", shown + timedelta(seconds=2)) == 0
    assert count("<=", shown) == 0
    assert count("<=", shown + timedelta(seconds=1)) == 1


def test_listing_defaults_open_only_and_caps_limit(redmine_backend: RedmineBackend) -> None:
    """/issues.json lists open issues unless status_id=*, and caps limit at 100."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    keep = conn.create_ticket(ticket("open"))
    gone = conn.create_ticket(ticket("closed"))
    conn.update_ticket(gone.id, TicketUpdate(state=TicketState.CLOSED))
    http = redmine_backend.admin.http
    default = http.get("/issues.json", params={"project_id": project, "limit": 500}).json()
    assert [i["id"] for i in default["issues"]] == [int(keep.id)] and default["limit"] == 100
    everything = http.get("/issues.json", params={"project_id": project, "status_id": "*",
                                                  "sort": "updated_on:desc"}).json()
    assert [i["id"] for i in everything["issues"]] == [int(gone.id), int(keep.id)]
    assert (everything["offset"], everything["limit"], everything["total_count"]) == (0, 25, 2)


# -- attachments, users, HTTP surface -----------------------------------------------------------

def test_upload_attach_list_and_download(redmine_backend: RedmineBackend) -> None:
    """An uploaded file is attached to the issue, listed, downloadable, and not a comment."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    created = conn.create_ticket(ticket())
    data = "héllo wörld\n".encode()
    att = conn.upload_attachment(created.id, "hello.txt", "text/plain", data)
    assert (att.name, att.size, att.content_type) == ("hello.txt", len(data), "text/plain")
    assert conn.list_attachments(created.id) == [att]
    assert conn.download_attachment(att) == data
    assert conn.list_comments(created.id) == []


def test_upload_needs_octet_stream(redmine_backend: RedmineBackend) -> None:
    """Redmine 5.0.4 answers 406 with an empty body to an upload that is not octet-stream."""
    with redmine_backend.raw() as raw:
        bad = raw.post("/uploads.json", params={"filename": "a.txt"}, content=b"x",
                       headers={"Content-Type": "text/plain"})
        assert (bad.status_code, bad.content) == (406, b"")
        good = raw.post("/uploads.json", params={"filename": "a.txt"}, content=b"x",
                        headers={"Content-Type": "application/octet-stream"})
        assert good.status_code == 201 and good.json()["upload"]["token"].startswith(
            f"{good.json()['upload']['id']}.")


def test_list_users_admin_sees_all_member_sees_project(redmine_backend: RedmineBackend) -> None:
    """An admin lists every user; a non-admin gets the project's members."""
    project = redmine_backend.new_project()
    member, _ = redmine_backend.new_user(project, "Developer")
    admin_users = {u.id: u for u in redmine_backend.connector(project).list_users()}
    assert {"1", str(member["id"])} <= set(admin_users)
    assert admin_users["1"].email == "admin@example.net"
    as_member = redmine_backend.connector(project, key=member["api_key"]).list_users()
    assert [u.id for u in as_member] == [str(member["id"])]


def test_error_bodies_match_redmine(redmine_backend: RedmineBackend) -> None:
    """401 and 404 have empty bodies, an unknown route is an HTML 404, 422 lists errors."""
    project = redmine_backend.new_project()
    with redmine_backend.raw("f" * 40) as bad:
        unauthorized = bad.get("/issues.json")
        assert (unauthorized.status_code, unauthorized.content) == (401, b"")
    with redmine_backend.raw() as raw:
        missing = raw.get("/issues/987654.json")
        assert (missing.status_code, missing.content) == (404, b"")
        route = raw.get("/no/such/route.json")
        assert route.status_code == 404 and route.headers["content-type"].startswith("text/html")
        invalid = raw.post("/issues.json", json={"issue": {"project_id": project, "subject": ""}})
        assert (invalid.status_code, invalid.json()) == (422, {"errors": [
            "Subject cannot be blank"]})
        filt = raw.get("/issues.json", params={"updated_on": ">=garbage"})
        assert (filt.status_code, filt.json()) == (422, {"errors": ["Updated is invalid"]})
        switched = raw.get("/users/current.json", headers={"X-Redmine-Switch-User": "nobody-x"})
        assert switched.status_code == 412
        nowhere = raw.post("/issues.json", json={"issue": {"project_id": "no-such-project",
                                                           "subject": "x"}})
        assert (nowhere.status_code, nowhere.json()) == (422, {"errors": [
            "Project cannot be blank", "Tracker cannot be blank", "Status cannot be blank"]})
        odd = raw.post("/issues.json", json={"issue": {"project_id": project, "subject": "x",
                                                       "tracker_id": 99}})
        assert odd.status_code == 201 and odd.json()["issue"]["tracker"]["id"] == 1
        prio = raw.put(f"/issues/{odd.json()['issue']['id']}.json",
                       json={"issue": {"priority_id": 99}})
        assert (prio.status_code, prio.json()) == (422, {"errors": ["Priority cannot be blank"]})


def test_private_project_is_forbidden_to_outsiders(redmine_backend: RedmineBackend) -> None:
    """A non-member gets 403 for a private project's data and 422 when creating in it."""
    identifier = f"priv-{uuid.uuid4().hex[:8]}"
    redmine_backend.admin.create_project(identifier, public=False)
    hidden = redmine_backend.admin.create_issue(identifier, "hidden")
    outsider = redmine_backend.admin.create_user(f"o{uuid.uuid4().hex[:8]}")
    with redmine_backend.raw(outsider["api_key"]) as raw:
        assert raw.get(f"/projects/{identifier}.json").status_code == 403
        assert raw.get(f"/issues/{hidden['id']}.json").status_code == 403
        assert raw.get("/issues.json", params={"project_id": identifier}).status_code == 403
        assert raw.put(f"/issues/{hidden['id']}.json",
                       json={"issue": {"notes": "x"}}).status_code == 403
        assert raw.post("/issues.json", json={"issue": {"project_id": identifier,
                                                        "subject": "x"}}).status_code == 422
        assert raw.get("/users.json").status_code == 403
    with pytest.raises(AuthError):
        redmine_backend.connector(identifier, key=outsider["api_key"]).get_ticket(
            str(hidden["id"]))


# -- the OpenAPI spec ---------------------------------------------------------------------------

@functools.cache
def _spec() -> dict[str, Any]:
    with SPEC.open() as fh:
        loaded: dict[str, Any] = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    # Redmine 5.0 journals have no updated_on/updated_by (added in 5.1): not required here.
    journal = loaded["components"]["schemas"]["issue"]["properties"]["journals"]["items"]
    journal["required"] = [r for r in journal["required"] if r != "updated_on"]
    return loaded


def _validate(instance: Any, schema_name: str) -> None:
    spec = _spec()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    OAS30Validator(schema).validate(instance)


def test_json_matches_the_openapi_spec(redmine_backend: RedmineBackend) -> None:
    """Issue (with journals and attachments), project, attachment and error JSON validate
    against the spec's schemas (journal.updated_on relaxed: it appeared in Redmine 5.1)."""
    project = redmine_backend.new_project()
    conn = redmine_backend.connector(project)
    member, _ = redmine_backend.new_user(project, "Developer")
    created = conn.create_ticket(ticket())
    conn.update_ticket(created.id, TicketUpdate(state=TicketState.CLOSED,
                                                assignee_id=str(member["id"])))
    conn.create_comment(created.id, note("private", Visibility.INTERNAL))
    conn.upload_attachment(created.id, "a.txt", "text/plain", b"abc")
    issue = redmine_backend.admin.issue(created.id)
    _validate(issue, "issue")
    assert issue["journals"] and issue["attachments"] and "assigned_to" in issue
    for listed in redmine_backend.admin.http.get(
            "/issues.json", params={"project_id": project, "status_id": "*"}).json()["issues"]:
        _validate(listed, "issue")
    with redmine_backend.raw() as raw:
        _validate(raw.get(f"/projects/{project}.json").json()["project"], "project.summary")
        att_id = issue["attachments"][0]["id"]
        _validate(raw.get(f"/attachments/{att_id}.json").json()["attachment"], "attachment")
        _validate(raw.post("/issues.json", json={"issue": {"project_id": project}}).json(),
                  "errors")
