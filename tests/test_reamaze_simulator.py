"""The Re:amaze simulator's HTTP surface: auth, paging, filters, sorting, validation, rules."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from pydantic import SecretStr
from reamaze_support import AGENT, BRAND, LOGIN, TOKEN, RecordingClock, make_config

from connectors.loopback import LoopbackServer
from connectors.reamaze.connector import ReamazeConnector
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.reamaze.sim.state import SimClock
from syncer.config import HttpSettings
from syncer.errors import TransientError

pytest_plugins = ["reamaze_fixtures"]


def _client(rz_sim: ReamazeSimulator, *, host: str = f"{BRAND}.reamaze.io",
            auth: tuple[str, str] | None = (LOGIN, TOKEN),
            accept: str | None = "application/json") -> httpx.Client:
    headers = {"Accept": accept} if accept else {}
    return httpx.Client(base_url=f"https://{host}/api/v1", headers=headers,
                        auth=httpx.BasicAuth(*auth) if auth else None,
                        transport=httpx.MockTransport(rz_sim.handle))


def test_credentials_are_checked(rz_sim: ReamazeSimulator) -> None:
    """Missing or wrong Basic credentials get 403 with an error body; right ones get 200."""
    assert _client(rz_sim, auth=None).get("/staff").status_code == 403
    wrong = _client(rz_sim, auth=(LOGIN, "nope")).get("/staff")
    assert wrong.status_code == 403 and "error" in wrong.json()
    assert _client(rz_sim, auth=("other@acme.example", TOKEN)).get("/staff").status_code == 403
    assert _client(rz_sim).get("/staff").status_code == 200


def test_json_is_negotiated_by_header_or_suffix(rz_sim: ReamazeSimulator) -> None:
    """Without Accept: application/json the API answers 406 unless the path ends in .json."""
    plain = _client(rz_sim, accept=None)
    assert plain.get("/staff").status_code == 406
    assert plain.get("/staff.json").status_code == 200


def test_brand_host_and_unknown_paths(rz_sim: ReamazeSimulator, rz_raw: httpx.Client) -> None:
    """Another brand's host, unknown paths, slugs and methods are JSON 404s."""
    assert _client(rz_sim, host="other.reamaze.io").get("/staff").status_code == 404
    assert _client(rz_sim, host=f"{BRAND}.reamaze.com").get("/staff").status_code == 200
    for response in (rz_raw.get("/nope"), rz_raw.get("/conversations/missing"),
                     rz_raw.delete("/conversations/missing")):
        assert response.status_code == 404 and "error" in response.json()


def test_pages_have_counters_and_an_empty_page_past_the_end(rz_sim: ReamazeSimulator,
                                                            rz_raw: httpx.Client) -> None:
    """31 conversations: page 1 holds 30, page 2 one, page 3 none, counters on every page."""
    for i in range(31):
        rz_sim.add_conversation(f"C{i}", "b", "c@x.example")
    pages = [rz_raw.get("/conversations", params={"page": p}).json() for p in (1, 2, 3)]
    assert [len(p["conversations"]) for p in pages] == [30, 1, 0]
    assert all((p["page_size"], p["page_count"], p["total_count"]) == (30, 2, 31)
               for p in pages)
    assert rz_raw.get("/conversations", params={"page": "x"}).json()["conversations"] == \
        pages[0]["conversations"]


def test_filters(rz_sim: ReamazeSimulator, rz_raw: httpx.Client) -> None:
    """Default hides archived; all/open/archived/unassigned narrow as documented."""
    rz_sim.add_conversation("Open", "b", "a@x.example")
    rz_sim.add_conversation("Done", "b", "b@x.example", status=2, assignee=AGENT)
    rz_sim.add_conversation("Archived", "b", "c@x.example", status=4)

    def slugs(**params: str) -> set[str]:
        return {c["slug"] for c in rz_raw.get("/conversations", params=params).json()[
            "conversations"]}

    assert slugs() == {"open", "done"}
    assert slugs(filter="all") == {"open", "done", "archived"}
    assert slugs(filter="open") == {"open"}
    assert slugs(filter="archived") == {"archived"}
    assert slugs(filter="unassigned") == {"open"}
    assert slugs(filter="all", **{"for": "b@x.example"}) == {"done"}


