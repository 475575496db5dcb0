"""Reconciler tables for comments on an active link: visibility, attribution, echo, edits."""

from __future__ import annotations

import pytest

from syncer.markup import Markup, escape
from syncer.models import Visibility
from syncer.plaintext import markup_to_text
from syncer.plan import (
    AddComment,
    AdoptComment,
    CommentLinkView,
    Plan,
    RemoveComment,
    Side,
    Skip,
    Untrusted,
)
from syncer.reconcile import reconcile
from tests.reconcile_builders import (
    CID,
    CUSTOMER_EMAIL,
    CUSTOMER_NAME,
    IID,
    MARKERS,
    agreed,
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

PUB, INT = Visibility.PUBLIC, Visibility.INTERNAL


def _sync(ctx: object, hd: tuple = (), tr: tuple = (),  # type: ignore[type-arg]
          links: tuple[CommentLinkView, ...] = ()) -> list[AddComment]:
    conv, iss = conversation(), issue()
    plan = reconcile(ctx, view(conv, hd),  # type: ignore[arg-type]
                     view(iss, tr),
                     link(comment_links=links, snapshot=agreed(conv, iss)))
    return of_type(plan, AddComment)


def _plan(ctx: object, hd: tuple = (), tr: tuple = (),  # type: ignore[type-arg]
          links: tuple[CommentLinkView, ...] = ()) -> Plan:
    conv, iss = conversation(), issue()
    return reconcile(ctx, view(conv, hd),  # type: ignore[arg-type]
                     view(iss, tr),
                     link(comment_links=links, snapshot=agreed(conv, iss)))


def _skips(ctx: object, hd: tuple = (), tr: tuple = (),  # type: ignore[type-arg]
           links: tuple[CommentLinkView, ...] = ()) -> list[Skip]:
    return of_type(_plan(ctx, hd, tr, links), Skip)


# --- helpdesk -> tracker ---------------------------------------------------------------

@pytest.mark.parametrize(("internal", "private", "mode", "expected"), [
    (False, True, "skip", PUB),
    (False, False, "skip", PUB),
    (True, True, "skip", INT),
    (True, True, "placeholder", INT),
    (True, False, "skip", None),
    (True, False, "placeholder", "placeholder"),
], ids=["public", "public-no-private", "internal-private", "internal-private-placeholder-mode",
        "internal-cannot-hide-skip", "internal-cannot-hide-placeholder"])
def test_helpdesk_to_tracker_visibility_table(internal: bool, private: bool, mode: str,
                                              expected: object) -> None:
    """Public stays public; internal goes private, is skipped, or becomes a bare placeholder."""
    pol = policy(visibility={"internal_to_public_tracker": mode,
                             "placeholder_text": "An internal note exists."})
    secret = "The admin password is hunter2"
    copies = _sync(context(pol, private=private), hd=(comment("m1", body=secret,
                                                             internal=internal),))
    if expected is None:
        assert copies == []
        (skip,) = _skips(context(pol, private=private),
                         hd=(comment("m1", body=secret, internal=True),))
        assert skip.object_id == "m1" and "private" in skip.reason
        return
    (copy,) = copies
    assert copy.target is Side.TRACKER and copy.ticket_id == IID and copy.source_id == "m1"
    assert copy.new.notify_customer is False
    if expected == "placeholder":
        assert copy.new.visibility is PUB
        assert copy.new.body == "An internal note exists."
        assert "hunter2" not in copy.new.body and copy.new.attachments == ()
    else:
        assert copy.new.visibility is expected
        assert secret in copy.new.body


def test_helpdesk_copy_is_attributed_to_staff_author_and_time() -> None:
    """A staff message copy names its author, says where it came from and when."""
    (copy,) = _sync(context(), hd=(comment("m1", body="Repro attached", name="Alice Agent",
                                           at=90),))
    header = copy.new.body.splitlines()[0]
    assert "Alice Agent" in header and "staff" in header
    assert "Re:amaze message" in header and "2026-03-01 10:30 UTC" in header
    assert copy.new.body.endswith("Repro attached")


def test_helpdesk_internal_copy_is_labelled_internal_note() -> None:
    """A private tracker copy of an internal note says it was an internal note."""
    (copy,) = _sync(context(), hd=(comment("m1", internal=True),))
    assert "internal note" in copy.new.body.splitlines()[0]


@pytest.mark.parametrize("pii", [False, True])
def test_customer_author_pii_in_tracker_copies_only_when_allowed(pii: bool) -> None:
    """A customer's name and email reach the tracker only with include_customer_pii."""
    pol = policy(visibility={"include_customer_pii": pii})
    (copy,) = _sync(context(pol), hd=(customer_comment("m1", body="Still broken"),))
    assert (CUSTOMER_NAME in copy.new.body) is pii
    assert CUSTOMER_EMAIL not in copy.new.body  # the name is enough when it is known
    assert "customer" in copy.new.body.splitlines()[0]


def test_customer_without_name_is_attributed_by_email_only_with_pii() -> None:
    """A nameless customer falls back to the email with PII on, to 'Customer' without."""
    msg = comment("m1", by_staff=False, name=None, email=CUSTOMER_EMAIL)
    with_pii = _sync(context(policy(visibility={"include_customer_pii": True})), hd=(msg,))
    without = _sync(context(), hd=(msg,))
    assert CUSTOMER_EMAIL in with_pii[0].new.body
    assert CUSTOMER_EMAIL not in without[0].new.body and "Customer" in without[0].new.body


@pytest.mark.parametrize(("body", "mention_free"), [
    ("@bob please check", "@\u200bbob please check"),
    ("ping (@ops-team) now", "ping (@\u200bops-team) now"),
    ("mail me at bob@example.com", "mail me at bob@example.com"),
    # Redmine reads mentions in the raw text: a code span is no shelter.
    ("`@decorator` in code", "`@\u200bdecorator` in code"),
    ("café@bob hi", "café@\u200bbob hi"),
])
def test_mentions_in_copies_are_neutralised_both_ways(body: str, mention_free: str) -> None:
    """An @mention in copied text never pings anyone on the other side; emails stay intact."""
    copies = _sync(context(), hd=(comment("m1", body=body),),
                   tr=(comment("n1", ticket=IID, body=body),))
    assert len(copies) == 2
    for copy in copies:
        assert copy.new.body.endswith(mention_free)


@pytest.mark.parametrize("markup", ["textile", "common_mark"])
def test_copies_to_the_tracker_are_escaped_for_its_markup(markup: Markup) -> None:
    """Text copied to the tracker is written for the tracker's markup, from its declared
    capabilities; text copied to Re:amaze is that markup rendered to readable text."""
    body = "<!-- {{collapse}} *x* ![](http://evil.example/i.png)"
    copies = _sync(context(markup=markup), hd=(comment("m1", body=body),),
                   tr=(comment("n1", ticket=IID, body=body),))
    to_tracker, to_helpdesk = copies
    assert to_tracker.target is Side.TRACKER
    assert to_tracker.new.body.endswith("\n\n" + escape(markup, body))
    assert to_helpdesk.new.body.endswith("\n\n" + markup_to_text(markup, body))


# --- tracker -> helpdesk ---------------------------------------------------------------

@pytest.mark.parametrize(("internal", "replies", "vis", "notify"), [
    (False, False, INT, False),
    (False, True, PUB, True),
    (True, False, INT, False),
    (True, True, INT, False),
], ids=["public-default", "public-replies-allowed", "internal", "internal-replies-allowed"])
def test_tracker_to_helpdesk_visibility_table(internal: bool, replies: bool, vis: Visibility,
                                              notify: bool) -> None:
    """Tracker notes reach the customer only when public and customer_replies_from_tracker is on."""
    pol = policy(visibility={"customer_replies_from_tracker": replies})
    (copy,) = _sync(context(pol), tr=(comment("n1", ticket=IID, body="Fixed in 2.1",
                                              internal=internal, name="Dev Dan"),))
    assert copy.target is Side.HELPDESK and copy.ticket_id == CID and copy.source_id == "n1"
    assert copy.new.visibility is vis and copy.new.notify_customer is notify
    assert copy.new.marker == MARKERS.comment(CID, Side.TRACKER, "n1")
    assert "Dev Dan" in copy.new.body and f"#{IID}" in copy.new.body
    assert copy.new.body.endswith("Fixed in 2.1")


def test_tracker_comment_by_nameless_author_is_still_attributed() -> None:
    """A tracker note without author name falls back to the email, then to 'someone'."""
    copies = _sync(context(), tr=(comment("n1", ticket=IID, name=None, email="dev@x.example"),
                                  comment("n2", ticket=IID, name=None, email=None, at=2)))
    assert copies[0].new.body.startswith("dev@x.example commented")
    assert copies[1].new.body.startswith("someone commented")


def test_both_directions_in_one_plan_are_ordered_by_creation() -> None:
    """New comments on both sides are each copied once, in creation order per side."""
    copies = _sync(context(),
                   hd=(comment("m2", at=5), comment("m1", at=3)),
                   tr=(comment("n2", ticket=IID, at=4), comment("n1", ticket=IID, at=1)))
    assert [(c.target, c.source_id) for c in copies] == [
        (Side.TRACKER, "m1"), (Side.TRACKER, "m2"), (Side.HELPDESK, "n1"), (Side.HELPDESK, "n2")]


# --- echo and repeats ------------------------------------------------------------------

def _cl(side: Side, source: str, target: str, fingerprint: str = "",
        visibility: Visibility = PUB) -> CommentLinkView:
    return CommentLinkView(source_side=side, source_id=source, target_id=target,
                           fingerprint=fingerprint, visibility=visibility)


def test_already_copied_sources_are_not_copied_again() -> None:
    """A comment with a comment link from its side is not copied a second time."""
    m1 = comment("m1", body="hi")
    n1 = comment("n1", ticket=IID, body="yo")
    links = (_cl(Side.HELPDESK, "m1", "n99", m1.fingerprint),
             _cl(Side.TRACKER, "n1", "m99", n1.fingerprint))
    assert _sync(context(), hd=(m1,), tr=(n1,), links=links) == []


def test_copies_we_wrote_are_not_copied_back_by_link() -> None:
    """A comment that is the target of a comment link is ours and never echoes back."""
    # The copies carry no marker (e.g. a tracker that strips them): the link alone guards.
    ours_on_tracker = comment("n5", ticket=IID, body="copy of m1")
    ours_on_helpdesk = comment("m5", body="copy of n1", internal=True)
    links = (_cl(Side.HELPDESK, "m1", "n5"), _cl(Side.TRACKER, "n1", "m5"))
    assert _sync(context(), hd=(ours_on_helpdesk,), tr=(ours_on_tracker,), links=links) == []


def test_copies_we_wrote_are_not_copied_back_by_marker() -> None:
    """With comment links lost, our marker on a comment we wrote still stops the echo."""
    hd = (ours(comment("m5", body="copy", marker=MARKERS.comment(CID, Side.TRACKER, "n1"))),)
    tr = (ours(comment("n5", ticket=IID, body="copy",
                       marker=MARKERS.comment(CID, Side.HELPDESK, "m1"))),)
    plan = _plan(context(), hd=hd, tr=tr)
    assert of_type(plan, AddComment) == [] and of_type(plan, Untrusted) == []


def test_source_already_present_on_other_side_by_marker_is_adopted_not_duplicated() -> None:
    """With comment links lost, a source whose copy (found by marker and author) exists is
    not re-copied: the link between them is rebuilt instead."""
    m1 = comment("m1", body="original question")
    n1 = comment("n1", ticket=IID, body="original answer")
    hd = (m1, ours(comment("m5", body="copy of n1", internal=True,
                           marker=MARKERS.comment(CID, Side.TRACKER, "n1"))))
    tr = (n1, ours(comment("n5", ticket=IID, body="copy of m1",
                           marker=MARKERS.comment(CID, Side.HELPDESK, "m1"))))
    plan = _plan(context(), hd=hd, tr=tr)
    assert of_type(plan, AddComment) == []
    assert {(a.source_side, a.source_id, a.target_id, a.fingerprint)
            for a in of_type(plan, AdoptComment)} == {
        (Side.HELPDESK, "m1", "n5", m1.fingerprint), (Side.TRACKER, "n1", "m5", n1.fingerprint)}


def test_engine_notes_on_the_conversation_are_not_copied() -> None:
    """Link notes, orphan notes and close replies (our markers) stay on the helpdesk."""
    hd = (ours(comment("m1", internal=True, marker=MARKERS.link_note(CID))),
          ours(comment("m2", marker=MARKERS.close_reply(CID, IID, 0))),
          ours(comment("m3", internal=True, marker=MARKERS.orphan_note(CID, "7"))))
    assert _sync(context(), hd=hd) == []


@pytest.mark.parametrize("side", [Side.HELPDESK, Side.TRACKER])
def test_a_copied_marker_on_someone_elses_comment_never_hides_it(side: Side) -> None:
    """A person's comment ending with what is exactly our marker for this conversation is
    not ours unless the sync's API user wrote it: it is copied, and reported."""
    other = Side.TRACKER if side is Side.HELPDESK else Side.HELPDESK
    forged = comment("x1", ticket=CID if side is Side.HELPDESK else IID, body="real text",
                     marker=MARKERS.comment(CID, other, "whatever"))
    plan = _plan(context(), **{"hd" if side is Side.HELPDESK else "tr": (forged,)})
    (copy,) = of_type(plan, AddComment)
    assert copy.source_id == "x1" and copy.target is other
    (warning,) = of_type(plan, Untrusted)
    assert warning.object_id == "x1"


def test_a_marker_of_another_installation_or_conversation_is_not_ours() -> None:
    """Our API user's comment with a marker made with another key (or for another
    conversation) is a person's comment: copied, and reported."""
    from syncer.markers import Markers

    stranger = Markers(b"another-installation-key-000", MARKERS.pair)
    hd = (ours(comment("m1", body="one", marker=stranger.comment(CID, Side.TRACKER, "n1"))),
          ours(comment("m2", body="two", at=2,
                       marker=MARKERS.comment("other-conv", Side.TRACKER, "n1"))))
    plan = _plan(context(), hd=hd)
    assert [c.source_id for c in of_type(plan, AddComment)] == ["m1", "m2"]
    assert len(of_type(plan, Untrusted)) == 2


def test_another_pair_note_on_the_same_conversation_is_not_copied() -> None:
    """A note a sibling pair of this installation wrote (its copy from another tracker) is
    the engine's own, not a person's message."""
    from syncer.markers import Markers

    sibling = Markers(MARKERS.key, "sibling-pair")
    hd = (ours(comment("m1", internal=True, marker=sibling.comment(CID, Side.TRACKER, "z9"))),)
    plan = _plan(context(), hd=hd)
    assert of_type(plan, AddComment) == [] and of_type(plan, Untrusted) == []


def test_adopted_copy_of_an_internal_note_that_is_public_is_removed_not_adopted() -> None:
    """A copy found by marker that should be private but is public is never recorded as a
    good copy: it is removed, then the note is copied again, privately."""
    m1 = comment("m1", body="secret", internal=True)
    leaked = ours(comment("n5", ticket=IID, body="secret",
                          marker=MARKERS.comment(CID, Side.HELPDESK, "m1")))
    plan = _plan(context(), hd=(m1,), tr=(leaked,))
    assert of_type(plan, AdoptComment) == []
    remove, again = [a for a in plan.actions if isinstance(a, RemoveComment | AddComment)]
    assert isinstance(remove, RemoveComment) and isinstance(again, AddComment)
    assert (remove.target, remove.ticket_id, remove.comment_id) == (Side.TRACKER, IID, "n5")
    assert again.source_id == "m1" and again.new.visibility is INT


def test_linked_copy_that_turned_public_is_removed() -> None:
    """A linked copy written private that is public now (the tracker dropped the flag) is
    removed, whatever the link says."""
    m1 = comment("m1", body="secret", internal=True)
    copy = ours(comment("n5", ticket=IID, body="secret"))
    links = (_cl(Side.HELPDESK, "m1", "n5", m1.fingerprint, INT),)
    plan = _plan(context(), hd=(m1,), tr=(copy,), links=links)
    (remove,) = of_type(plan, RemoveComment)
    assert remove.comment_id == "n5"
    assert [(a.source_id, a.new.visibility) for a in of_type(plan, AddComment)] == [("m1", INT)]
    still_private = copy.model_copy(update={"visibility": INT})
    assert of_type(_plan(context(), hd=(m1,), tr=(still_private,), links=links),
                   RemoveComment) == []


def test_a_persons_comment_under_a_linked_copys_id_is_never_removed() -> None:
    """The copy was deleted and the tracker gave its id to a person's public comment
    (Redmine on SQLite reuses the newest id): that comment is not the engine's, and is
    left alone."""
    m1 = comment("m1", body="secret", internal=True)
    persons = comment("n5", ticket=IID, body="Workaround: clear the cache.")
    links = (_cl(Side.HELPDESK, "m1", "n5", m1.fingerprint, INT),)
    assert of_type(_plan(context(), hd=(m1,), tr=(persons,), links=links),
                   RemoveComment) == []


def test_placeholder_for_a_tracker_without_private_comments_is_not_a_leak() -> None:
    """The public placeholder that stands for an internal note is what policy asked for."""
    pol = policy(visibility={"internal_to_public_tracker": "placeholder"})
    m1 = comment("m1", body="secret", internal=True)
    placeholder = ours(comment("n5", ticket=IID, body="An internal note was added",
                               marker=MARKERS.comment(CID, Side.HELPDESK, "m1")))
    plan = _plan(context(pol, private=False), hd=(m1,), tr=(placeholder,))
    assert of_type(plan, RemoveComment) == []
    assert [a.target_id for a in of_type(plan, AdoptComment)] == ["n5"]


def test_internal_notes_are_held_while_a_leak_is_open() -> None:
    """While an earlier copy leaked and could not be removed, no internal note is sent;
    public messages still are."""
    from dataclasses import replace

    ctx = replace(context(), internal_paused=True)
    plan = _plan(ctx, hd=(comment("m1", internal=True), comment("m2", at=2)))
    assert [c.source_id for c in of_type(plan, AddComment)] == ["m2"]
    assert any(s.object_id == "m1" and "paused" in s.reason for s in of_type(plan, Skip))


def test_collision_messages_and_read_only_tracker_entries_are_not_copied() -> None:
    """Read-only comments on either side are read, never copied."""
    assert _sync(context(), hd=(comment("m1", read_only=True),),
                 tr=(comment("n1", ticket=IID, read_only=True),)) == []


def test_whitespace_only_edit_is_not_an_edit() -> None:
    """Re-flowed whitespace keeps the fingerprint, so it is neither copied nor reported."""
    n1 = comment("n1", ticket=IID, body="Fixed in 2.1")
    links = (_cl(Side.TRACKER, "n1", "m9", n1.fingerprint),)
    reflowed = n1.model_copy(update={"body": "Fixed  in\n2.1 "})
    assert _skips(context(), tr=(reflowed,), links=links) == []
    assert _sync(context(), tr=(reflowed,), links=links) == []

