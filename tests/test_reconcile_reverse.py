"""The reverse-creation decisions (``syncer.reconcile_reverse``): pure, no I/O."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reconcile_builders import (
    CID,
    IID,
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

from syncer.explain import explain_unlinked_issue
from syncer.models import REVERSE_ISSUE_DATA_KEY, Ticket, User, Visibility, custom_field_key
from syncer.plan import (
    AddComment,
    AdoptComment,
    AdoptIssue,
    Plan,
    RemoveComment,
    Side,
    UpdateTicket,
)
from syncer.reconcile import reconcile
from syncer.reconcile_reverse import (
    OPENING,
    AdoptConversation,
    CreateConversation,
    NoConversation,
    contact_for,
    opening_source,
    readopt,
    reconcile_reverse,
    reverse_issue_of,
    reverse_link_plan,
    reverse_match,
)

FALLBACK = "support@acme.example"


def rules(**overrides: Any) -> dict[str, Any]:
    return {"enabled": True, "labels": ["customer-bug"], "tracker_ids": [1],
            "fallback_contact": FALLBACK, **overrides}


def ctx(**overrides: Any) -> Any:
    return context(policy(reverse=rules(**overrides), staff_to_user={"jane@acme.example": "7"}))


def bug(*, labels: tuple[str, ...] = ("customer-bug",), description: str | None = None,
        tracker: str | None = None, assignee: str | None = None) -> Ticket:
    t = issue(labels=labels, assignee=assignee)
    data = {"tracker_id": tracker, "tracker": "Bug"} if tracker else {}
    return t.model_copy(update={"description": description, "data": data})


@pytest.mark.parametrize(("ticket", "why"), [
    (bug(), "label 'customer-bug'"),
    (bug(labels=(), tracker="1"), "tracker 'Bug'"),
    (bug(labels=("other",)), None),
    (bug(labels=(), tracker="2"), None),
])
def test_an_issue_matches_by_label_or_tracker(ticket: Ticket, why: str | None) -> None:
    """A label of the rule (GitHub) or a tracker id of the rule (Redmine) matches."""
    assert reverse_match(ctx().policy.reverse, ticket) == why


def test_nothing_matches_while_reverse_creation_is_off() -> None:
    """Off by default: a labelled issue gets nothing."""
    off = context(policy())
    assert reverse_match(off.policy.reverse, bug()) is None
    assert isinstance(reconcile_reverse(off, bug()), NoConversation)


def test_a_matching_issue_gets_a_conversation_for_the_customer_it_names() -> None:
    """The first ``Customer: email`` line names the contact; the create is keyed by the
    issue, tagged as configured, and opens with the fixed text only."""
    c = ctx(tags=["from-tracker"], category="bugs")
    action = reconcile_reverse(c, bug(description="Crash.\n\nCustomer: erin@x.example\n"))
    assert isinstance(action, CreateConversation)
    assert action.new.contact_email == "erin@x.example" and action.contact_from == "issue"
    assert action.new.marker == c.markers.reverse_conversation(IID)
    assert action.new.tags == ("from-tracker",) and action.new.category == "bugs"
    assert action.new.opening == OPENING


@pytest.mark.parametrize("line", ["Customer: erin@x.example", "customer:erin@x.example",
                                  "**Customer:** <erin@x.example>", "- Customer: erin@x.example",
                                  "> Customer: erin@x.example",
                                  "Customer: *erin@x.example*"])
def test_the_customer_line_is_read_as_people_write_it(line: str) -> None:
    """Quoted, listed, emphasised or bracketed: the address alone is taken."""
    rules_ = ctx().policy.reverse
    assert contact_for(rules_, bug(description=f"Steps.\n{line}\n")) == (
        "erin@x.example", "issue")


@pytest.mark.parametrize("description", [None, "No customer here.", "Customer: not-an-email",
                                         "The customer: said it fails"])
def test_without_a_customer_line_the_fallback_contact_is_used(description: str | None) -> None:
    """No usable Customer line: the configured fallback contact."""
    assert contact_for(ctx().policy.reverse, bug(description=description)) == (
        FALLBACK, "fallback_contact")


def test_the_contact_custom_field_comes_before_the_customer_line() -> None:
    """Redmine: an email in the configured custom field names the contact; a blank or
    malformed one falls back to the description, then to the fallback contact."""
    rules_ = ctx(contact_field_id=4).policy.reverse
    t = bug(description="Customer: line@x.example")
    field = custom_field_key(4)
    assert contact_for(rules_, t.model_copy(update={"data": {field: "cf@x.example"}})) == (
        "cf@x.example", "custom_field")
    assert contact_for(rules_, t.model_copy(update={"data": {field: "n/a"}})) == (
        "line@x.example", "issue")
    assert contact_for(rules_, bug()) == (FALLBACK, "fallback_contact")


def test_a_conversation_found_by_the_issue_key_is_adopted_not_created_again() -> None:
    """The state lost the link: the conversation carrying the issue's key is taken back."""
    c = ctx()
    found = conversation("made-earlier", marker=c.markers.reverse_conversation(IID))
    assert reconcile_reverse(c, bug(), found) == AdoptConversation(
        issue_id=IID, conversation_id="made-earlier")


