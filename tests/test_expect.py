"""What the snapshot expects the conversation's list item to show after the sync's own
writes (``syncer.expect``), and which plans made from the snapshot's stand-in for the
conversation may be applied (``syncer.partial``): pure, table by table."""

from __future__ import annotations

from typing import Any

import pytest
from reconcile_builders import CID, IID, agreed, comment, conversation, issue

from syncer.expect import expect_helpdesk, is_own_echo
from syncer.models import NewComment, Ticket, TicketState, TicketUpdate, Visibility
from syncer.partial import conversation_from_snapshot, needs_conversation
from syncer.plan import (
    AddComment,
    LinkView,
    Plan,
    PostLinkNote,
    RemoveComment,
    SaveSnapshot,
    Side,
    SideView,
    Skip,
    Snapshot,
    UpdateTicket,
)

PUBLIC_TWO = (comment("m1"), comment("m2"))
WITH_NOTE = (comment("m1"), comment("n1", internal=True))


def listed(n: int | None, **kw: Any) -> Ticket:
    return conversation(**kw).model_copy(update={"listed_comments": n})


def copy_to_helpdesk(source: str = "j1") -> AddComment:
    return AddComment(conversation_id=CID, target=Side.HELPDESK, ticket_id=CID,
                      source_id=source, new=NewComment(body="x", visibility=Visibility.INTERNAL,
                                                       marker=f"m-{source}"))


def expect(view: SideView, base: Snapshot | None, *actions: Any) -> Snapshot:
    return expect_helpdesk(view, base, Snapshot(), actions)


# -- the expectation ---------------------------------------------------------------------

@pytest.mark.parametrize(("count", "comments", "trusted"), [
    (2, WITH_NOTE, True),    # counts what was read, an internal note among it
    (2, PUBLIC_TWO, False),  # no note read: a count without notes would look the same
    (1, WITH_NOTE, False),   # counts something else (public messages only?)
    (None, WITH_NOTE, False),  # no count at all
])
def test_a_count_is_trusted_only_when_it_was_seen_counting_notes(
        count: int | None, comments: tuple[Any, ...], trusted: bool) -> None:
    snap = expect(SideView(ticket=listed(count), comments=comments), None, copy_to_helpdesk())
    assert snap.helpdesk_count_trusted is trusted
    assert snap.helpdesk_messages == len(comments) + 1


def test_writes_and_removals_move_the_expected_count() -> None:
    view = SideView(ticket=listed(2), comments=WITH_NOTE)
    removal = RemoveComment(conversation_id=CID, target=Side.HELPDESK, ticket_id=CID,
                            comment_id="n1", reason="leaked")
    to_tracker = AddComment(conversation_id=CID, target=Side.TRACKER, ticket_id=IID,
                            source_id="m1", new=NewComment(body="x", marker="k",
                                                           visibility=Visibility.PUBLIC))
    snap = expect(view, None, copy_to_helpdesk(), PostLinkNote(conversation_id=CID, marker="l"),
                  removal, to_tracker)
    assert snap.helpdesk_messages == 2 + 2 - 1


def test_a_stand_in_keeps_what_the_last_full_read_learnt() -> None:
    base = Snapshot(helpdesk_messages=5, helpdesk_count_trusted=True,
                    helpdesk_last_customer="2024-03-01T09:00:00+00:00")
    stand_in = SideView(ticket=listed(None), comments_read=False, from_snapshot=True)
    snap = expect(stand_in, base, copy_to_helpdesk())
    assert (snap.helpdesk_messages, snap.helpdesk_count_trusted) == (6, True)
    assert snap.helpdesk_last_customer == base.helpdesk_last_customer
    read = SideView(ticket=listed(None), comments=WITH_NOTE, from_snapshot=True)
    assert expect(read, base).helpdesk_messages == 2  # what was read, not what was known


# -- recognising an echo -------------------------------------------------------------------

