"""Reconciler tables for link lifecycle: pending, inactive and deleted issues; determinism."""

from __future__ import annotations

import pytest

from syncer.markers import Markers
from syncer.models import TicketState, Visibility
from syncer.plan import (
    AddComment,
    AdoptComment,
    CreateIssue,
    MarkOrphaned,
    PostLinkNote,
    Side,
    SideView,
    Skip,
    is_our_marker,
)
from syncer.reconcile import reconcile
from tests.reconcile_builders import (
    CID,
    IID,
    MARKERS,
    World,
    agreed,
    comment,
    context,
    conversation,
    issue,
    link,
    of_type,
    ours,
    policy,
    run_round,
    view,
)


def _views() -> tuple[SideView, SideView]:
    return (view(conversation(tags=("bug",)), comments=(comment("m1"),)),
            view(issue(), (comment("n1", ticket=IID),)))


@pytest.mark.parametrize("status", ["orphaned", "unlinked"])
def test_inactive_link_is_skipped(status: str) -> None:
    """An orphaned or unlinked conversation is explained and never written to."""
    conv, iss = _views()
    plan = reconcile(context(), conv, iss, link(status_=status))
    (skip,) = plan.actions
    assert isinstance(skip, Skip) and status in skip.reason


def test_inactive_link_beats_issue_deleted() -> None:
    """A link already orphaned is not orphaned (and noted) a second time."""
    conv, _ = _views()
    plan = reconcile(context(), conv, None, link(status_="orphaned"), issue_deleted=True)
    assert plan.writes == () and of_type(plan, MarkOrphaned) == []


def test_pending_issue_create_is_skipped() -> None:
    """A link whose issue create is still unconfirmed is left to recovery, not re-created."""
    conv, _ = _views()
    plan = reconcile(context(), conv, None, link(iid=None))
    (skip,) = plan.actions
    assert isinstance(skip, Skip) and "pending" in skip.reason
    assert of_type(plan, CreateIssue) == []


def test_deleted_issue_orphans_link_with_internal_note() -> None:
    """A deleted issue gets an internal note on the conversation, then the link is orphaned."""
    conv, _ = _views()
    plan = reconcile(context(), conv, None, link(), issue_deleted=True)
    note, orphan = plan.actions
    assert isinstance(note, AddComment) and isinstance(orphan, MarkOrphaned)
    assert note.target is Side.HELPDESK and note.ticket_id == CID and note.source_id == ""
    assert note.new.visibility is Visibility.INTERNAL and note.new.notify_customer is False
    assert f"#{IID}" in note.new.body and "Redmine" in note.new.body
    assert is_our_marker(note.new.marker)
    assert IID in orphan.reason


def test_deleted_issue_note_already_on_conversation_is_not_repeated() -> None:
    """If the orphan note was written but the link not yet marked, only the marking is planned."""
    first = reconcile(context(), _views()[0], None, link(), issue_deleted=True)
    (note,) = of_type(first, AddComment)
    conv = view(conversation(),
                (comment("m1"), ours(comment("m7", internal=True, body=note.new.body,
                                             marker=note.new.marker))))
    again = reconcile(context(), conv, None, link(), issue_deleted=True)
    assert of_type(again, AddComment) == []
    assert len(of_type(again, MarkOrphaned)) == 1


def test_deleted_issue_then_reconciling_orphaned_link_is_quiet() -> None:
    """After the orphaning is applied, the next pass writes nothing."""
    conv, iss = _views()
    world = World(ctx=context(), conversation=conv, issue=iss,
                  link=link(snapshot=agreed(conv.ticket, iss.ticket)), issue_deleted=True)
    _, world = run_round(world)
    assert world.link is not None and world.link.status == "orphaned"
    assert world.reconcile().writes == ()


# --- determinism -------------------------------------------------------------------------