def test_an_issue_the_sync_created_gets_no_conversation() -> None:
    """An issue with the engine's marker (made for a conversation) matches, yet gets none."""
    c = ctx()
    ours_ = bug().model_copy(update={"marker": c.markers.issue("some-conversation")})
    assert isinstance(reconcile_reverse(c, ours_), NoConversation)


def test_a_conversation_with_another_key_is_not_adopted() -> None:
    """Only this issue's key counts (another issue's conversation is no match)."""
    c = ctx()
    found = conversation("other", marker=c.markers.reverse_conversation("99"))
    assert isinstance(reconcile_reverse(c, bug(), found), CreateConversation)


def test_an_issue_that_lost_its_label_after_linking_is_synced_as_any_link() -> None:
    """Once linked, the reverse rule is not consulted: a removed label changes nothing
    (no action of the link's plan is about creating or unlinking)."""
    c = ctx()
    iss = bug(labels=())
    conv = conversation()
    lk = link(snapshot=None).model_copy(update={"origin": Side.TRACKER})
    seen, extra = reverse_link_plan(c, view(conv), view(iss), lk)
    plan = reconcile(c, view(conv), view(iss), seen)
    assert all(type(a).__name__ not in ("CreateIssue", "MarkOrphaned")
               for a in extra + plan.actions)


def test_a_new_reverse_link_records_its_opening_and_posts_the_details_once() -> None:
    """The opening message is recorded as the sync's (never copied to the issue); the
    issue's details go as one internal note; the assignee maps through the staff map."""
    c = ctx()
    iss = bug(description="Steps: open, click.", assignee="7")
    opening = comment("m-1", body=OPENING, by_staff=False, at=0)
    conv = conversation()
    lk = link(snapshot=None).model_copy(update={"origin": Side.TRACKER})
    seen, extra = reverse_link_plan(c, view(conv, (opening,)), view(iss), lk)
    plan = Plan(pair="p", actions=extra)
    [adopt] = of_type(plan, AdoptComment)
    assert (adopt.source_id, adopt.target_id) == (opening_source(IID), "m-1")
    [note] = of_type(plan, AddComment)
    assert note.new.visibility is Visibility.INTERNAL and not note.new.notify_customer
    assert "Steps: open, click." in note.new.body
    [assign] = of_type(plan, UpdateTicket)
    assert assign.target is Side.HELPDESK and assign.update.assignee_id == "jane@acme.example"
    rest = reconcile(c, view(conv, (opening,)), view(iss), seen)
    assert not [a for a in of_type(rest, AddComment) if a.target is Side.TRACKER]


def test_the_details_note_reads_the_issue_as_the_tracker_shows_it() -> None:
    """The issue's description reaches Re:amaze as readable text, its markup rendered."""
    c = context(policy(reverse=rules(), staff_to_user={"jane@acme.example": "7"}),
                markup="textile")
    iss = bug(description='* open "the page":https://app.example/p\n* click *Save*')
    opening = comment("m-1", body=OPENING, by_staff=False, at=0)
    lk = link(snapshot=None).model_copy(update={"origin": Side.TRACKER})
    _seen, extra = reverse_link_plan(c, view(conversation(), (opening,)), view(iss), lk)
    [note] = of_type(Plan(pair="p", actions=extra), AddComment)
    assert "\n\n- open the page (https://app.example/p)\n- click Save\n\n" in note.new.body


def test_the_details_note_found_is_adopted_and_a_public_one_is_removed() -> None:
    """A repeat finds the details note by its marker; one that came back public is never
    kept as good."""
    c = ctx()
    marker = c.markers.comment(CID, Side.TRACKER, f"{IID}:description")
    lk = link(snapshot=None).model_copy(update={"origin": Side.TRACKER})
    private = ours(comment("m-2", body="details", internal=True, marker=marker))
    _, extra = reverse_link_plan(c, view(conversation(), (private,)), view(bug()), lk)
    assert [type(a) for a in extra] == [AdoptComment]
    public = ours(comment("m-2", body="details", internal=False, marker=marker))
    _, extra = reverse_link_plan(c, view(conversation(), (public,)), view(bug()), lk)
    assert [type(a) for a in extra] == [RemoveComment]


