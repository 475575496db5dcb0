"""Links, comment links, snapshots and cursors, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from state_support import *  # noqa: F403  (pytest fixtures)
from state_support import FakeClock

from state import StateStore
from syncer.models import Cursor, TicketState, Visibility
from syncer.plan import CommentLinkView, LinkView, Side, Snapshot

H, T = Side.HELPDESK, Side.TRACKER


def test_create_and_get_link_round_trip(store: StateStore) -> None:
    """A new link comes back active, with its origin, no comment links and no snapshot."""
    store.create_link("p", "conv-1", "101", T)
    assert store.get_link("p", "conv-1") == LinkView(
        conversation_id="conv-1", issue_id="101", status="active", origin=T)


def test_unknown_link_is_none(store: StateStore) -> None:
    """Looking up a conversation or issue that was never linked returns None."""
    assert store.get_link("p", "nope") is None
    assert store.get_link_by_issue("p", "nope") is None


def test_get_link_by_issue(store: StateStore) -> None:
    """A link is found from its issue id too, with the same view."""
    store.create_link("p", "conv-1", "101", H)
    store.add_comment_link("p", "conv-1", H, "m1", "j1", "public", "fp1")
    found = store.get_link_by_issue("p", "101")
    assert found is not None
    assert found == store.get_link("p", "conv-1")
    assert found.comment_links[0].target_id == "j1"


def test_pending_link_gets_its_issue_later(store: StateStore) -> None:
    """A link created before its issue exists is completed by set_link_issue."""
    store.create_link("p", "conv-1", None, H)
    assert store.get_link("p", "conv-1") == LinkView(conversation_id="conv-1", issue_id=None)
    store.set_link_issue("p", "conv-1", "101")
    link = store.get_link_by_issue("p", "101")
    assert link is not None and link.conversation_id == "conv-1"


def test_pending_ok_leaves_a_waiting_link_and_nothing_else(store: StateStore) -> None:
    """A retried create finds its link still waiting for the issue and keeps it (with its
    comment links); a link that already has its issue is still refused."""
    store.create_link("p", "conv-1", None, H)
    store.add_comment_link("p", "conv-1", T, "rs-note", "m1", "internal", "")
    store.create_link("p", "conv-1", None, H, pending_ok=True)
    link = store.get_link("p", "conv-1")
    assert link is not None and link.issue_id is None and len(link.comment_links) == 1
    store.set_link_issue("p", "conv-1", "101")
    with pytest.raises(ValueError, match="already linked"):
        store.create_link("p", "conv-1", None, H, pending_ok=True)


def test_many_links_may_wait_for_an_issue(store: StateStore) -> None:
    """Several pending links (issue id still unknown) do not collide with each other."""
    for n in range(3):
        store.create_link("p", f"conv-{n}", None, H)
    assert store.count_links("p") == 3


def test_set_link_issue_is_idempotent_and_never_repoints(store: StateStore) -> None:
    """Setting the same issue again is a no-op; pointing a link at another issue is refused."""
    store.create_link("p", "conv-1", None, H)
    store.set_link_issue("p", "conv-1", "101")
    store.set_link_issue("p", "conv-1", "101")
    with pytest.raises(ValueError, match="101"):
        store.set_link_issue("p", "conv-1", "202")
    assert store.get_link("p", "conv-1") == LinkView(conversation_id="conv-1", issue_id="101")


def test_set_link_issue_refuses_an_issue_linked_elsewhere(store: StateStore) -> None:
    """An issue already linked to another conversation cannot be given to a pending link."""
    store.create_link("p", "conv-1", "101", H)
    store.create_link("p", "conv-2", None, H)
    with pytest.raises(ValueError, match="conv-1"):
        store.set_link_issue("p", "conv-2", "101")
    link = store.get_link("p", "conv-2")
    assert link is not None and link.issue_id is None


def test_setters_on_unknown_link_raise_keyerror(store: StateStore) -> None:
    """Changing a link that does not exist is an error, not a silent no-op."""
    with pytest.raises(KeyError):
        store.set_link_issue("p", "ghost", "1")
    with pytest.raises(KeyError):
        store.set_link_status("p", "ghost", "orphaned")
    with pytest.raises(KeyError):
        store.add_comment_link("p", "ghost", H, "m1", "j1", "public", "fp")
    with pytest.raises(KeyError):
        store.save_snapshot("p", "ghost", Snapshot())


@pytest.mark.parametrize("status", ["active", "orphaned"])
def test_conversation_cannot_be_linked_twice(store: StateStore, status: str) -> None:
    """create_link refuses a conversation already linked (active or orphaned) in the pair."""
    store.create_link("p", "conv-1", "101", H)
    store.set_link_status("p", "conv-1", status)
    with pytest.raises(ValueError, match="conv-1"):
        store.create_link("p", "conv-1", "202", H)
    assert store.get_link_by_issue("p", "202") is None


@pytest.mark.parametrize("status", ["active", "orphaned"])
def test_issue_cannot_be_linked_twice(store: StateStore, status: str) -> None:
    """create_link refuses an issue already linked (active or orphaned) to another conversation."""
    store.create_link("p", "conv-1", "101", H)
    store.set_link_status("p", "conv-1", status)
    with pytest.raises(ValueError, match="101"):
        store.create_link("p", "conv-2", "101", T)
    assert store.get_link("p", "conv-2") is None


def test_pairs_do_not_see_each_other(store: StateStore) -> None:
    """The same conversation and issue ids may be linked independently in two pairs."""
    store.create_link("a", "conv-1", "101", H)
    store.create_link("b", "conv-1", "101", T)
    store.add_comment_link("a", "conv-1", H, "m1", "j1", "public", "fp")
    store.save_snapshot("b", "conv-1", Snapshot(tracker_labels=("bug",)))
    a, b = store.get_link("a", "conv-1"), store.get_link("b", "conv-1")
    assert a is not None and b is not None
    assert (a.origin, len(a.comment_links), a.snapshot) == (H, 1, None)
    assert (b.origin, b.comment_links, b.snapshot) == (T, (), Snapshot(tracker_labels=("bug",)))
    store.delete_link("a", "conv-1")
    assert store.get_link("b", "conv-1") == b


def test_unlinked_conversation_can_be_linked_again_to_the_same_issue(store: StateStore) -> None:
    """Relinking an unlinked conversation to the same issue keeps what was already copied."""
    store.create_link("p", "conv-1", "101", H)
    store.add_comment_link("p", "conv-1", H, "m1", "j1", "public", "fp")
    store.set_link_status("p", "conv-1", "unlinked")
    store.create_link("p", "conv-1", "101", T)
    link = store.get_link("p", "conv-1")
    assert link is not None
    assert (link.status, link.origin, [c.source_id for c in link.comment_links]) == (
        "active", T, ["m1"])


def test_unlinked_conversation_linked_to_another_issue_forgets_old_copies(
        store: StateStore) -> None:
    """Relinking an unlinked conversation to a new issue drops comment links and snapshot
    that belonged to the old issue."""
    store.create_link("p", "conv-1", "101", H)
    store.add_comment_link("p", "conv-1", H, "m1", "j1", "public", "fp")
    store.save_snapshot("p", "conv-1", Snapshot(helpdesk_tags=("x",)))
    store.set_link_status("p", "conv-1", "unlinked")
    store.create_link("p", "conv-1", "202", H)
    assert store.get_link("p", "conv-1") == LinkView(conversation_id="conv-1", issue_id="202")
    assert store.get_link_by_issue("p", "101") is None


def test_issue_of_an_unlinked_conversation_can_be_linked_elsewhere(store: StateStore) -> None:
    """An unlinked link gives its issue up to a new conversation, taking its rows with it."""
    store.create_link("p", "conv-1", "101", H)
    store.add_comment_link("p", "conv-1", H, "m1", "j1", "public", "fp")
    store.set_link_status("p", "conv-1", "unlinked")
    store.create_link("p", "conv-2", "101", T)
    assert store.get_link("p", "conv-1") is None
    assert store.get_link_by_issue("p", "101") == LinkView(
        conversation_id="conv-2", issue_id="101", origin=T)


def test_set_link_status_round_trip_and_validation(store: StateStore) -> None:
    """Status changes are stored; an unknown status is refused."""
    store.create_link("p", "conv-1", "101", H)
    for status in ("orphaned", "unlinked", "active"):
        store.set_link_status("p", "conv-1", status)
        link = store.get_link("p", "conv-1")
        assert link is not None and link.status == status
    with pytest.raises(ValueError, match="closed"):
        store.set_link_status("p", "conv-1", "closed")


def test_delete_link_removes_comment_links_and_snapshot(store: StateStore) -> None:
    """Unlinking forgets the link entirely, so relinking starts from nothing."""
    store.create_link("p", "conv-1", "101", H)
    store.add_comment_link("p", "conv-1", H, "m1", "j1", "public", "fp")
    store.save_snapshot("p", "conv-1", Snapshot(helpdesk_state=TicketState.OPEN))
    store.delete_link("p", "conv-1")
    assert store.get_link("p", "conv-1") is None
    assert store.count_links("p") == 0
    store.create_link("p", "conv-1", "101", H)
    assert store.get_link("p", "conv-1") == LinkView(conversation_id="conv-1", issue_id="101")
    store.delete_link("p", "never-linked")  # idempotent


def test_comment_links_round_trip_in_insertion_order(store: StateStore) -> None:
    """Comment links come back with the link, in the order they were recorded."""
    store.create_link("p", "conv-1", "101", H)
    store.add_comment_link("p", "conv-1", H, "m2", "j9", "public", "fp-a")
    store.add_comment_link("p", "conv-1", T, "j3", "m7", "internal", "fp-b")
    store.add_comment_link("p", "conv-1", H, "m1", "j10", "internal", "fp-c")
    link = store.get_link("p", "conv-1")
    assert link is not None
    assert link.comment_links == (
        CommentLinkView(source_side=H, source_id="m2", target_id="j9", fingerprint="fp-a"),
        CommentLinkView(source_side=T, source_id="j3", target_id="m7", fingerprint="fp-b",
                        visibility=Visibility.INTERNAL),
        CommentLinkView(source_side=H, source_id="m1", target_id="j10", fingerprint="fp-c",
                        visibility=Visibility.INTERNAL),
    )


def test_forget_copy_drops_only_the_links_to_that_copy(store: StateStore) -> None:
    """A removed (leaked) copy's link goes, so its source counts as not copied; the others
    stay."""
    store.create_link("p", "conv-1", "101", H)
    store.add_comment_link("p", "conv-1", H, "m1", "j1", "internal", "fp-a")
    store.add_comment_link("p", "conv-1", H, "m2", "j2", "internal", "fp-b")
    store.forget_copy("p", "conv-1", "j1")
    link = store.get_link("p", "conv-1")
    assert link is not None and [c.source_id for c in link.comment_links] == ["m2"]


def test_leaks_are_recorded_reopened_and_resolved(store: StateStore) -> None:
    """An unremovable public copy is open until resolved; recording it again reopens it."""
    store.record_leak("p", "conv-1", T, "101", "j1", "public, could not delete")
    (leak,) = store.open_leaks("p")
    assert (leak.side, leak.ticket_id, leak.comment_id) == (T, "101", "j1")
    assert store.open_leaks("other-pair") == []
    store.resolve_leak("p", T, "101", "j1")
    assert store.open_leaks("p") == []
    store.record_leak("p", "conv-1", T, "101", "j1", "again")
    assert [x.detail for x in store.open_leaks("p")] == ["again"]


def test_add_comment_link_is_idempotent(store: StateStore) -> None:
    """Recording the same source comment twice keeps one row and the first target."""
    store.create_link("p", "conv-1", "101", H)
    store.add_comment_link("p", "conv-1", H, "m1", "j1", "public", "fp")
    store.add_comment_link("p", "conv-1", H, "m1", "j1", "public", "fp")
    store.add_comment_link("p", "conv-1", H, "m1", "j2", "public", "fp2")
    link = store.get_link("p", "conv-1")
    assert link is not None
    assert [(c.source_id, c.target_id, c.fingerprint) for c in link.comment_links] == [
        ("m1", "j1", "fp")]


def test_same_source_id_on_both_sides_is_two_comment_links(store: StateStore) -> None:
    """A helpdesk message and a tracker journal may share an id; the side tells them apart."""
    store.create_link("p", "conv-1", "101", H)
    store.add_comment_link("p", "conv-1", H, "7", "j1", "public", "fp")
    store.add_comment_link("p", "conv-1", T, "7", "m1", "public", "fp")
    link = store.get_link("p", "conv-1")
    assert link is not None and len(link.comment_links) == 2


def test_comment_link_visibility_is_validated(store: StateStore) -> None:
    """Only public or internal may be recorded as the written visibility."""
    store.create_link("p", "conv-1", "101", H)
    with pytest.raises(ValueError, match="secret"):
        store.add_comment_link("p", "conv-1", H, "m1", "j1", "secret", "fp")


def test_snapshot_round_trip_and_overwrite(store: StateStore) -> None:
    """The last saved snapshot is returned with the link, every field intact."""
    store.create_link("p", "conv-1", "101", H)
    first = Snapshot(helpdesk_state=TicketState.OPEN, tracker_state=TicketState.PENDING,
                     helpdesk_tags=("a", "b"), tracker_labels=("bug",),
                     helpdesk_assignee="ann@example.com", tracker_assignee="5")
    store.save_snapshot("p", "conv-1", first)
    link = store.get_link("p", "conv-1")
    assert link is not None and link.snapshot == first
    second = first.model_copy(update={"tracker_state": TicketState.CLOSED, "helpdesk_tags": ()})
    store.save_snapshot("p", "conv-1", second)
    link = store.get_link("p", "conv-1")
    assert link is not None and link.snapshot == second


def test_cursor_round_trip_per_side(store: StateStore) -> None:
    """Each side of a pair has its own cursor; saving again replaces it."""
    assert store.get_cursor("p", H) is None
    c1 = Cursor(watermark=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), seen=("a", "b"))
    c2 = Cursor(watermark=datetime(2026, 2, 1, tzinfo=UTC))
    store.save_cursor("p", H, c1)
    store.save_cursor("p", T, c2)
    assert (store.get_cursor("p", H), store.get_cursor("p", T)) == (c1, c2)
    c3 = Cursor(watermark=datetime(2026, 1, 3, tzinfo=timezone(timedelta(hours=2))), seen=("z",))
    store.save_cursor("p", H, c3)
    got = store.get_cursor("p", H)
    assert got is not None
    assert got.watermark == c3.watermark and got.watermark.utcoffset() is not None
    assert got.seen == ("z",)
    assert store.get_cursor("other", H) is None


def test_iter_links_filters_by_status_in_creation_order(store: StateStore) -> None:
    """iter_links yields active links by default, any status on request, oldest first."""
    for n in range(5):
        store.create_link("p", f"conv-{n}", str(100 + n), H)
    store.create_link("q", "conv-x", "1", H)
    store.set_link_status("p", "conv-1", "orphaned")
    store.set_link_status("p", "conv-3", "unlinked")
    assert [v.conversation_id for v in store.iter_links("p")] == ["conv-0", "conv-2", "conv-4"]
    assert [v.conversation_id for v in store.iter_links("p", "orphaned")] == ["conv-1"]
    assert len(list(store.iter_links("p", None))) == 5
    assert (store.count_links("p"), store.count_links("p", "active"),
            store.count_links("p", "unlinked"), store.count_links("q")) == (5, 3, 1, 1)
    with pytest.raises(ValueError):
        list(store.iter_links("p", "gone"))


def test_iter_links_batches_carry_comment_links_and_snapshots(store: StateStore) -> None:
    """Across batch boundaries every link still carries its own comment links and snapshot."""
    for n in range(7):
        store.create_link("p", f"conv-{n}", str(n), H)
        store.add_comment_link("p", f"conv-{n}", H, f"m{n}", f"j{n}", "public", "fp")
        store.save_snapshot("p", f"conv-{n}", Snapshot(tracker_assignee=str(n)))
    views = list(store.iter_links("p", batch_size=3))
    assert [v.conversation_id for v in views] == [f"conv-{n}" for n in range(7)]
    for n, view in enumerate(views):
        assert [c.target_id for c in view.comment_links] == [f"j{n}"]
        assert view.snapshot == Snapshot(tracker_assignee=str(n))


def test_iter_links_streams_batch_by_batch(store: StateStore) -> None:
    """Later batches are read only when reached, and writes between items are allowed."""
    for n in range(6):
        store.create_link("p", f"conv-{n}", str(n), H)
    it = store.iter_links("p", batch_size=2)
    first = next(it)
    # Neither change is visible to a loaded list; a streaming reader sees both.
    store.delete_link("p", "conv-4")
    store.create_link("p", "conv-late", "99", H)
    store.set_link_status("p", first.conversation_id, "orphaned")
    rest = [v.conversation_id for v in it]
    assert rest == ["conv-1", "conv-2", "conv-3", "conv-5", "conv-late"]


def test_count_links_of_empty_pair_is_zero(store: StateStore) -> None:
    """Counting links of a pair with none is zero, not an error."""
    assert store.count_links("nobody") == 0
    assert list(store.iter_links("nobody")) == []


def test_link_timestamps_are_kept_out_of_the_view(store: StateStore, clock: FakeClock) -> None:
    """The engine sees identity and status only; the store stamps rows with its clock."""
    store.create_link("p", "conv-1", "101", H)
    clock.advance(60)
    store.set_link_status("p", "conv-1", "orphaned")
    from sqlmodel import Session, select

    from state.tables import Link

    with Session(store.engine) as s:
        row = s.exec(select(Link)).one()
    assert row.updated_at - row.created_at == timedelta(seconds=60)
    assert row.created_at.tzinfo is not None and row.created_at.utcoffset() == timedelta(0)


def test_stored_values_with_retired_fields_still_load(store: StateStore) -> None:
    """A snapshot or cursor saved with a field the model no longer has is read, not fatal."""
    from sqlalchemy import update

    from state.tables import CursorRow, SnapshotRow

    store.create_link("p", "conv-1", "101", H)
    store.save_snapshot("p", "conv-1", Snapshot(helpdesk_tags=("a",)))
    store.save_cursor("p", H, Cursor(watermark=datetime(2026, 1, 1, tzinfo=UTC)))
    with store.engine.begin() as conn:
        conn.execute(update(SnapshotRow).values(
            data={"helpdesk_tags": ["a"], "retired_field": 1}))
        conn.execute(update(CursorRow).values(
            data={"watermark": "2026-01-01T00:00:00Z", "seen": [], "old_knob": True}))
    link = store.get_link("p", "conv-1")
    assert link is not None and link.snapshot == Snapshot(helpdesk_tags=("a",))
    assert store.get_cursor("p", H) == Cursor(watermark=datetime(2026, 1, 1, tzinfo=UTC))
