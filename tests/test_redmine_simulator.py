"""Simulator behaviour not covered by the contract suite (it cannot be provoked on a real
default instance, or it is the simulator's own test machinery)."""

from __future__ import annotations

import base64
import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from connectors.loopback import LoopbackServer
from connectors.redmine.sim.simulator import RedmineSimulator

if TYPE_CHECKING:
    from connectors.redmine.sim.state import SimProject

pytest_plugins = ["redmine_fixtures"]


def _client(sim: RedmineSimulator, key: str | None = None, **headers: str) -> httpx.Client:
    return httpx.Client(base_url="http://redmine.test", transport=httpx.MockTransport(sim.handle),
                        headers={"X-Redmine-API-Key": key or sim.admin_key, **headers})


def _project(sim: RedmineSimulator) -> SimProject:
    return sim.state.project_by_ref("sync")


def _journals(client: httpx.Client, issue_id: int) -> list[dict[str, Any]]:
    return list(client.get(f"/issues/{issue_id}.json",
                           params={"include": "journals"}).json()["issue"]["journals"])


def test_private_flag_is_dropped_for_users_configured_to_leak(
        redmine_sim: RedmineSimulator) -> None:
    """drop_private_notes makes a private note public even with set_notes_private."""
    user = redmine_sim.add_user("leaky", drop_private_notes=True)
    redmine_sim.add_member(_project(redmine_sim), user, ("Manager",))
    issue = redmine_sim.add_issue(_project(redmine_sim), "x")
    with _client(redmine_sim, user.api_key) as c:
        assert c.put(f"/issues/{issue.id}.json", json={"issue": {
            "notes": "meant private", "private_notes": True}}).status_code == 204
        assert [j["private_notes"] for j in _journals(c, issue.id)] == [False]


def test_no_op_put_bumps_updated_on_without_a_journal(redmine_sim: RedmineSimulator) -> None:
    """A PUT that changes nothing still moves updated_on (echoes look like changes)."""
    issue = redmine_sim.add_issue(_project(redmine_sim), "same")
    before = issue.updated_on
    redmine_sim.clock.advance(2)
    with _client(redmine_sim) as c:
        c.put(f"/issues/{issue.id}.json", json={"issue": {"subject": "same", "status_id": 99}})
        assert _journals(c, issue.id) == []
    assert issue.updated_on > before and issue.status_id == 1


def test_deleted_newest_journal_id_is_reused(redmine_sim: RedmineSimulator) -> None:
    """Without AUTOINCREMENT the id of a deleted newest row comes back (pitfall 20)."""
    issue = redmine_sim.add_issue(_project(redmine_sim), "x")
    with _client(redmine_sim) as c:
        c.put(f"/issues/{issue.id}.json", json={"issue": {"notes": "first"}})
        c.put(f"/issues/{issue.id}.json", json={"issue": {"notes": "second"}})
        c.put("/journals/2.json", json={"journal": {"notes": ""}})
        c.put(f"/issues/{issue.id}.json", json={"issue": {"notes": "third"}})
        assert [(j["id"], j["notes"]) for j in _journals(c, issue.id)] == [
            (1, "first"), (2, "third")]


def test_auth_by_query_key_basic_and_switch_user(redmine_sim: RedmineSimulator) -> None:
    """?key=, basic auth with login:password or key, and admin-only X-Redmine-Switch-User."""
    user = redmine_sim.add_user("jdoe", password="secret123456")
    plain = httpx.Client(base_url="http://redmine.test",
                         transport=httpx.MockTransport(redmine_sim.handle))
    assert plain.get("/users/current.json", params={"key": user.api_key}).json()["user"][
        "login"] == "jdoe"
    basic = base64.b64encode(b"jdoe:secret123456").decode()
    assert plain.get("/users/current.json", headers={"Authorization": f"Basic {basic}"}
                     ).status_code == 200
    assert plain.get("/users/current.json").status_code == 401
    with _client(redmine_sim) as c:
        c.headers["X-Redmine-Switch-User"] = "jdoe"
        assert c.get("/users/current.json").json()["user"]["login"] == "jdoe"
    with _client(redmine_sim, user.api_key) as c:
        c.headers["X-Redmine-Switch-User"] = "admin"  # ignored for non-admins
        me = c.get("/users/current.json").json()["user"]
        assert me["login"] == "jdoe" and "mail" not in me and "status" not in me


