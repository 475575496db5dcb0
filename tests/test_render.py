"""Text the engine writes: titles, descriptions, attributed copies, notes, mention safety."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redmine_mentions import redmine_mentions

from connectors.redmine.mapping import embed_marker, split_marker
from syncer import render
from syncer.markup import Markup, escape, strong
from syncer.models import Collection, Contact
from tests.reconcile_builders import (
    CID,
    CUSTOMER_EMAIL,
    CUSTOMER_NAME,
    comment,
    conversation,
    issue,
    policy,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("@bob", "@\u200bbob"),
    ("hi @bob and @alice_2", "hi @\u200bbob and @\u200balice_2"),
    ("(@ops-team)", "(@\u200bops-team)"),
    ("line\n@dev look", "line\n@\u200bdev look"),
    ("bob@example.com", "bob@example.com"),
    ("x_@bob", "x_@bob"),
    ("@ alone", "@ alone"),
    ("@@bob", "@\u200b@\u200bbob"),
    ("@Jörg", "@\u200bJörg"),
    ("@.bob", "@\u200b.bob"),
    ("", ""),
    # Redmine's \W is ASCII-only: a letter outside ASCII does not protect the @.
    ("café@bob", "café@\u200bbob"),
    ("日本@bob", "日本@\u200bbob"),
    ("josé@example.com", "josé@\u200bexample.com"),
    # Redmine scans the raw text: code spans (and, once escaped, fences) are no shelter.
    ("`@decorator` here", "`@\u200bdecorator` here"),
    ("```\n@dev\n```", "```\n@\u200bdev\n```"),
])
def test_neutralise_mentions_table(text: str, expected: str) -> None:
    """Whatever Redmine would read as a mention gets a zero-width space after the @;
    addresses like bob@example.com, which Redmine does not read so, stay intact."""
    assert render.neutralise_mentions(text) == expected


@pytest.mark.parametrize("text", ["café@bob x", "日本@bob x", "`@bob` x", "@bob x",
                                  "josé@example.com x", "```\n@bob\n```"])
def test_oracle_agrees_these_are_mentions(text: str) -> None:
    """The forms above really are mentions to Redmine (its scan, ported): the table is
    about Redmine's rules, not ours."""
    assert redmine_mentions(text, "textile")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("@ab_1 .-\n`é日>~,()!<"), max_size=40),
       st.sampled_from(["textile", "common_mark"]))
def test_neutralised_text_mentions_nobody_to_redmine(text: str, formatting: str) -> None:
    """After neutralising, Redmine's own scan finds no login, visible characters are kept,
    and a second pass changes nothing."""
    once = render.neutralise_mentions(text)
    assert redmine_mentions(once, formatting) == []
    assert once.replace("\u200b", "") == text
    assert render.neutralise_mentions(once) == once


def test_plain_addresses_are_no_mention_and_stay_intact() -> None:
    """carol@example.com is no mention to Redmine, so it is left exactly as written."""
    text = "Write to carol@example.com or ops_team@example.org."
    assert redmine_mentions(text, "common_mark") == []
    assert render.neutralise_mentions(text) == text


def test_issue_title_falls_back_to_slug_and_is_capped() -> None:
    """An empty rendered title uses the conversation slug; long titles are cut to 250 characters."""
    pol = policy(title_template="{subject}")
    assert render.issue_title(pol, conversation(subject="   ")) == CID
    assert len(render.issue_title(pol, conversation(subject="x" * 400))) == 250


def test_issue_title_keeps_braces_in_subject_verbatim() -> None:
    """A subject containing format braces is inserted as text, not interpreted."""
    pol = policy(title_template="[{channel}] {subject}")
    title = render.issue_title(pol, conversation(subject="Error {0} in {subject}"))
    assert title == "[Support inbox] Error {0} in {subject}"


def test_issue_description_lines() -> None:
    """The description links the conversation and lists channel, customer (PII on) and tags."""
    pol = policy(visibility={"include_customer_pii": True})
    desc = render.issue_description(pol, conversation(tags=("bug", "vip")), markup="plain")
    assert desc.splitlines()[:4] == [
        "Re:amaze conversation: https://acme.reamaze.io/admin/conversations/x",
        "Channel: Support inbox",
        f"Customer: {CUSTOMER_NAME} <{CUSTOMER_EMAIL}>",
        "Tags: bug, vip",
    ]


def test_issue_description_without_url_channel_contact_or_pii() -> None:
    """Missing optional parts are left out, and the customer is never named with PII off."""
    desc = render.issue_description(policy(), conversation(url=None, channel=None),
                                    markup="plain")
    assert desc.splitlines()[0] == f"Re:amaze conversation: {CID}"
    assert "Channel:" not in desc and "Customer" not in desc and "Tags:" not in desc
    assert CUSTOMER_EMAIL not in desc


