"""Reconciler tables for copied comments edited or deleted at their source."""

from __future__ import annotations

from dataclasses import replace

from syncer.models import Comment, Visibility
from syncer.plan import (
    GONE,
    Action,
    AddComment,
    AdoptComment,
    CommentLinkView,
    CopyEdit,
    Plan,
    Side,
    Skip,
    UpdateComment,
)
from syncer.reconcile import reconcile
from tests.reconcile_builders import (
    CID,
    IID,
    MARKERS,
    World,
    agreed,
    apply_plan,
    comment,
    context,
    conversation,
    issue,
    link,
    of_type,
    ours,
    policy,
    view,
)

PUB, INT = Visibility.PUBLIC, Visibility.INTERNAL
OFF = {"edits": {"tracker_to_helpdesk": False, "helpdesk_to_tracker": False}}


def _cl(side: Side, source: str, target: str, fingerprint: str,
        visibility: Visibility = INT) -> CommentLinkView:
    return CommentLinkView(source_side=side, source_id=source, target_id=target,
                           fingerprint=fingerprint, visibility=visibility)


def _plan(ctx: object, hd: tuple[Comment, ...] = (), tr: tuple[Comment, ...] = (),
          links: tuple[CommentLinkView, ...] = ()) -> Plan:
    conv, iss = conversation(), issue()
    return reconcile(ctx, view(conv, hd), view(iss, tr),  # type: ignore[arg-type]
                     link(comment_links=links, snapshot=agreed(conv, iss)))


def _writes(plan: Plan) -> tuple[Action, ...]:
    return plan.writes


# --- tracker note edited or deleted -> an internal note in Re:amaze --------------------

N1 = comment("n1", ticket=IID, body="Fixed in 2.1")
N1_EDITED = N1.model_copy(update={"body": "Fixed in 2.2 actually"})
COPY = ours(comment("m9", body="copy of n1", internal=True,
                    marker=MARKERS.comment(CID, Side.TRACKER, "n1")))


def test_tracker_note_edited_after_copy_goes_as_one_internal_note() -> None:
    """The new text reaches Re:amaze as a new internal note, keyed by the new text."""
    plan = _plan(context(), hd=(COPY,), tr=(N1_EDITED,),
                 links=(_cl(Side.TRACKER, "n1", "m9", N1.fingerprint),))
    [note] = of_type(plan, AddComment)
    assert note.target is Side.HELPDESK and note.ticket_id == CID
    assert note.new.visibility is INT and not note.new.notify_customer
    assert "Fixed in 2.2 actually" in note.new.body and "edited" in note.new.body
    assert note.new.marker == MARKERS.edit_note(CID, Side.TRACKER, "n1",
                                                N1_EDITED.fingerprint)
    assert note.edit == CopyEdit(source_side=Side.TRACKER, source_id="n1",
                                 fingerprint=N1_EDITED.fingerprint)
    assert plan.writes == (note,)


def test_edit_of_a_note_emailed_to_the_customer_is_still_internal() -> None:
    """A public tracker note copied as a customer reply: its correction is never emailed."""
    ctx = context(policy(visibility={"customer_replies_from_tracker": True}))
    plan = _plan(ctx, hd=(COPY.model_copy(update={"visibility": PUB}),), tr=(N1_EDITED,),
                 links=(_cl(Side.TRACKER, "n1", "m9", N1.fingerprint, PUB),))
    [note] = of_type(plan, AddComment)
    assert note.new.visibility is INT and note.new.notify_customer is False


def test_a_told_edit_is_not_told_again() -> None:
    """Once the link records the new fingerprint, the same text plans nothing."""
    plan = _plan(context(), hd=(COPY,), tr=(N1_EDITED,),
                 links=(_cl(Side.TRACKER, "n1", "m9", N1_EDITED.fingerprint),))
    assert plan.writes == () and of_type(plan, Skip) == []