def test_same_inputs_give_equal_plans_and_stable_markers() -> None:
    """Reconciling the same state twice gives equal plans with the documented markers."""
    pol = policy(tag_to_label={"bug": "defect"}, staff_to_user={"a@x.example": "1"},
                 status={"close_reply_template": "Fixed: {subject}"})
    conv = view(conversation(tags=("bug",), assignee="a@x.example"),
                    comments=(comment("m2", at=4), comment("m1", at=2, internal=True)))
    first = reconcile(context(pol), conv, None, None)
    assert first == reconcile(context(pol), conv.model_copy(deep=True), None, None)
    (create,) = of_type(first, CreateIssue)
    assert create.new.marker == MARKERS.issue(CID)
    assert MARKERS.issue(CID) == MARKERS.issue(CID)
    assert MARKERS.issue(CID) != Markers(MARKERS.key, "other-pair").issue(CID)
    assert MARKERS.issue(CID) != Markers(b"another-installation-key", MARKERS.pair).issue(CID)
    assert MARKERS.comment(CID, Side.HELPDESK, "a:b") != MARKERS.comment(CID, Side.HELPDESK,
                                                                         "a\x1fb")


def test_marker_shape() -> None:
    """Markers are short, prefixed and recognised; foreign ids are not ours."""
    marker = MARKERS.comment(CID, Side.HELPDESK, "m1")
    assert marker.startswith("rs-") and len(marker) == 35 and is_our_marker(marker)
    assert MARKERS.belongs(marker, CID) and not MARKERS.belongs(marker, "other-conv")
    assert not MARKERS.belongs(marker[:-1], CID) and not MARKERS.belongs(None, CID)
    assert not is_our_marker(None) and not is_our_marker("") and not is_our_marker("msg-rs-1")


def test_markers_cannot_be_predicted_without_the_key() -> None:
    """Knowing the pair, the conversation and the scheme is not enough to forge a marker."""
    guesses = {Markers(key, MARKERS.pair).issue(CID)
               for key in (b"0" * 16, b"reamaze-sync-key", MARKERS.key[:-1] + b"2")}
    assert MARKERS.issue(CID) not in guesses


def test_linked_plan_is_independent_of_comment_input_order() -> None:
    """The order in which a connector lists comments does not change the plan."""
    pol = policy(status={"close_reply_template": "Fixed"})
    hd = (comment("m1", at=1), comment("m2", at=1), comment("m3", at=3, internal=True))
    tr = (comment("n1", ticket=IID, at=2), comment("n2", ticket=IID, at=0))
    conv_t, iss_t = conversation(), issue(state=TicketState.CLOSED, updated=4)
    base = agreed(conversation(), issue())
    plans = {reconcile(context(pol), view(conv_t, h),
                       view(iss_t, t), link(snapshot=base))
             for h, t in [(hd, tr), (hd[::-1], tr[::-1]), ((hd[1], hd[2], hd[0]), tr)]}
    assert len(plans) == 1


def test_missing_link_note_is_put_back_once() -> None:
    """A link whose "linked to issue" note was never written gets it, and only once."""
    conv, iss = conversation(tags=("bug",)), issue()
    marker = MARKERS.link_note(CID)
    bare = link(link_note=False, snapshot=agreed(conv, iss))
    plan = reconcile(context(policy()), view(conv), view(iss), bare)
    notes = [a for a in plan.writes if isinstance(a, PostLinkNote)]
    assert [n.marker for n in notes] == [marker]

    already_there = view(conv, (
        ours(comment(marker, internal=True, marker=marker)),))
    plan = reconcile(context(policy()), already_there, view(iss), bare)
    assert not [a for a in plan.actions if isinstance(a, PostLinkNote)]


def test_a_pair_without_link_notes_writes_none_and_keeps_an_old_one() -> None:
    """``link_note = false``: a link without the note is left so; one written before the
    setting changed is still recognised as the sync's own, never copied to the issue."""
    conv, iss = conversation(tags=("bug",)), issue()
    marker = MARKERS.link_note(CID)
    bare = link(link_note=False, snapshot=agreed(conv, iss))
    quiet = policy(link_note=False)
    assert reconcile(context(quiet), view(conv), view(iss), bare).writes == ()

    already_there = view(conv, (ours(comment(marker, internal=True, marker=marker)),))
    plan = reconcile(context(quiet), already_there, view(iss), bare)
    assert plan.writes == ()
    assert [a.source_id for a in plan.actions if isinstance(a, AdoptComment)] == [marker]
    (adopted,) = of_type(plan, AdoptComment)
    assert (adopted.source_side, adopted.source_id) == (Side.TRACKER, marker)
