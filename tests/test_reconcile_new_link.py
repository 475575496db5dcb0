"""Reconciler tables: conversations without a link, and objects it must leave alone."""

from __future__ import annotations

import pytest

from syncer.models import Attachment, Ticket, TicketState, Visibility
from syncer.plan import (
    AddComment,
    AdoptComment,
    AdoptIssue,
    CreateIssue,
    PostLinkNote,
    SaveSnapshot,
    Side,
    Skip,
)
from syncer.reconcile import matches, reconcile
from tests.reconcile_builders import (
    CID,
    CUSTOMER_EMAIL,
    CUSTOMER_NAME,
    MARKERS,
    ME,
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

MATCHING = policy(match={"tags": ["bug"], "channels": ["vip"], "statuses": ["on_hold"]})


@pytest.mark.parametrize(("tags", "channel", "state", "expected"), [
    (("bug",), "support", TicketState.OPEN, "tag 'bug'"),
    (("billing", "bug"), None, TicketState.OPEN, "tag 'bug'"),
    ((), "vip", TicketState.OPEN, "channel 'vip'"),
    ((), "support", TicketState.ON_HOLD, "status on_hold"),
    ((), "support", TicketState.OPEN, None),
    (("Bug",), "VIP", TicketState.PENDING, None),  # rules are exact, not case-folded
    ((), None, TicketState.CLOSED, None),
], ids=["tag", "tag-among-others", "channel", "status", "none", "case-differs", "no-channel"])
def test_match_rules_any_of_tags_channels_statuses(tags: tuple[str, ...], channel: str | None,
                                                   state: TicketState,
                                                   expected: str | None) -> None:
    """A conversation matches when any one of the tag, channel or status rules hits."""
    conv = view(conversation(tags=tags, channel=channel, state=state))
    assert matches(MATCHING, conv) == expected


def test_empty_match_rules_never_match() -> None:
    """A pair with no rules at all creates no issues (it does not match everything)."""
    pol = policy(match={})
    conv = view(conversation(tags=("bug",), channel="vip"))
    assert matches(pol, conv) is None
    plan = reconcile(context(pol), conv, None, None)
    assert plan.writes == ()
    assert [type(a) for a in plan.actions] == [Skip]


def test_matching_conversation_creates_issue_link_note_and_copies() -> None:
    """An unlinked matching conversation gets an issue, a link note and its messages in order."""
    msgs = (customer_comment("m2", body="Second", at=5),
            comment("m1", body="First from staff", at=2),
            comment("m3", body="Private triage", internal=True, at=9))
    conv = view(conversation(tags=("bug",)), comments=msgs)
    plan = reconcile(context(), conv, None, None)

    create, note, *rest, snap = plan.actions
    copies = [c for c in rest if isinstance(c, AddComment)]
    assert len(copies) == len(rest) == 3
    assert isinstance(create, CreateIssue) and create.conversation_id == CID
    assert isinstance(snap, SaveSnapshot)
    assert create.new.marker == MARKERS.issue(CID)
    assert create.new.subject == "Login fails on Safari"
    assert isinstance(note, PostLinkNote)
    assert note.marker == MARKERS.link_note(CID)
    assert [c.source_id for c in copies] == ["m1", "m2", "m3"]
    for c in copies:
        assert c.target is Side.TRACKER and c.ticket_id is None
        assert c.new.marker == MARKERS.comment(CID, Side.HELPDESK, c.source_id)
    assert [c.new.visibility for c in copies] == [Visibility.PUBLIC, Visibility.PUBLIC,
                                                  Visibility.INTERNAL]
    assert plan.writes == plan.actions[:-1]


def test_a_pair_without_link_notes_writes_nothing_in_the_new_conversation() -> None:
    """``link_note = false``: the issue and the copies, no Re:amaze write; the snapshot
    expects the conversation's own messages only."""
    msgs = (customer_comment("m1", at=1), comment("m2", internal=True, at=2))
    plan = reconcile(context(policy(link_note=False)),
                     view(conversation(tags=("bug",)), comments=msgs), None, None)
    assert of_type(plan, PostLinkNote) == []
    assert [a for a in plan.writes if getattr(a, "target", Side.TRACKER) is Side.HELPDESK
            or isinstance(a, PostLinkNote)] == []
    assert len(of_type(plan, CreateIssue)) == 1 and len(of_type(plan, AddComment)) == 2
    (snap,) = of_type(plan, SaveSnapshot)
    assert snap.snapshot.helpdesk_messages == 2


@pytest.mark.parametrize("caps", [{}, {"labels": False, "assignee": False}])
def test_new_link_snapshot_is_what_the_issue_is_created_with(caps: dict[str, bool]) -> None:
    """The first snapshot holds the values the issue is created with, so the next pass is quiet."""
    pol = policy(tag_to_label={"bug": "defect"}, staff_to_user={"alice@acme.example": "7"})
    conv = conversation(tags=("vip", "bug"), assignee="alice@acme.example",
                        state=TicketState.PENDING)
    plan = reconcile(context(pol, **caps), view(conv), None, None)
    (create,) = of_type(plan, CreateIssue)
    (save,) = of_type(plan, SaveSnapshot)
    assert plan.actions[-1] == save
    assert save.snapshot.helpdesk_state is TicketState.PENDING
    assert save.snapshot.tracker_state is TicketState.OPEN
    assert save.snapshot.helpdesk_tags == ("bug", "vip")
    assert save.snapshot.helpdesk_assignee == "alice@acme.example"
    assert save.snapshot.tracker_labels == create.new.tags
    assert save.snapshot.tracker_assignee == create.new.assignee_id


def test_copies_keep_source_fingerprint_and_attachments() -> None:
    """Each copy carries the source fingerprint (for edit detection) and its attachments."""
    att = Attachment(name="trace.log", url="https://files.example/trace.log")
    msg = comment("m1", body="see  log", attachments=(att,))
    plan = reconcile(context(), view(conversation(tags=("bug",)), comments=(msg,)),
                     None, None)
    (copy,) = of_type(plan, AddComment)
    assert copy.source_fingerprint == msg.fingerprint
    assert copy.new.attachments == (att,)


def test_same_created_time_is_ordered_by_id() -> None:
    """Messages created in the same second are copied in a stable id order."""
    msgs = (comment("b", at=3), comment("a", at=3), comment("c", at=1))
    plan = reconcile(context(), view(conversation(tags=("bug",)), comments=msgs),
                     None, None)
    assert [a.source_id for a in of_type(plan, AddComment)] == ["c", "a", "b"]


def test_collision_and_our_own_messages_are_never_copied() -> None:
    """Read-only (collision) messages and messages carrying our marker are left out."""
    msgs = (comment("m1", body="real"),
            comment("m2", body="someone else is typing", read_only=True),
            ours(comment("m3", body="Linked to issue #9", internal=True,
                         marker=MARKERS.link_note(CID))))
    plan = reconcile(context(), view(conversation(tags=("bug",)), comments=msgs),
                     None, None)
    assert [a.source_id for a in of_type(plan, AddComment)] == ["m1"]


@pytest.mark.parametrize("conv", [conversation(tags=())], ids=["not-matching"])
def test_unlinked_conversation_that_must_not_get_an_issue_is_skipped(conv: Ticket) -> None:
    """Non-matching conversations produce only a Skip."""
    plan = reconcile(context(), view(conv, (comment("m1"),)), None, None)
    assert plan.writes == ()
    (skip,) = plan.actions
    assert isinstance(skip, Skip) and skip.object_id == CID and skip.reason


def test_issue_without_a_link_is_skipped() -> None:
    """An issue nobody linked is never touched (we do not create conversations)."""
    plan = reconcile(context(), None, view(issue(), (comment("n1"),)), None)
    (skip,) = plan.actions
    assert isinstance(skip, Skip) and skip.object_id == "42"


def test_nothing_at_all_is_a_skip() -> None:
    """Called with neither side nor link, the reconciler explains instead of failing."""
    plan = reconcile(context(), None, None, None)
    assert plan.writes == () and len(plan.actions) == 1


@pytest.mark.parametrize(("template", "channel", "expected"), [
    ("{subject}", "support", "Login fails on Safari"),
    ("[{channel}] {subject} ({slug})", "support", f"[Support inbox] Login fails on Safari ({CID})"),
    ("[{channel}] {subject}", None, "[] Login fails on Safari"),
], ids=["default", "all-fields", "no-channel"])
def test_issue_title_comes_from_the_template(template: str, channel: str | None,
                                             expected: str) -> None:
    """The issue title is the pair's title_template filled from the conversation."""
    conv = view(conversation(tags=("bug",), channel=channel))
    (create,) = of_type(reconcile(context(policy(title_template=template)), conv, None, None),
                        CreateIssue)
    assert create.new.subject == expected


@pytest.mark.parametrize("pii", [False, True])
def test_issue_description_links_conversation_and_gates_customer(pii: bool) -> None:
    """The description links the conversation and names the channel; the customer only with PII."""
    pol = policy(visibility={"include_customer_pii": pii})
    conv = view(conversation(tags=("bug",)))
    (create,) = of_type(reconcile(context(pol), conv, None, None), CreateIssue)
    desc = create.new.description
    assert "https://acme.reamaze.io/admin/conversations/x" in desc
    assert "Channel: Support inbox" in desc
    assert (CUSTOMER_NAME in desc) is pii
    assert (CUSTOMER_EMAIL in desc) is pii


def test_customer_pii_is_not_in_copied_messages_by_default() -> None:
    """A customer's name and email are replaced by 'Customer' in tracker copies."""
    plan = reconcile(context(), view(conversation(tags=("bug",)),
                                         comments=(customer_comment("m1"),)), None, None)
    (copy,) = of_type(plan, AddComment)
    assert CUSTOMER_NAME not in copy.new.body and CUSTOMER_EMAIL not in copy.new.body
    assert "Customer" in copy.new.body and "It still fails" in copy.new.body


def test_customer_pii_is_in_copied_messages_when_allowed() -> None:
    """With include_customer_pii the customer's name attributes the copy."""
    pol = policy(visibility={"include_customer_pii": True})
    plan = reconcile(context(pol), view(conversation(tags=("bug",)),
                                            comments=(customer_comment("m1"),)), None, None)
    (copy,) = of_type(plan, AddComment)
    assert CUSTOMER_NAME in copy.new.body


@pytest.mark.parametrize(("caps", "direction", "expected"), [
    ({}, "both", "7"),
    ({}, "helpdesk_to_tracker", "7"),
    ({}, "tracker_to_helpdesk", None),
    ({}, "none", None),
    ({"assignee": False}, "both", None),
], ids=["both", "push", "pull-only", "none", "no-capability"])
def test_new_issue_assignee_respects_map_direction_and_capability(
        caps: dict[str, bool], direction: str, expected: str | None) -> None:
    """The new issue is assigned to the mapped user only when assignees may flow to the tracker."""
    pol = policy(staff_to_user={"alice@acme.example": "7"},
                 assignee_field={"direction": direction})
    conv = view(conversation(tags=("bug",), assignee="alice@acme.example"))
    (create,) = of_type(reconcile(context(pol, **caps), conv, None, None), CreateIssue)
    assert create.new.assignee_id == expected


def test_new_issue_unmapped_assignee_is_left_empty() -> None:
    """A staff member missing from staff_to_user does not assign the issue to anyone."""
    pol = policy(staff_to_user={"alice@acme.example": "7"})
    conv = view(conversation(tags=("bug",), assignee="bob@acme.example"))
    (create,) = of_type(reconcile(context(pol), conv, None, None), CreateIssue)
    assert create.new.assignee_id is None


@pytest.mark.parametrize(("caps", "direction", "expected"), [
    ({}, "helpdesk_to_tracker", ("defect", "p1")),
    ({}, "both", ("defect", "p1")),
    ({}, "tracker_to_helpdesk", ()),
    ({}, "none", ()),
    ({"labels": False}, "helpdesk_to_tracker", ()),
], ids=["push", "both", "pull-only", "none", "no-capability"])
def test_new_issue_labels_are_mapped_tags_when_allowed(
        caps: dict[str, bool], direction: str, expected: tuple[str, ...]) -> None:
    """Only mapped tags become labels, and only when labels may flow to the tracker."""
    pol = policy(tag_to_label={"bug": "defect", "urgent": "p1", "crash": "defect"},
                 tags_field={"direction": direction})
    conv = view(conversation(tags=("urgent", "bug", "crash", "vip")))
    (create,) = of_type(reconcile(context(pol, **caps), conv, None, None), CreateIssue)
    assert create.new.tags == expected


def test_link_exists_but_issue_not_fetched_plans_nothing() -> None:
    """An active link whose issue was not supplied is not treated as a new conversation."""
    conv = view(conversation(tags=("bug",)), comments=(comment("m1"),))
    plan = reconcile(context(), conv, None, link())
    assert plan.actions == ()


# --- re-adoption: the state lost the link ----------------------------------------------

def _our_issue(**kw: object) -> Ticket:
    return issue(marker=MARKERS.issue(CID)).model_copy(update={"author_id": ME, **kw})


def test_conversation_whose_issue_exists_adopts_it_instead_of_creating_another() -> None:
    """With the link lost, an issue found by the conversation's marker and created by the
    sync's user is adopted: no second issue, no comment sent again, links rebuilt."""
    m1, m2 = comment("m1", body="First"), comment("m2", body="Second", at=2)
    copy = ours(comment("n1", ticket="42", body="copy of First",
                        marker=MARKERS.comment(CID, Side.HELPDESK, "m1")))
    note = ours(comment("m9", internal=True, body="Linked", marker=MARKERS.link_note(CID),
                        at=3))
    plan = reconcile(context(), view(conversation(tags=("bug",)), (m1, m2, note)),
                     view(_our_issue(), (copy,)), None)
    assert of_type(plan, CreateIssue) == [] and of_type(plan, PostLinkNote) == []
    assert plan.actions[0] == AdoptIssue(conversation_id=CID, issue_id="42")
    assert {(a.source_id, a.target_id) for a in of_type(plan, AdoptComment)} == {
        ("m1", "n1"), (MARKERS.link_note(CID), "m9")}
    (missing,) = of_type(plan, AddComment)
    assert (missing.source_id, missing.ticket_id) == ("m2", "42")


def test_messages_in_an_adopted_transcript_description_are_not_sent_again() -> None:
    """Transcript mode: the messages the issue's description carries count as copied."""
    from syncer import render

    pol = policy(history="transcript")
    m1, m2 = customer_comment("m1", body="It crashes"), comment("m2", body="Later", at=4)
    description = ("Transcript\n\n" + render.helpdesk_comment_to_tracker(pol, m1, markup="plain")
                   + "\n\nEnd")
    plan = reconcile(context(pol), view(conversation(tags=("bug",)), (m1, m2)),
                     view(_our_issue(description=description)), None)
    assert [(a.source_id, a.target_id) for a in of_type(plan, AdoptComment)] == [
        ("m1", "42:description")]
    assert [a.source_id for a in of_type(plan, AddComment)] == ["m2"]


@pytest.mark.parametrize("changes", [{"author_id": "someone-else"}, {"author_id": None},
                                     {"marker": MARKERS.issue("another-conversation")}],
                         ids=["other-author", "unknown-author", "other-conversation"])
def test_an_issue_that_is_not_provably_ours_is_never_adopted(changes: dict[str, object]
                                                             ) -> None:
    """A forged or copied marker on someone else's issue does not get the conversation's
    notes: nothing is written there."""
    plan = reconcile(context(), view(conversation(tags=("bug",)), (comment("m1"),)),
                     view(_our_issue(**changes)), None)
    assert plan.writes == () and of_type(plan, AdoptIssue) == []