def test_faults_status_timeout_delay_and_after(redmine_sim: RedmineSimulator) -> None:
    """Injected faults answer, raise, delay, or fail the answer of a processed request."""
    slept: list[float] = []
    redmine_sim.sleep = slept.append
    issue = redmine_sim.add_issue(_project(redmine_sim), "x")
    with _client(redmine_sim) as c:
        redmine_sim.faults.add(status=503, times=1, headers={"Retry-After": "2"})
        first = c.get("/issues.json")
        assert (first.status_code, first.headers["Retry-After"]) == (503, "2")
        assert c.get("/issues.json").status_code == 200
        redmine_sim.faults.add(timeout=True, path=r"^/issues/")
        with pytest.raises(httpx.ReadTimeout):
            c.get(f"/issues/{issue.id}.json")
        redmine_sim.faults.add(delay_s=1.5, method="GET")
        assert c.get("/issues.json").status_code == 200 and slept == [1.5]
        redmine_sim.faults.add(status=500, commit=True, method="PUT")
        assert c.put(f"/issues/{issue.id}.json", json={"issue": {"notes": "landed"}}
                     ).status_code == 500
        assert [j["notes"] for j in _journals(c, issue.id)] == ["landed"]
    assert all("key" not in r.query for r in redmine_sim.requests)
    assert [r.status for r in redmine_sim.requests][:2] == [503, 200]


def test_upload_limits_and_bad_tokens(redmine_sim: RedmineSimulator) -> None:
    """Uploads over 5 MB are 422; an unknown token makes the issue update fail with 422."""
    issue = redmine_sim.add_issue(_project(redmine_sim), "x")
    with _client(redmine_sim) as c:
        big = c.post("/uploads.json", content=b"x" * (5 * 1024 * 1024 + 1),
                     headers={"Content-Type": "application/octet-stream"})
        assert big.status_code == 422
        bad = c.put(f"/issues/{issue.id}.json", json={"issue": {
            "uploads": [{"token": "1.nope", "filename": "a"}]}})
        assert (bad.status_code, bad.json()) == (422, {"errors": [
            "1 file(s) could not be saved."]})


def test_date_and_range_filters(redmine_sim: RedmineSimulator) -> None:
    """Date-only and >< range values of updated_on filter like Redmine's date_clause."""
    issue = redmine_sim.add_issue(_project(redmine_sim), "x")
    day = issue.updated_on.date().isoformat()
    stamp = issue.updated_on.strftime("%Y-%m-%dT%H:%M:%SZ")
    with _client(redmine_sim) as c:
        def total(value: str) -> int:
            return int(c.get("/issues.json", params={"updated_on": value}).json()["total_count"])

        assert total(f">={day}") == 1 and total(f"={day}") == 1
        assert total(f"><{stamp}|{stamp}") == 0  # <=T excludes sub-second times within T
        assert total("><2026-01-01|2030-01-01") == 1 and total("<=2026-01-01") == 0


def test_concurrent_writes_over_loopback_are_serialised(redmine_sim: RedmineSimulator) -> None:
    """Threads creating issues through real HTTP get distinct ids and none is lost."""
    with LoopbackServer(redmine_sim.handle) as server:
        def work(n: int) -> None:
            with httpx.Client(base_url=server.url,
                              headers={"X-Redmine-API-Key": redmine_sim.admin_key}) as c:
                for k in range(10):
                    assert c.post("/issues.json", json={"issue": {
                        "project_id": "sync", "subject": f"{n}-{k}"}}).status_code == 201

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(redmine_sim.state.issues) == list(range(1, 41))