def _echo_base(**changes: Any) -> Snapshot:
    conv = listed(3, state=TicketState.PENDING, tags=("bug",), assignee="alice@acme.example")
    return agreed(conv, issue(), messages=3, **{"helpdesk_count_trusted": True, **changes})


def test_an_item_showing_exactly_the_expected_state_is_the_syncs_own() -> None:
    item = listed(3, state=TicketState.PENDING, tags=("bug",), assignee="alice@acme.example")
    assert is_own_echo(_echo_base(), item)


@pytest.mark.parametrize("change", [
    {"listed_comments": 4},  # someone wrote a message
    {"listed_comments": None},  # the count went missing
    {"tags": ("bug", "vip")},
    {"assignee": None},
])
def test_anything_else_on_the_item_is_read(change: dict[str, Any]) -> None:
    item = listed(3, state=TicketState.PENDING, tags=("bug",), assignee="alice@acme.example")
    assert not is_own_echo(_echo_base(), item.model_copy(update=change))


def test_a_state_change_or_a_new_customer_message_is_read() -> None:
    item = listed(3, state=TicketState.OPEN, tags=("bug",), assignee="alice@acme.example")
    assert not is_own_echo(_echo_base(), item)
    item = listed(3, state=TicketState.PENDING, tags=("bug",), assignee="alice@acme.example")
    later = item.model_copy(update={"last_customer_at": item.updated_at})
    assert not is_own_echo(_echo_base(), later)


def test_an_untrusted_count_is_never_an_echo() -> None:
    item = listed(3, state=TicketState.PENDING, tags=("bug",), assignee="alice@acme.example")
    assert not is_own_echo(_echo_base(helpdesk_count_trusted=False), item)
    assert not is_own_echo(None, item)


# -- plans made from the stand-in ----------------------------------------------------------

def _plan(*actions: Any) -> Plan:
    return Plan(pair="bugs", actions=actions)


UPDATE_HD = UpdateTicket(conversation_id=CID, target=Side.HELPDESK, ticket_id=CID,
                         update=TicketUpdate(state=TicketState.CLOSED), reason="closed")
UPDATE_TR = UpdateTicket(conversation_id=CID, target=Side.TRACKER, ticket_id=IID,
                         update=TicketUpdate(tags=("x",)), reason="tags")
CLOSE_REPLY = AddComment(conversation_id=CID, target=Side.HELPDESK, ticket_id=CID,
                         source_id="", new=NewComment(body="Fixed", marker="c",
                                                      visibility=Visibility.PUBLIC))


@pytest.mark.parametrize(("actions", "unread", "read"), [
    ((), False, False),
    ((SaveSnapshot(conversation_id=CID, snapshot=Snapshot()),), False, False),
    ((copy_to_helpdesk(),), True, False),
    ((Skip(conversation_id=CID, object_id="j", reason="r"),), True, False),
    ((UPDATE_HD,), True, False),
    ((UPDATE_TR,), True, True),  # the issue's fields follow the conversation's own
    ((CLOSE_REPLY,), True, True),  # names the conversation
    ((PostLinkNote(conversation_id=CID, marker="l"),), True, True),
])
def test_which_plans_need_the_conversation(actions: tuple[Any, ...], unread: bool,
                                           read: bool) -> None:
    assert needs_conversation(_plan(*actions), read_comments=False) is unread
    assert needs_conversation(_plan(*actions), read_comments=True) is read


def test_the_stand_in_is_the_conversation_the_last_sync_agreed_on() -> None:
    conv = conversation(state=TicketState.PENDING, tags=("bug",), assignee="alice@acme.example",
                        updated=7)
    link = LinkView(conversation_id=CID, issue_id=IID, snapshot=agreed(conv, issue()))
    stand_in = conversation_from_snapshot(link)
    assert stand_in is not None
    assert (stand_in.status.state, stand_in.tags, stand_in.updated_at) == (
        conv.status.state, conv.tags, conv.updated_at)
    assert stand_in.assignee is not None and stand_in.assignee.email == "alice@acme.example"
    assert conversation_from_snapshot(LinkView(conversation_id=CID, issue_id=IID)) is None
