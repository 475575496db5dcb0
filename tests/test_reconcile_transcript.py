"""Reconciler tables for ``history = "transcript"``: a new issue's description carries the
conversation's public messages; everything else still goes note by note."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from syncer import render
from syncer.markup import Markup, escape
from syncer.models import Attachment, Comment, Visibility
from syncer.plan import (
    AddComment,
    CommentLinkView,
    CoveredComment,
    CreateIssue,
    Plan,
    Side,
    Skip,
    description_target,
)
from syncer.reconcile import reconcile
from tests.reconcile_builders import (
    CID,
    CUSTOMER_EMAIL,
    CUSTOMER_NAME,
    IID,
    MARKERS,
    World,
    agreed,
    apply_plan,
    comment,
    context,
    conversation,
    customer_comment,
    issue,
    link,
    of_type,
    ours,
    policy,
    view,
)

TRANSCRIPT = {"history": "transcript"}
SECRET = "INTERNAL-42 the admin password is hunter2"
FILE = Attachment(name="trace.log", url="https://files.example/trace.log")


def _new(comments: tuple[Comment, ...], *, private: bool = True,
         **pol: object) -> tuple[CreateIssue, list[AddComment], Plan]:
    ctx = context(policy(**{**TRANSCRIPT, **pol}), private=private)
    plan = reconcile(ctx, view(conversation(tags=("bug",)), comments),
                     None, None)
    (create,) = of_type(plan, CreateIssue)
    return create, of_type(plan, AddComment), plan


def _history() -> tuple[Comment, ...]:
    return (comment("m3", body="We shipped a fix, please retry.", at=9),
            customer_comment("m1", body="Login fails on Safari 17.", at=1),
            comment("m2", body=SECRET, internal=True, at=5),
            customer_comment("m4", body="Still failing, log attached.", at=12)
            .model_copy(update={"attachments": (FILE,)}))


def test_public_messages_go_into_the_description_in_order_the_rest_as_notes() -> None:
    """Public messages are transcribed in time order with their attribution; the internal
    note is a private note, the message with an attachment a note of its own."""
    create, copies, _ = _new(_history())
    desc = create.new.description
    assert [c.source_id for c in create.covered] == ["m1", "m3"]
    assert all(c.visibility is Visibility.PUBLIC for c in create.covered)
    msgs = {c.id: c for c in _history()}
    assert [c.fingerprint for c in create.covered] == [msgs["m1"].fingerprint,
                                                       msgs["m3"].fingerprint]
    first = render.helpdesk_comment_to_tracker(policy(), msgs["m1"], markup="plain")
    second = render.helpdesk_comment_to_tracker(policy(), msgs["m3"], markup="plain")
    assert first in desc and second in desc and desc.index(first) < desc.index(second)
    assert "Transcript of the conversation (2 messages):" in desc
    assert desc.splitlines()[-1] == ("End of transcript. Sent as notes instead: 1 message "
                                     "with attachments. Later messages follow as notes.")
    assert "hunter2" not in desc and "INTERNAL-42" not in desc
    assert [(c.source_id, c.new.visibility) for c in copies] == [
        ("m2", Visibility.INTERNAL), ("m4", Visibility.PUBLIC)]
    assert copies[1].new.attachments == (FILE,)


@pytest.mark.parametrize(("mode", "closing"), [
    ("per_message", "Messages from the conversation follow as notes."),
    ("transcript", "End of transcript. Later messages follow as notes."),
], ids=["per-message", "transcript"])
def test_closing_line_says_where_the_messages_are(mode: str, closing: str) -> None:
    """The description's last line tells the reader whether the history is above or below."""
    ctx = context(policy(history=mode))
    msgs = (customer_comment("m1", at=1), comment("m2", at=2))
    plan = reconcile(ctx, view(conversation(tags=("bug",)), msgs),
                     None, None)
    (create,) = of_type(plan, CreateIssue)
    assert create.new.description.splitlines()[-1] == closing
    copied = [a.source_id for a in of_type(plan, AddComment)]
    assert copied == ([] if mode == "transcript" else ["m1", "m2"])
    assert [c.source_id for c in create.covered] == (["m1", "m2"] if mode == "transcript"
                                                     else [])