def test_only_a_conversation_with_the_issue_key_is_tied_back_to_that_issue() -> None:
    """The issue named in a conversation's data counts only with the issue's key: a
    planted issue id, or another issue's key, ties nothing."""
    c = ctx()
    key = c.markers.reverse_conversation(IID)
    def conv(iid: str, marker: str | None) -> Ticket:
        return conversation(marker=marker).model_copy(
            update={"data": {REVERSE_ISSUE_DATA_KEY: iid}})
    assert reverse_issue_of(c, conv(IID, key)) == IID
    assert reverse_issue_of(c, conv("99", key)) is None
    assert reverse_issue_of(c, conv(IID, None)) is None
    assert reverse_issue_of(c, conversation(marker=key)) is None


def test_a_conversation_found_from_re_amaze_is_linked_to_its_issue_not_copied() -> None:
    """Re-adopted from the Re:amaze side: the link is recorded as the tracker's, the
    opening is recognised, and nothing of the conversation is sent to the issue."""
    c = ctx()
    opening = comment("m-1", body=OPENING, by_staff=False, at=0)
    plan = readopt(c, view(conversation(), (opening,)), view(bug()))
    assert plan.actions[0] == AdoptIssue(conversation_id=CID, issue_id=IID,
                                         origin=Side.TRACKER)
    assert not [a for a in of_type(plan, AddComment) if a.target is Side.TRACKER]
    assert [a.source_id for a in of_type(plan, AdoptComment)] == [opening_source(IID)]


def test_a_link_made_from_the_helpdesk_side_gets_nothing_extra() -> None:
    """Ordinary links are left to the reconciler alone."""
    lk = link()
    assert reverse_link_plan(ctx(), view(conversation()), view(bug()), lk) == (lk, ())


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)


@settings(max_examples=200, deadline=None)
@given(subject=text, description=st.none() | text, labels=st.lists(
    st.sampled_from(["customer-bug", "x", "bug"]), max_size=3),
    assignee=st.none() | st.sampled_from(["7", "8"]),
    customer=st.none() | st.emails(), replies=st.booleans())
def test_no_reverse_conversation_ever_carries_the_issue_in_public_or_by_email(
        subject: str, description: str | None, labels: list[str], assignee: str | None,
        customer: str | None, replies: bool) -> None:
    """Whatever the issue says: the opening is the fixed text, and every message the
    reverse plan writes to the conversation is internal and emails no one, also with
    ``customer_replies_from_tracker`` (which is about later public notes only)."""
    c = context(policy(reverse=rules(), staff_to_user={"jane@acme.example": "7"},
                       visibility={"customer_replies_from_tracker": replies}))
    body = (description or "") + (f"\nCustomer: {customer}" if customer else "")
    iss = issue(subject=subject or "s", labels=tuple(labels),
                assignee=assignee).model_copy(update={"description": body})
    action = reconcile_reverse(c, iss)
    if isinstance(action, CreateConversation):
        assert action.new.opening == OPENING
    conv = conversation()
    opening = comment("m-1", body=OPENING, by_staff=False, at=0)
    lk = link(snapshot=None).model_copy(update={"origin": Side.TRACKER})
    _, extra = reverse_link_plan(c, view(conv, (opening,)), view(iss), lk)
    for a in extra:
        if isinstance(a, AddComment):
            assert a.target is Side.HELPDESK
            assert a.new.visibility is Visibility.INTERNAL and not a.new.notify_customer


def test_explain_says_an_unlinked_matching_issue_gets_a_conversation() -> None:
    """`explain #ISSUE` on an unlinked issue the reverse rule matches says what a pass
    does with it; one the sync created says it is adopted instead."""
    pol = ctx().policy
    lines = explain_unlinked_issue(pol, bug(description="Customer: erin@x.example"))
    assert lines[-1] == ("  it matches the pair's reverse rule (label 'customer-bug'): a pass "
                         "that reads it from the tracker's feed opens a Re:amaze conversation "
                         "for it, for erin@x.example (from its Customer line), as an internal "
                         "note")
    ours_ = bug().model_copy(update={"marker": ctx().markers.issue("c")})
    assert "reverse rule" not in "\n".join(explain_unlinked_issue(pol, ours_))


def test_assignee_is_not_carried_without_a_mapping() -> None:
    """An issue assignee the staff map does not name leaves the conversation unassigned."""
    c = ctx()
    iss = bug().model_copy(update={"assignee": User(id="99", name="Nobody")})
    lk = link(snapshot=None).model_copy(update={"origin": Side.TRACKER})
    _, extra = reverse_link_plan(c, view(conversation()), view(iss), lk)
    assert not [a for a in extra if isinstance(a, UpdateTicket)]