def test_a_second_edit_gets_a_note_of_its_own() -> None:
    """Each new text is a new edit: another note, under another key."""
    again = N1.model_copy(update={"body": "Fixed in 2.3"})
    first = _plan(context(), tr=(N1_EDITED,),
                  links=(_cl(Side.TRACKER, "n1", "m9", N1.fingerprint),))
    second = _plan(context(), tr=(again,),
                   links=(_cl(Side.TRACKER, "n1", "m9", N1_EDITED.fingerprint),))
    [a], [b] = of_type(first, AddComment), of_type(second, AddComment)
    assert a.new.marker != b.new.marker and "Fixed in 2.3" in b.new.body


def test_edit_note_written_but_not_recorded_is_adopted_not_sent_again() -> None:
    """A crash between the note and its record: the note is found by its key and author,
    and recorded with the edit; nothing is sent."""
    marker = MARKERS.edit_note(CID, Side.TRACKER, "n1", N1_EDITED.fingerprint)
    written = ours(comment("m10", body="note", internal=True, marker=marker))
    plan = _plan(context(), hd=(COPY, written), tr=(N1_EDITED,),
                 links=(_cl(Side.TRACKER, "n1", "m9", N1.fingerprint),))
    assert plan.writes == ()
    [adopt] = of_type(plan, AdoptComment)
    assert (adopt.source_id, adopt.target_id) == (marker, "m10")
    assert adopt.edit is not None and adopt.edit.fingerprint == N1_EDITED.fingerprint


def test_tracker_note_deleted_after_copy_goes_as_one_internal_note() -> None:
    """A copied note gone from the issue: an internal note says so, then never again."""
    links = (_cl(Side.TRACKER, "n1", "m9", N1.fingerprint),)
    [note] = of_type(_plan(context(), hd=(COPY,), links=links), AddComment)
    assert note.new.visibility is INT and "deleted" in note.new.body and "n1" in note.new.body
    assert note.edit is not None and note.edit.fingerprint == GONE
    assert note.new.marker == MARKERS.edit_note(CID, Side.TRACKER, "n1", GONE)
    told = (_cl(Side.TRACKER, "n1", "m9", GONE),)
    assert _plan(context(), hd=(COPY,), links=told).writes == ()


def test_engine_notes_recorded_under_their_markers_are_not_deleted_notes() -> None:
    """The link note, close replies and edit notes are recorded with a marker as their
    source: they are not tracker comments, so their absence there says nothing."""
    links = (_cl(Side.TRACKER, MARKERS.link_note(CID), "m1", ""),
             _cl(Side.TRACKER, MARKERS.edit_note(CID, Side.TRACKER, "n1", "f" * 32), "m2", ""))
    note = ours(comment("m1", internal=True, marker=MARKERS.link_note(CID)))
    assert _plan(context(), hd=(note,), links=links).writes == ()


def test_policy_off_tells_neither_edits_nor_deletes_and_says_why() -> None:
    """With [pairs.edits] tracker_to_helpdesk = false nothing is written; the plan says why."""
    ctx = context(policy(**OFF))
    edited = _plan(ctx, hd=(COPY,), tr=(N1_EDITED,),
                   links=(_cl(Side.TRACKER, "n1", "m9", N1.fingerprint),))
    deleted = _plan(ctx, hd=(COPY,), links=(_cl(Side.TRACKER, "n1", "m9", N1.fingerprint),))
    assert edited.writes == () and deleted.writes == ()
    [a], [b] = of_type(edited, Skip), of_type(deleted, Skip)
    assert a.reason.startswith("edited ") and b.reason.startswith("deleted ")


def test_unknown_fingerprint_is_not_taken_for_an_edit() -> None:
    """A link that never knew what it copied (an empty fingerprint) reports nothing."""
    plan = _plan(context(), hd=(COPY,), tr=(N1_EDITED,),
                 links=(_cl(Side.TRACKER, "n1", "m9", ""),))
    assert plan.writes == ()


