"""``ReamazeConnector.open_conversation`` (reverse creation) against the simulator: the
contact through the Contacts API, nothing emailed, the key in ``data``, and a create
whose answer was lost found by its key instead of sent twice."""

from __future__ import annotations

from connectors.base import OpensConversations
from connectors.reamaze.connector import ReamazeConnector
from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.models import NewConversation

pytest_plugins = ["reamaze_fixtures"]

NEW = NewConversation(issue_id="7", subject="Export drops rows", opening="fixed text",
                      contact_email="erin@customer.example", tags=("from-tracker",),
                      marker="rs-reverse-1")


def test_opens_for_a_new_contact_as_a_note_without_notifications(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """The contact is created first; the create asks for a note, suppresses
    notifications and carries the key."""
    assert isinstance(rz_conn, OpensConversations)
    ticket = rz_conn.open_conversation(NEW)
    posts = [r for r in rz_sim.requests if r.method == "POST"]
    assert [r.path for r in posts] == ["/api/v1/contacts", "/api/v1/conversations"]
    sent = posts[1].json["conversation"]
    assert sent["message"]["visibility"] == 1
    assert sent["message"]["suppress_notifications"] is True
    assert sent["user"] == {"email": "erin@customer.example"}
    assert ticket.marker == "rs-reverse-1" and ticket.tags == ("from-tracker",)
    assert not rz_sim.conversations[ticket.id].messages[0].notified


def test_an_existing_contact_is_not_created_again(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """A known contact is found; nothing but the conversation is written."""
    rz_sim.add_contact("erin@customer.example", "Erin")
    rz_conn.open_conversation(NEW)
    assert [r.path for r in rz_sim.requests if r.method == "POST"] == ["/api/v1/conversations"]


def test_a_create_whose_answer_was_lost_is_found_not_sent_again(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """The create landed but its answer timed out: the key is looked up and the
    conversation returned; there is one."""
    rz_sim.faults.add(timeout=True, method="POST", path_prefix="/api/v1/conversations",
                      commit=True)
    ticket = rz_conn.open_conversation(NEW)
    assert list(rz_sim.conversations) == [ticket.id]
    assert len([r for r in rz_sim.requests
                if r.method == "POST" and r.path == "/api/v1/conversations"]) == 1