def test_sort_orders(rz_sim: ReamazeSimulator, rz_sim_clock: SimClock,
                     rz_raw: httpx.Client) -> None:
    """Default is newest created first; updated follows customers; changed follows any change."""
    for name in ("first", "second", "third"):
        rz_sim_clock.advance(10)
        rz_sim.add_conversation(name, "b", f"{name}@x.example")
    rz_sim_clock.advance(10)
    rz_sim.add_customer_message("first", "bump")
    rz_sim_clock.advance(10)
    rz_sim.set_tags("second", ["x"])

    def order(**params: str) -> list[str]:
        return [c["slug"] for c in rz_raw.get("/conversations", params=params).json()[
            "conversations"]]

    assert order() == ["third", "second", "first"]
    assert order(sort="updated") == ["first", "third", "second"]
    assert order(sort="changed") == ["second", "first", "third"]


def test_data_appears_on_single_reads_only(rz_sim: ReamazeSimulator, rz_raw: httpx.Client) -> None:
    """Custom data is rendered on GET /conversations/{slug}, not in list items."""
    rz_sim.add_conversation("With data", "b", "a@x.example", data={"k": "v"})
    [item] = rz_raw.get("/conversations").json()["conversations"]
    assert "data" not in item and "updated_at" in item
    single = rz_raw.get("/conversations/with-data").json()
    assert single["data"] == {"k": "v"} and "last_staff_message" in single
    assert single["created_at"].endswith("Z") and len(single["created_at"]) == 24


@pytest.mark.parametrize(("conversation", "field"), [
    ({"message": {"body": "b"}, "user": {"email": "a@x.example"}}, "category"),
    ({"category": "support", "user": {"email": "a@x.example"}}, "message"),
    ({"category": "support", "message": {"body": "b"}}, "user"),
    ({"category": "support", "message": {"body": "b"}, "user": {"email": "nope"}}, "user"),
    ({"category": "support", "message": {"body": "b"}, "user": {"email": "a@x.example"},
      "status": 11}, "status"),
    ({"category": "support", "message": {"body": "b"}, "user": {"email": "a@x.example"},
      "status": 5}, "hold_until"),
    ({"category": "support", "message": {"body": "b"}, "user": {"email": "a@x.example"},
      "tag_list": [1, 2]}, "tag_list"),
    ({"category": "support", "message": {"body": "b"}, "user": {"email": "a@x.example"},
      "data": {"nested": {"x": 1}}}, "data"),
])
def test_conversation_create_validation(rz_raw: httpx.Client, conversation: dict[str, object],
                                        field: str) -> None:
    """Each missing or malformed field of a create is a 422 naming that field."""
    response = rz_raw.post("/conversations", json={"conversation": conversation})
    assert response.status_code == 422
    assert field in response.json()["errors"]


def test_conversation_create_by_staff_auto_resolves(rz_sim: ReamazeSimulator,
                                                    rz_raw: httpx.Client) -> None:
    """A staff-authored create resolves (2) unless suppress_autoresolve; customers stay Open."""
    def create(email: str, **message: object) -> dict[str, object]:
        body = {"conversation": {"subject": "S", "category": "support",
                                 "message": {"body": "b", **message}, "user": {"email": email}}}
        response = rz_raw.post("/conversations", json=body)
        assert response.status_code == 201
        return response.json()  # type: ignore[no-any-return]

    assert create(AGENT)["status"] == 2
    assert create(AGENT, suppress_autoresolve=True)["status"] == 0
    created = create("newbie@x.example", suppress_notification=True)
    assert created["status"] == 0 and "newbie@x.example" in rz_sim.contacts
    assert rz_sim.conversations[str(created["slug"])].messages[0].notified is False