# --- Re:amaze internal note edited -> its tracker copy rewritten ------------------------

M1 = comment("m1", body="Customer is on plan X", internal=True)
M1_EDITED = M1.model_copy(update={"body": "Customer is on plan Y"})
TR_COPY = ours(comment("n7", ticket=IID, body="copy", internal=True,
                       marker=MARKERS.comment(CID, Side.HELPDESK, "m1")))
M1_LINK = _cl(Side.HELPDESK, "m1", "n7", M1.fingerprint)


def test_helpdesk_internal_note_edited_rewrites_its_private_tracker_copy() -> None:
    """The copy gets the new text, stays private, and the link learns the new text."""
    plan = _plan(context(), hd=(M1_EDITED,), tr=(TR_COPY,), links=(M1_LINK,))
    [update] = plan.writes
    assert isinstance(update, UpdateComment)
    assert (update.target, update.ticket_id, update.comment_id) == (Side.TRACKER, IID, "n7")
    assert update.visibility is INT and "Customer is on plan Y" in update.body
    assert update.edit == CopyEdit(source_side=Side.HELPDESK, source_id="m1",
                                   fingerprint=M1_EDITED.fingerprint)


def test_helpdesk_edits_not_sent_where_they_cannot_or_must_not_go() -> None:
    """No rewrite: policy off, a tracker that cannot edit, a placeholder copy on a tracker
    without private comments, a public message, a copy gone or not written by us."""
    assert _plan(context(policy(**OFF)), hd=(M1_EDITED,), tr=(TR_COPY,),
                 links=(M1_LINK,)).writes == ()
    assert _plan(context(edit=False), hd=(M1_EDITED,), tr=(TR_COPY,),
                 links=(M1_LINK,)).writes == ()
    placeholder = TR_COPY.model_copy(update={"visibility": PUB})
    assert _plan(context(private=False), hd=(M1_EDITED,), tr=(placeholder,),
                 links=(_cl(Side.HELPDESK, "m1", "n7", M1.fingerprint, PUB),)).writes == ()
    public = M1_EDITED.model_copy(update={"visibility": PUB})
    assert _plan(context(), hd=(public,), tr=(TR_COPY.model_copy(update={"visibility": PUB}),),
                 links=(_cl(Side.HELPDESK, "m1", "n7", M1.fingerprint, PUB),)).writes == ()
    assert _plan(context(), hd=(M1_EDITED,), links=(M1_LINK,)).writes == ()
    not_ours = TR_COPY.model_copy(update={"author": comment("x").author})
    assert not any(isinstance(a, UpdateComment) for a in _plan(
        context(), hd=(M1_EDITED,), tr=(not_ours,), links=(M1_LINK,)).writes)


def test_edits_converge_and_never_echo() -> None:
    """Applied, an edit each way leaves a world that plans nothing: our rewrite of the
    tracker copy is not taken for an edited tracker note, nor our edit note for a new
    Re:amaze message."""
    conv, iss = conversation(), issue()
    world = World(ctx=context(), conversation=view(conv, (M1_EDITED, COPY)),
                  issue=view(iss, (TR_COPY, N1_EDITED)),
                  link=link(comment_links=(M1_LINK, _cl(Side.TRACKER, "n1", "m9",
                                                        N1.fingerprint)),
                            snapshot=agreed(conv, iss)))
    first = world.reconcile()
    assert {type(a) for a in first.writes} == {UpdateComment, AddComment}
    after = apply_plan(world, first)
    assert after.reconcile().writes == ()
    gone = replace(after, issue=after.issue.model_copy(update={"comments": tuple(  # type: ignore[union-attr]
        c for c in after.issue.comments if c.id != "n1")}))  # type: ignore[union-attr]
    deleted = gone.reconcile()
    [note] = deleted.writes
    assert isinstance(note, AddComment) and "deleted" in note.new.body
    assert apply_plan(gone, deleted).reconcile().writes == ()