def test_default_is_per_message() -> None:
    """Without the option nothing changes: every message is its own note."""
    assert policy().history == "per_message"


@pytest.mark.parametrize(("private", "mode", "expected"), [
    (True, "skip", ("AddComment", Visibility.INTERNAL)),
    (False, "skip", ("Skip", None)),
    (False, "placeholder", ("AddComment", Visibility.PUBLIC)),
], ids=["private-tracker", "public-tracker-skip", "public-tracker-placeholder"])
def test_internal_notes_never_enter_the_description(private: bool, mode: str,
                                                    expected: tuple[str, object]) -> None:
    """An internal note follows the per-message policy (private note, skip or placeholder),
    whatever the tracker can do; its text is never in the public description."""
    msgs = (customer_comment("m1", at=1), comment("m2", body=SECRET, internal=True, at=2))
    create, copies, plan = _new(msgs, private=private,
                                visibility={"internal_to_public_tracker": mode})
    assert [c.source_id for c in create.covered] == ["m1"]
    assert "hunter2" not in create.new.description
    kind, visibility = expected
    if kind == "Skip":
        assert copies == []
        assert [s.object_id for s in of_type(plan, Skip)] == ["m2"]
        return
    (copy,) = copies
    assert copy.source_id == "m2" and copy.new.visibility is visibility
    if not private:
        assert "hunter2" not in copy.new.body


def test_collisions_and_our_own_messages_are_not_transcribed() -> None:
    """Read-only (collision) messages and messages carrying our marker stay out."""
    msgs = (customer_comment("m1", at=1),
            comment("m2", body="Jane is also replying", read_only=True, at=2),
            ours(comment("m3", body="Linked to issue #9", marker=MARKERS.link_note(CID), at=3)))
    create, copies, _ = _new(msgs)
    assert [c.source_id for c in create.covered] == ["m1"] and copies == []
    assert "also replying" not in create.new.description
    assert "Linked to issue" not in create.new.description


@pytest.mark.parametrize("pii", [False, True])
def test_transcript_attribution_anonymises_the_customer_and_neutralises_mentions(
        pii: bool) -> None:
    """The transcript attributes like a note copy: the customer is 'Customer' unless PII is
    allowed, and no @mention in a message pings anyone on the tracker."""
    msgs = (customer_comment("m1", body="@admin please help", at=1),)
    create, _, _ = _new(msgs, visibility={"include_customer_pii": pii})
    desc = create.new.description
    assert (CUSTOMER_NAME in desc) is pii and (CUSTOMER_EMAIL in desc) is pii
    assert "Customer (customer)" in desc or pii
    assert "@admin" not in desc and "@\u200badmin please help" in desc


@pytest.mark.parametrize("markup", ["textile", "common_mark"])
def test_transcript_is_escaped_for_the_trackers_markup(markup: Markup) -> None:
    """A customer's "<!--" in the transcript cannot hide the messages after it: every
    entry is written for the tracker's markup."""
    msgs = (customer_comment("m1", body="first <!-- hide the rest", at=1),
            customer_comment("m2", body="second *one*", at=2))
    ctx = context(policy(**TRANSCRIPT), markup=markup)
    plan = reconcile(ctx, view(conversation(tags=("bug",)), msgs),
                     None, None)
    (create,) = of_type(plan, CreateIssue)
    assert "<!--" not in create.new.description
    for m in msgs:
        assert escape(markup, m.body) in create.new.description


def test_empty_conversation_in_transcript_mode_says_notes_follow() -> None:
    """With nothing to transcribe the description is the per-message one."""
    create, copies, _ = _new(())
    assert create.covered == () and copies == []
    assert create.new.description.splitlines()[-1] == (
        "Messages from the conversation follow as notes.")