def test_conversation_update_rules(rz_sim: ReamazeSimulator, rz_sim_clock: SimClock,
                                   rz_raw: httpx.Client) -> None:
    """PUT accepts a bare assignee email, moves only to email channels, and a no-op keeps time."""
    slug = rz_sim.add_conversation("Move me", "b", "a@x.example")
    rz_sim.add_channel("chat", channel=6)
    rz_sim.add_channel("billing", channel=1)
    rz_sim_clock.advance(60)
    before = rz_raw.get(f"/conversations/{slug}").json()["updated_at"]
    same = rz_raw.put(f"/conversations/{slug}", json={"conversation": {"status": 0}})
    assert same.status_code == 200 and same.json()["updated_at"] == before
    moved = rz_raw.put(f"/conversations/{slug}", json={"conversation": {
        "assignee": AGENT, "category": "billing"}}).json()
    assert moved["assignee"]["email"] == AGENT and moved["category"]["slug"] == "billing"
    assert moved["updated_at"] > before
    bad = rz_raw.put(f"/conversations/{slug}", json={"conversation": {"category": "chat"}})
    assert bad.status_code == 422 and "category" in bad.json()["errors"]
    assert rz_raw.put(f"/conversations/{slug}", json={"x": 1}).status_code == 422
    broken = rz_raw.put(f"/conversations/{slug}", content=b"{not json",
                     headers={"Content-Type": "application/json"})
    assert broken.status_code == 400


def test_message_status_rules(rz_sim: ReamazeSimulator, rz_sim_clock: SimClock,
                              rz_raw: httpx.Client) -> None:
    """Staff replies resolve, customer replies reopen, notes change nothing, all bump time."""
    slug = rz_sim.add_conversation("Rules", "b", "cu@x.example")

    def post(**message: object) -> tuple[int, str]:
        rz_sim_clock.advance(1)
        assert rz_raw.post(f"/conversations/{slug}/messages",
                        json={"message": {"body": "x", **message}}).status_code == 201
        conv = rz_raw.get(f"/conversations/{slug}").json()
        return conv["status"], conv["updated_at"]

    status, t1 = post(suppress_autoresolve=True)
    assert status == 1  # Open -> Responded
    status, t2 = post(visibility=1)
    assert status == 1 and t2 > t1  # a note changes no status but is a change
    status, _ = post()
    assert status == 2  # staff reply auto-resolves
    status, _ = post(user={"email": "cu@x.example"})
    assert status == 0  # the customer reopens Done
    # The WordPress plugin's unwrapped body is accepted too.
    rz_sim_clock.advance(1)
    assert rz_raw.post(f"/conversations/{slug}/messages",
                    json={"body": "unwrapped", "visibility": 1}).status_code == 201
    assert rz_sim.conversations[slug].messages[-1].visibility == 1


def test_messages_are_listed_newest_first_and_filterable(rz_sim: ReamazeSimulator,
                                                         rz_sim_clock: SimClock,
                                                         rz_raw: httpx.Client) -> None:
    """Conversation and brand-wide message lists are newest first and filter by sender kind."""
    slug = rz_sim.add_conversation("Thread", "first", "cu@x.example")
    rz_sim_clock.advance(1)
    rz_sim.add_staff_message(slug, "second", email=AGENT)
    bodies = [m["body"] for m in rz_raw.get(f"/conversations/{slug}/messages").json()["messages"]]
    assert bodies == ["second", "first"]
    staff_only = rz_raw.get("/messages", params={"filter": "staff"}).json()["messages"]
    assert [m["body"] for m in staff_only] == ["second"]
    assert staff_only[0]["user"]["staff?"] is True
    assert staff_only[0]["conversation"]["slug"] == slug


def test_contact_notes_are_unwrapped_and_answered_in_full(rz_sim: ReamazeSimulator,
                                                         rz_raw: httpx.Client) -> None:
    """POST notes takes a bare body and answers with every note of the contact."""
    rz_sim.add_contact("n@x.example", "N")
    first = rz_raw.post("/contacts/n@x.example/notes", json={"body": "one"})
    second = rz_raw.post("/contacts/n@x.example/notes", json={"body": "two",
                                                           "creator_email": AGENT})
    assert first.status_code == 201 and [n["note"] for n in second.json()] == ["one", "two"]
    assert second.json()[1]["creator"]["email"] == AGENT
    assert rz_raw.post("/contacts/n@x.example/notes", json={}).status_code == 422
    assert len(rz_raw.get("/contacts/n@x.example/notes").json()) == 2


def test_staff_and_channels_endpoints(rz_raw: httpx.Client) -> None:
    """Staff can be created with validation; channels filter by type and read singly."""
    created = rz_raw.post("/staff", json={"staff": {"name": "New", "email": "new@acme.example",
                                                 "password": "temporary-pw"}})
    assert created.status_code == 201 and created.json()["email"] == "new@acme.example"
    dup = rz_raw.post("/staff", json={"staff": {"name": "New", "email": "new@acme.example",
                                             "password": "x"}})
    assert dup.status_code == 422 and set(dup.json()["errors"]) == {"email", "password"}
    channels = rz_raw.get("/channels", params={"channel": "email"}).json()
    assert channels["total_count"] == 1 and "page_count" not in channels
    assert rz_raw.get("/channels/support").json()["brand"]["url"] == f"{BRAND}.reamaze.com"
    assert rz_raw.get("/channels/nope").status_code == 404


