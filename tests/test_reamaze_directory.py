"""Re:amaze contacts, staff (users), roles and channels (collections)."""

from __future__ import annotations

import pytest
from reamaze_support import AGENT, LOGIN

from connectors.reamaze.connector import ReamazeConnector
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.reamaze.sim.state import SimClock
from syncer.errors import NotFoundError, RejectedError, TransientError
from syncer.models import NewTicket

pytest_plugins = ["reamaze_fixtures"]


def test_contacts_are_created_read_and_listed(rz_conn: ReamazeConnector,
                                              rz_sim: ReamazeSimulator) -> None:
    """A created contact reads back by email and shows up in the listing."""
    created = rz_conn.create_contact(email="ann@x.example", name="Ann", external_id="crm-7",
                                  data={"plan": "pro"})
    assert (created.id, created.email, created.name, created.data) == (
        "ann@x.example", "ann@x.example", "Ann", {"plan": "pro"})
    assert created.created_at is not None and created.created_at.tzinfo is not None
    assert rz_conn.get_contact("ann@x.example") == created
    assert rz_sim.contacts["ann@x.example"].external_id == "crm-7"
    assert [c.email for c in rz_conn.list_contacts()] == ["ann@x.example"]


def test_contact_search_is_fuzzy_but_find_is_exact(rz_conn: ReamazeConnector,
                                                   rz_sim: ReamazeSimulator) -> None:
    """q matches substrings; find_contact only returns the exact email."""
    rz_sim.add_contact("bob@x.example", "Bob")
    rz_sim.add_contact("bobby@x.example", "Bobby")
    rz_sim.add_contact("carol@x.example", "Carol", data={"tier": "gold"})
    assert {c.email for c in rz_conn.list_contacts(q="bob")} == {"bob@x.example",
                                                               "bobby@x.example"}
    found = rz_conn.find_contact("BOB@x.example")
    assert found is not None and found.email == "bob@x.example"
    assert rz_conn.find_contact("bo@x.example") is None
    assert [c.name for c in rz_conn.list_contacts(data={"tier": "gold"})] == ["Carol"]


def test_contacts_page_through_by_name(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """More than a page of contacts is listed completely, in name order."""
    for i in range(45):
        rz_sim.add_contact(f"p{i:02d}@x.example", f"Person {i:02d}")
    names = [c.name for c in rz_conn.list_contacts()]
    assert names == [f"Person {i:02d}" for i in range(45)]


def test_contact_update_changes_only_mutable_fields(rz_conn: ReamazeConnector,
                                                   rz_sim: ReamazeSimulator,
                                                   rz_sim_clock: SimClock) -> None:
    """Name, friendly name and data change; the data is merged and updated_at moves."""
    rz_sim.add_contact("dan@x.example", "Dan", data={"a": "1"})
    rz_sim_clock.advance(60)
    updated = rz_conn.update_contact("dan@x.example", name="Daniel", friendly_name="Danny",
                                  data={"b": "2"})
    assert (updated.name, updated.data) == ("Daniel", {"a": "1", "b": "2"})
    assert rz_sim.contacts["dan@x.example"].friendly_name == "Danny"
    assert updated.updated_at is not None and updated.created_at is not None
    assert updated.updated_at > updated.created_at


def test_contact_by_mobile_identity(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """A contact created by mobile number is addressed with identifier_type=mobile."""
    created = rz_conn.create_contact(mobile="+12223334444", name="Texter")
    assert created.id == "+12223334444" and created.email is None
    updated = rz_conn.update_contact("+12223334444", name="Tex", identifier_type="mobile")
    assert updated.name == "Tex"


def test_contact_errors(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """Duplicates and bad numbers are 422 RejectedErrors; unknown contacts are NotFound."""
    rz_sim.add_contact("eve@x.example", "Eve")
    with pytest.raises(RejectedError) as dup:
        rz_conn.create_contact(email="eve@x.example")
    assert "already been taken" in dup.value.body
    with pytest.raises(RejectedError) as bad:
        rz_conn.create_contact(mobile="555 1234")
    assert "E.164" in bad.value.body
    with pytest.raises(NotFoundError):
        rz_conn.get_contact("nobody@x.example")
    with pytest.raises(NotFoundError):
        rz_conn.update_contact("nobody@x.example", name="x")
    with pytest.raises(ValueError, match="email or a mobile"):
        rz_conn.create_contact(name="No identity")


def test_users_are_staff_with_roles(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """Staff become users identified by email, each with the role from its permission hash."""
    users = rz_conn.list_users()
    assert [u.id for u in users] == [LOGIN, AGENT]
    assert users[0].role is not None and users[0].role.name == "Administrator"
    assert users[0].role.permissions["manage_staff?"] is True
    roles = rz_conn.list_roles()
    assert sorted(r.name for r in roles) == ["Administrator", "Agent"]


def test_staff_listing_pages(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """Staff beyond one page are all listed, oldest first."""
    for i in range(33):
        rz_sim.add_staff(f"s{i}@acme.example", f"Staff {i}")
    users = rz_conn.list_users()
    assert len(users) == 35 and users[-1].id == "s32@acme.example"
    assert len(rz_conn.list_roles()) == 2


def test_collections_are_channels(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """Channels list as collections with their kind, in one request (no page fields)."""
    rz_sim.add_channel("chat", "Live Chat", "chat@acme.example", channel=6)
    rz_sim.add_channel("wa", "WhatsApp", "wa@acme.example", channel=15)
    before = len(rz_sim.requests)
    collections = rz_conn.list_collections()
    assert [(c.id, c.name, c.kind) for c in collections] == [
        ("support", "Support", "email"), ("chat", "Live Chat", "chat"),
        ("wa", "WhatsApp", "whatsapp")]
    assert len(rz_sim.requests) - before == 1


def test_create_ticket_uses_the_first_email_channel(rz_conn: ReamazeConnector,
                                                    rz_sim: ReamazeSimulator) -> None:
    """Without a configured channel, new conversations go to the brand's first email channel."""
    rz_sim.channels.clear()
    rz_sim.add_channel("chat", "Chat", channel=6)
    rz_sim.add_channel("bugs", "Bugs", channel=1)
    ticket = rz_conn.create_ticket(NewTicket(subject="s", description="d", marker="rs-ch"))
    assert ticket.collection is not None and ticket.collection.id == "bugs"


def test_a_contact_create_is_not_resent_after_a_lost_response(rz_conn: ReamazeConnector,
                                                              rz_sim: ReamazeSimulator) -> None:
    """A timed-out contact POST that took effect is not repeated into a 422."""
    rz_sim.faults.add(timeout=True, method="POST", commit=True)
    with pytest.raises(TransientError):
        rz_conn.create_contact(email="once@x.example", name="Once")
    assert len(rz_sim.calls("POST")) == 1
    assert rz_conn.get_contact("once@x.example").name == "Once"