@pytest.mark.parametrize(("contact", "line"), [
    (Contact(id="c", name=None, email=CUSTOMER_EMAIL), f"Customer: <{CUSTOMER_EMAIL}>"),
    (Contact(id="c", name=CUSTOMER_NAME, email=None), f"Customer: {CUSTOMER_NAME}"),
    (Contact(id="c"), None),
])
def test_issue_description_partial_contact(contact: Contact, line: str | None) -> None:
    """With PII on, whatever part of the customer is known is shown, and nothing when neither is."""
    pol = policy(visibility={"include_customer_pii": True})
    desc = render.issue_description(pol, conversation(contact=contact), markup="plain")
    customer_lines = [x for x in desc.splitlines() if x.startswith("Customer")]
    assert customer_lines == ([line] if line else [])


def test_issue_description_neutralises_mentions() -> None:
    """A channel or tag that looks like a mention does not ping anyone on the tracker."""
    desc = render.issue_description(policy(), conversation(tags=("@oncall",)),
                                    markup="common_mark")
    assert redmine_mentions(desc, "textile") == []


def test_helpdesk_copy_header_in_utc() -> None:
    """The copy header gives author, role, kind and the UTC time of the message."""
    c = comment("m1", body="Body", name="Alice Agent").model_copy(update={
        "created_at": datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))})
    text = render.helpdesk_comment_to_tracker(policy(), c, markup="common_mark")
    assert text == "**Alice Agent** (staff) — Re:amaze message, 2026-03-01 10:30 UTC\n\nBody"


def test_helpdesk_copy_header_fallbacks() -> None:
    """Staff without a name are shown by email, then as 'Staff'."""
    by_email = comment("m1", name=None, email="al@acme.example")
    anonymous = comment("m1", name=None, email=None)
    assert render.helpdesk_comment_to_tracker(policy(), by_email, markup="common_mark"
                                              ).startswith("**al@acme.example** (staff)")
    assert render.helpdesk_comment_to_tracker(policy(), anonymous, markup="common_mark"
                                              ).startswith("**Staff** (staff)")


def test_author_names_that_look_like_mentions_are_neutralised() -> None:
    """An author named like a mention cannot ping anyone through the attribution line."""
    hd = render.helpdesk_comment_to_tracker(policy(), comment("m1", name="@admin"),
                                            markup="common_mark")
    tr = render.tracker_comment_to_helpdesk("Redmine", issue(), comment("n1", name="@support"),
                                           markup="textile")
    assert redmine_mentions(hd, "textile") == redmine_mentions(tr, "textile") == []


@pytest.mark.parametrize(("markup", "header"), [
    ("textile", "*Alice Agent* (staff)"),
    ("common_mark", "**Alice Agent** (staff)"),
    ("plain", "Alice Agent (staff)"),
])
def test_header_is_bold_in_the_trackers_own_syntax(markup: Markup, header: str) -> None:
    """**x** is not textile's bold: each markup gets its own emphasis (none when plain)."""
    text = render.helpdesk_comment_to_tracker(policy(), comment("m1"), markup=markup)
    assert text.startswith(f"{header} — Re:amaze message, ")


@pytest.mark.parametrize("markup", ["textile", "common_mark"])
def test_copied_text_is_escaped_but_our_header_is_not(markup: Markup) -> None:
    """Body and author name are escaped for the markup; the header around them keeps its
    markup, and a reader gets every character back."""
    body = "<!-- *hidden* {{collapse}} ![](http://evil.example/x.png)"
    c = comment("m1", body=body, name="*Eve* <b>")
    text = render.helpdesk_comment_to_tracker(policy(), c, markup=markup)
    header, written = text.split("\n\n", 1)
    assert written == escape(markup, body)
    assert header.startswith(strong(markup, escape(markup, "*Eve* <b>")) + " (staff)")
    assert "<!--" not in text and "{{" not in text


@pytest.mark.parametrize("markup", ["textile", "common_mark"])
def test_description_lines_from_outside_are_escaped(markup: Markup) -> None:
    """Channel, customer and tag names are text from outside too."""
    pol = policy(visibility={"include_customer_pii": True})
    conv = conversation(tags=("<!--", "*vip*"),
                        contact=Contact(id="c", name="{{include(Secret)}}", email="e@x.example"))
    conv = conv.model_copy(update={"collection": Collection(
        id="c", name="!http://evil.example/c.png!")})
    lines = render.issue_description(pol, conv, markup=markup).splitlines()
    assert lines[1] == "Channel: " + escape(markup, "!http://evil.example/c.png!")
    assert lines[2] == "Customer: " + escape(markup, "{{include(Secret)}} <e@x.example>")
    assert lines[3] == "Tags: " + escape(markup, "<!--") + ", " + escape(markup, "*vip*")
    assert lines[0] == "Re:amaze conversation: https://acme.reamaze.io/admin/conversations/x"