def test_a_long_history_fills_the_description_then_continues_as_notes() -> None:
    """Messages that would take the description past the size cap go as notes, in order,
    after the ones that fit; the description stays within the cap."""
    big = "x" * 7_000
    msgs = tuple(customer_comment(f"m{i:02}", body=f"{i} {big}", at=i) for i in range(12))
    create, copies, _ = _new(msgs)
    desc = create.new.description
    assert render.description_size(desc) <= render.DESCRIPTION_MAX_BYTES
    fitted = len(create.covered)
    assert 0 < fitted < 12
    assert [c.source_id for c in create.covered] == [f"m{i:02}" for i in range(fitted)]
    assert [c.source_id for c in copies] == [f"m{i:02}" for i in range(fitted, 12)]
    assert desc.splitlines()[-1] == (f"End of transcript. Sent as notes instead: {12 - fitted} "
                                     "messages past the description size limit. Later "
                                     "messages follow as notes.")


def test_a_single_message_too_large_for_the_description_goes_as_a_note() -> None:
    """A message bigger than the cap on its own is not transcribed at all."""
    msgs = (customer_comment("m1", body="y" * (render.DESCRIPTION_MAX_BYTES + 1)),)
    create, copies, _ = _new(msgs)
    assert create.covered == () and [c.source_id for c in copies] == ["m1"]
    assert render.description_size(create.new.description) < 1_000


def test_multibyte_and_many_lines_are_counted_as_the_tracker_stores_them() -> None:
    """The cap counts UTF-8 bytes with CRLF line ends: emoji and short lines cost more."""
    body = "🔥\n" * 4_000  # 4,000 characters of emoji, 8,000 line-end bytes
    msgs = tuple(customer_comment(f"m{i}", body=body, at=i) for i in range(8))
    create, _, _ = _new(msgs)
    assert render.description_size(create.new.description) <= render.DESCRIPTION_MAX_BYTES
    assert len(create.covered) < 8


def test_transcribed_messages_are_not_copied_again_later_only_new_ones_are() -> None:
    """Once applied, the covered messages are recorded as copied: the next pass sends only
    the message that arrived after the create, as a note."""
    msgs = (customer_comment("m1", at=1), comment("m2", at=2))
    world = World(ctx=context(policy(**TRANSCRIPT)),
                  conversation=view(conversation(tags=("bug",)), msgs))
    world = apply_plan(world, world.reconcile())
    assert world.issue is not None and world.link is not None
    assert world.issue.comments == ()  # no note for a transcribed message
    assert world.reconcile().writes == ()
    later = customer_comment("m3", body="Any news?", at=3000)
    world = World(ctx=world.ctx, issue=world.issue, link=world.link, clock=world.clock,
                  conversation=world.conversation.model_copy(
                      update={"comments": (*world.conversation.comments, later)}))
    assert [a.source_id for a in of_type(world.reconcile(), AddComment)] == ["m3"]


def test_the_description_placeholder_never_hides_a_real_tracker_comment() -> None:
    """A tracker comment whose id happens to equal the placeholder target is still copied:
    the placeholder is not treated as something the engine wrote."""
    conv, iss = conversation(tags=("bug",)), issue()
    covered = CommentLinkView(source_side=Side.HELPDESK, source_id="m1",
                              target_id=description_target(IID),
                              fingerprint=customer_comment("m1").fingerprint)
    odd = comment(description_target(IID), ticket=IID, body="A real note", by_staff=True)
    plan = reconcile(context(policy(**TRANSCRIPT)),
                     view(conv, (customer_comment("m1"),)),
                     view(iss, (odd,)),
                     link(comment_links=(covered,), snapshot=agreed(conv, iss)))
    (copy,) = of_type(plan, AddComment)
    assert copy.target is Side.HELPDESK and copy.source_id == description_target(IID)


def test_a_covered_message_cannot_be_internal() -> None:
    """The action itself refuses an internal message in a description."""
    with pytest.raises(ValidationError, match="cannot be private"):
        CoveredComment(source_id="m1", fingerprint="f", visibility=Visibility.INTERNAL)


def test_history_option_is_validated() -> None:
    """Only the two documented modes are accepted."""
    with pytest.raises(ValidationError):
        policy(history="digest")