def test_faults_can_skip_delay_and_limit(rz_sim: ReamazeSimulator, rz_sim_clock: SimClock,
                                         rz_raw: httpx.Client) -> None:
    """skip lets requests through first, delay_s sleeps, the minute limit sets Retry-After."""
    rule = rz_sim.faults.add(500, skip=1, times=1)
    assert rz_raw.get("/staff").status_code == 200
    assert rz_raw.get("/staff").status_code == 500 and rule.hits == 1
    start = rz_sim_clock()
    rz_sim.faults.add(delay_s=4.0)
    assert rz_raw.get("/staff").status_code == 200
    assert (rz_sim_clock() - start).total_seconds() == 4.0
    rz_sim.rate_limit(2)
    assert [rz_raw.get("/staff").status_code for _ in range(3)] == [200, 200, 429]
    limited = rz_raw.get("/staff")
    assert limited.headers["Retry-After"] == "60"
    rz_sim_clock.advance(60)
    assert rz_raw.get("/staff").status_code == 200
    with pytest.raises(ValueError):
        rz_sim.faults.add()


def test_concurrent_writers_are_serialised(rz_sim: ReamazeSimulator) -> None:
    """Messages posted from several threads at once are all stored exactly once."""
    slug = rz_sim.add_conversation("Busy", "b", "cu@x.example")

    def writer(n: int) -> None:
        client = _client(rz_sim)
        for i in range(20):
            assert client.post(f"/conversations/{slug}/messages",
                               json={"message": {"body": f"{n}-{i}", "visibility": 1}}
                               ).status_code == 201

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    messages = rz_sim.conversations[slug].messages
    assert len(messages) == 121 and len({m.seq for m in messages}) == 121


def test_served_on_loopback_for_real_http_clients() -> None:
    """Through LoopbackServer a plain httpx.Client and the connector both talk to it."""
    rz_sim = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=TOKEN)
    slug = rz_sim.add_conversation("Over the wire", "hello", "cu@x.example")
    with LoopbackServer(rz_sim.handle) as server:
        with httpx.Client(base_url=server.url, auth=(LOGIN, TOKEN),
                          headers={"Accept": "application/json"}) as client:
            listed = client.get("/api/v1/conversations.json")
        assert listed.status_code == 200
        assert [c["slug"] for c in listed.json()["conversations"]] == [slug]
        rz_conn = ReamazeConnector.from_config(
            make_config(base_url=f"{server.url}/api/v1"), SecretStr(TOKEN))
        assert rz_conn.get_ticket(slug).subject == "Over the wire"
        assert rz_conn.ticket_url(slug) == f"{server.url}/admin/conversations/{slug}"


def test_a_slow_loopback_response_times_out_and_is_retried() -> None:
    """A response slower than the client timeout is a transient failure, retried to success."""
    rz_sim = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=TOKEN, sleep=time.sleep)
    slug = rz_sim.add_conversation("Slow", "b", "cu@x.example")
    rz_sim.faults.add(delay_s=0.6, times=1)
    with LoopbackServer(rz_sim.handle) as server:
        http = HttpSettings(timeout_seconds=0.2, max_attempts=2, requests_per_minute=60_000)
        rz_clock = RecordingClock()
        rz_conn = ReamazeConnector.from_config(
            make_config(base_url=f"{server.url}/api/v1", http=http), SecretStr(TOKEN),
            clock=rz_clock)
        assert rz_conn.get_ticket(slug).id == slug
        assert len(rz_clock.sleeps) == 1
        rz_sim.faults.add(delay_s=0.6, times=2)
        with pytest.raises(TransientError, match="timeout"):
            rz_conn.get_ticket(slug)
        # Let the abandoned, delayed handlers finish while this test still owns the output.
        deadline = time.monotonic() + 5
        while len(rz_sim.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert [r.status for r in rz_sim.requests] == [200] * 4