@pytest.mark.parametrize("markup", ["textile", "common_mark"])
def test_a_forged_marker_in_a_message_is_no_marker(markup: Markup) -> None:
    """A message ending in a marker-like line cannot pass for our copy, and the marker the
    connector appends after the escaped text is still found."""
    forged = "<!-- reamaze-sync:rs-forged -->"
    copy = render.helpdesk_comment_to_tracker(policy(), comment("m1", body=forged),
                                              markup=markup)
    assert split_marker(copy)[1] is None
    assert split_marker(embed_marker(copy, "rs-ours"))[1] == "rs-ours"


def test_tracker_copy_names_author_tracker_and_issue() -> None:
    """A tracker note copy says who wrote it on which tracker issue."""
    text = render.tracker_comment_to_helpdesk("Redmine", issue(), comment(
        "n1", body="Fixed", name="Dev Dan"), markup="textile")
    assert text == "Dev Dan commented on Redmine issue #42:\n\nFixed"


def test_notes_and_close_reply() -> None:
    """Placeholder, orphan note and close reply render from policy and ids."""
    pol = policy(visibility={"placeholder_text": "Internal note hidden."},
                 status={"close_reply_template": "{subject}: fixed in #{issue_id} {issue_url}"})
    assert render.placeholder_note(pol) == "Internal note hidden."
    assert "#42" in render.orphan_note("Redmine", "42")
    assert "Redmine" in render.orphan_note("Redmine", "42")
    assert render.close_reply(pol, conversation(), issue()) == (
        "Login fails on Safari: fixed in #42 https://redmine.example/issues/42")
    assert render.close_reply(pol, conversation(), issue(url=None)).endswith("#42 ")


@pytest.mark.parametrize(("markup", "written"), [
    ("textile", '* step 1\n* see "docs":https://docs.example/a'),
    ("common_mark", "- step 1\n- see [docs](https://docs.example/a)"),
    ("gfm", "- step 1\n- see [docs](https://docs.example/a)"),
    ("glfm", "- step 1\n- see [docs](https://docs.example/a)"),
    ("plain", "- step 1\n- see docs (https://docs.example/a)"),
])
def test_a_message_with_html_is_copied_with_its_structure(markup: Markup,
                                                          written: str) -> None:
    """A Re:amaze message's HTML is written as a list and a link in the tracker's markup,
    not as the plain body's escaped dashes."""
    c = comment("m1", body="- step 1\n- see docs").model_copy(update={
        "body_html": '<ul><li>step 1</li><li>see <a href="https://docs.example/a">docs</a>'
                     "</li></ul>"})
    assert render.helpdesk_comment_to_tracker(policy(), c, markup=markup).endswith(
        "\n\n" + written)


@pytest.mark.parametrize("html", [None, "", "<!-- nothing shown --><script>x()</script>"])
def test_without_html_that_shows_anything_the_body_is_escaped(html: str | None) -> None:
    """No HTML, or HTML that shows nothing: the plain body, escaped as before."""
    c = comment("m1", body="- step 1\n- step 2").model_copy(update={"body_html": html})
    assert render.message_body("textile", c) == escape("textile", "- step 1\n- step 2")
    assert render.message_body("textile", c) == "&#45; step 1\n&#45; step 2"


@pytest.mark.parametrize(("markup", "note", "text"), [
    ("textile", '* fixed in "r12":https://scm.example/r12\n* @deploy@ tonight',
     "- fixed in r12 (https://scm.example/r12)\n- `deploy` tonight"),
    ("common_mark", "- fixed in [r12](https://scm.example/r12)\n- `deploy` tonight",
     "- fixed in r12 (https://scm.example/r12)\n- `deploy` tonight"),
])
def test_tracker_notes_reach_reamaze_as_readable_text(markup: Markup, note: str,
                                                      text: str) -> None:
    """A tracker note's markup is rendered away: links as text (url), lists as lines."""
    copy = render.tracker_comment_to_helpdesk("Redmine", issue(), comment(
        "n1", body=note, name="Dev Dan"), markup=markup)
    assert copy == f"Dev Dan commented on Redmine issue #42:\n\n{text}"


def test_an_edited_tracker_note_reads_as_text_too() -> None:
    """The new text of an edited tracker note is rendered like any tracker note."""
    note = render.tracker_edit_note("Redmine", issue(), comment(
        "n1", body='* see "the fix":https://scm.example/r12', name="Dev Dan"),
        markup="textile")
    assert note.endswith("it now reads:\n\n- see the fix (https://scm.example/r12)")
