"""Re:amaze conversations as tickets, through the simulator."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from reamaze_support import AGENT, LOGIN, RecordingClock, make_connector

from connectors.base import Connector
from connectors.reamaze.connector import ReamazeConnector
from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.errors import NotFoundError, RejectedError
from syncer.models import NewTicket, TicketState, TicketUpdate

pytest_plugins = ["reamaze_fixtures"]


def test_connector_satisfies_the_protocol(rz_conn: ReamazeConnector) -> None:
    """The connector is a Connector with Re:amaze's declared capabilities."""
    assert isinstance(rz_conn, Connector)
    assert rz_conn.name == "reamaze"
    caps = rz_conn.capabilities
    assert (caps.private_comments, caps.edit_comments, caps.labels, caps.assignee,
            caps.attachments_upload) == (True, False, True, True, False)


def test_get_ticket_maps_every_field(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """A single read carries subject, body, status, tags, people, channel, data and URL."""
    slug = rz_sim.add_conversation("Printer on fire!", "It is burning", "cu@x.example",
                                customer_name="Cu Stomer", tags=["bug", "urgent"],
                                data={"order": 42}, assignee=AGENT)
    ticket = rz_conn.get_ticket(slug)
    assert slug == "printer-on-fire"
    assert ticket.id == slug and ticket.subject == "Printer on fire!"
    assert ticket.description == "It is burning"
    assert (ticket.status.code, ticket.status.state) == ("0", TicketState.OPEN)
    assert ticket.tags == ("bug", "urgent")
    assert ticket.assignee is not None and ticket.assignee.id == AGENT
    assert ticket.contact is not None and ticket.contact.email == "cu@x.example"
    assert ticket.contact.name == "Cu Stomer"
    assert ticket.collection is not None and ticket.collection.id == "support"
    assert ticket.collection.kind == "email"
    assert ticket.data == {"order": "42"}
    assert ticket.url == "https://acme.reamaze.com/admin/conversations/printer-on-fire"
    assert ticket.created_at.tzinfo is not None and ticket.marker is None


def test_slugs_are_unique_for_equal_subjects(rz_conn: ReamazeConnector,
                                             rz_sim: ReamazeSimulator) -> None:
    """Two conversations with one subject get distinct slugs and stay separately readable."""
    a = rz_sim.add_conversation("Help", "first", "a@x.example")
    b = rz_sim.add_conversation("Help", "second", "b@x.example")
    assert a != b
    assert rz_conn.get_ticket(b).description == "second"


def test_unknown_slug_is_not_found(rz_conn: ReamazeConnector) -> None:
    """Reading a conversation that does not exist raises NotFoundError with its slug."""
    with pytest.raises(NotFoundError) as err:
        rz_conn.get_ticket("nope")
    assert err.value.object_id == "nope" and err.value.status == 404


def test_list_tickets_pages_through_everything(rz_conn: ReamazeConnector,
                                               rz_sim: ReamazeSimulator) -> None:
    """Listing walks 30-item pages until the end, archived conversations included."""
    for i in range(65):
        rz_sim.add_conversation(f"Issue {i}", "b", f"c{i}@x.example", status=4 if i == 3 else 0)
    tickets = list(rz_conn.list_tickets())
    assert len(tickets) == 65 and len({t.id for t in tickets}) == 65
    assert len(rz_sim.calls("GET", "/api/v1/conversations")) == 3
    assert len(list(rz_conn.list_tickets(filter="open"))) == 64


def test_list_tickets_has_no_duplicates_when_pages_shift(rz_conn: ReamazeConnector,
                                                         rz_sim: ReamazeSimulator) -> None:
    """A conversation created mid-listing shifts newest-first pages without doubling items."""
    for i in range(40):
        rz_sim.add_conversation(f"Issue {i}", "b", f"c{i}@x.example")

    def arrive(request: object) -> None:
        if "page=2" in str(getattr(request, "url", "")) and "late" not in rz_sim.conversations:
            rz_sim.add_conversation("Late", "b", "l@x.example")

    rz_sim.before_request.append(arrive)
    ids = [t.id for t in rz_conn.list_tickets()]
    assert len(ids) == len(set(ids)) == 40


def test_list_tickets_filters_by_tag_category_and_data(rz_conn: ReamazeConnector,
                                                       rz_sim: ReamazeSimulator) -> None:
    """tag, category and data[...] filters reach the API and narrow the listing."""
    rz_sim.add_channel("sales")
    rz_sim.add_conversation("A", "b", "a@x.example", tags=["bug"], data={"k": "v"})
    rz_sim.add_conversation("B", "b", "b@x.example", tags=["idea"], category="sales")
    rz_sim.add_conversation("C", "b", "c@x.example", tags=["bug", "idea"], category="sales")
    assert {t.id for t in rz_conn.list_tickets(tag="bug")} == {"a", "c"}
    assert {t.id for t in rz_conn.list_tickets(tag="bug,idea")} == {"a", "b", "c"}
    assert {t.id for t in rz_conn.list_tickets(category="sales")} == {"b", "c"}
    assert {t.id for t in rz_conn.list_tickets(data={"k": "v"})} == {"a"}


def test_create_conversation_validates_and_creates(rz_conn: ReamazeConnector,
                                                   rz_sim: ReamazeSimulator) -> None:
    """A customer conversation is created with tags, data and an implicit new contact."""
    ticket = rz_conn.create_conversation("Refund please", "support", "Where is my money",
                                      "new@x.example", contact_name="New Person",
                                      tags=("billing",), data={"plan": "pro"})
    assert ticket.subject == "Refund please" and ticket.tags == ("billing",)
    assert ticket.data == {"plan": "pro"} and ticket.status.state is TicketState.OPEN
    assert "new@x.example" in rz_sim.contacts
    assert rz_sim.conversations[ticket.id].messages[0].body == "Where is my money"


def test_create_conversation_rejections_carry_the_422_body(rz_conn: ReamazeConnector) -> None:
    """An unknown channel is a RejectedError whose body explains the validation failure."""
    with pytest.raises(RejectedError) as err:
        rz_conn.create_conversation("S", "no-such-channel", "body", "a@x.example")
    assert err.value.status == 422
    assert "category" in err.value.body and "not found" in err.value.body


def test_create_ticket_stores_the_marker_and_can_be_found(rz_conn: ReamazeConnector,
                                                          rz_sim: ReamazeSimulator) -> None:
    """create_ticket writes the marker into data so find_ticket_by_marker recovers it."""
    ticket = rz_conn.create_ticket(NewTicket(subject="From the tracker", description="desc",
                                          marker="rs-0123", tags=("bug",), assignee_id=AGENT,
                                          state=TicketState.PENDING))
    assert ticket.marker == "rs-0123" and ticket.tags == ("bug",)
    assert ticket.assignee is not None and ticket.assignee.id == AGENT
    assert ticket.status.state is TicketState.PENDING
    assert rz_sim.conversations[ticket.id].author.email == LOGIN
    found = rz_conn.find_ticket_by_marker("rs-0123")
    assert found is not None and found.id == ticket.id
    assert rz_conn.find_ticket_by_marker("rs-missing") is None


def test_find_by_marker_does_not_trust_a_server_that_ignores_the_filter(
        rz_sim: ReamazeSimulator, rz_clock: RecordingClock) -> None:
    """If the data filter were ignored, only a conversation really carrying the marker counts."""
    rz_conn = make_connector(rz_sim, rz_clock)
    rz_sim.add_conversation("Other", "b", "o@x.example", data={"reamaze_sync_marker": "rs-other"})
    rz_sim.add_conversation("Plain", "b", "p@x.example")
    target = rz_sim.add_conversation("Mine", "b", "m@x.example",
                                  data={"reamaze_sync_marker": "rs-mine"})
    rz_sim.before_request.append(_drop_data_filter)
    found = rz_conn.find_ticket_by_marker("rs-mine")
    assert found is not None and found.id == target
    assert rz_conn.find_ticket_by_marker("rs-none") is None


def _drop_data_filter(request: object) -> None:
    import httpx

    assert isinstance(request, httpx.Request)
    params = [(k, v) for k, v in request.url.params.multi_items() if not k.startswith("data[")]
    request.url = request.url.copy_with(params=params)


def test_update_ticket_sets_status_tags_and_assignee(rz_conn: ReamazeConnector,
                                                     rz_sim: ReamazeSimulator) -> None:
    """One PUT changes status, replaces tags and assigns by staff email."""
    slug = rz_sim.add_conversation("X", "b", "a@x.example", tags=["old"])
    ticket = rz_conn.update_ticket(slug, TicketUpdate(state=TicketState.CLOSED,
                                                   tags=("new", "bug"), assignee_id=AGENT))
    assert ticket.status.code == "2" and ticket.tags == ("new", "bug")
    assert ticket.assignee is not None and ticket.assignee.email == AGENT
    conv = rz_sim.conversations[slug]
    assert (conv.status, conv.tags, conv.assignee and conv.assignee.email) == (
        2, ["new", "bug"], AGENT)


def test_update_ticket_on_hold_needs_hold_until(rz_conn: ReamazeConnector,
                                                rz_sim: ReamazeSimulator) -> None:
    """On Hold is status 5 with hold_until; without it the update is refused before sending."""
    slug = rz_sim.add_conversation("X", "b", "a@x.example")
    puts_before = len(rz_sim.calls("PUT"))
    with pytest.raises(RejectedError, match="hold_until"):
        rz_conn.update_ticket(slug, TicketUpdate(state=TicketState.ON_HOLD))
    assert len(rz_sim.calls("PUT")) == puts_before
    until = datetime(2026, 3, 1, 9, tzinfo=UTC)
    ticket = rz_conn.update_ticket(slug, TicketUpdate(state=TicketState.ON_HOLD, hold_until=until))
    assert (ticket.status.code, ticket.status.state) == ("5", TicketState.ON_HOLD)
    assert rz_sim.conversations[slug].hold_until == until
    reopened = rz_conn.update_ticket(slug, TicketUpdate(state=TicketState.OPEN))
    assert reopened.status.state is TicketState.OPEN
    assert rz_sim.conversations[slug].hold_until is None


def test_update_ticket_to_unknown_staff_is_rejected(rz_conn: ReamazeConnector,
                                                    rz_sim: ReamazeSimulator) -> None:
    """Assigning to an email that is not staff is a 422 RejectedError naming the field."""
    slug = rz_sim.add_conversation("X", "b", "a@x.example")
    with pytest.raises(RejectedError) as err:
        rz_conn.update_ticket(slug, TicketUpdate(assignee_id="stranger@x.example"))
    assert "assignee" in err.value.body


def test_empty_update_only_reads(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """An update with nothing to change sends no PUT and returns the current ticket."""
    slug = rz_sim.add_conversation("X", "b", "a@x.example")
    assert rz_conn.update_ticket(slug, TicketUpdate()).id == slug
    assert rz_sim.calls("PUT") == []


def test_create_ticket_on_hold_is_refused(rz_conn: ReamazeConnector) -> None:
    """A new ticket cannot start On Hold because NewTicket has no hold_until."""
    with pytest.raises(RejectedError):
        rz_conn.create_ticket(NewTicket(subject="s", description="d", marker="rs-1",
                                     state=TicketState.ON_HOLD))


def test_statuses_cover_all_codes(rz_conn: ReamazeConnector) -> None:
    """The ticket-status resource lists the ten documented codes."""
    assert [s.code for s in rz_conn.list_statuses()] == [str(i) for i in range(10)]


def test_ticket_url_follows_a_base_url_override(rz_sim: ReamazeSimulator,
                                                rz_clock: RecordingClock) -> None:
    """With base_url set (a simulator on loopback), ticket links point at that host."""
    rz_conn = make_connector(rz_sim, rz_clock, base_url="http://127.0.0.1:8123/api/v1")
    assert rz_conn.ticket_url("a b") == "http://127.0.0.1:8123/admin/conversations/a%20b"


def test_read_ticket_is_the_conversation_and_its_messages(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """read_ticket answers what get_ticket + list_comments do (two requests on Re:amaze)."""
    slug = rz_sim.add_conversation("Two parts", "first message", "cu@x.example")
    before = len(rz_sim.requests)
    ticket, comments = rz_conn.read_ticket(slug)
    assert len(rz_sim.requests) - before == 2
    assert ticket == rz_conn.get_ticket(slug)
    assert comments == rz_conn.list_comments(slug)
    assert [c.body for c in comments] == ["first message"]
