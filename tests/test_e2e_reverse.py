"""Reverse creation end to end: a tracker issue matching ``[pairs.reverse]`` gets one
Re:amaze conversation (contact found or created, nothing emailed, the issue's text only
in an internal note), then syncs both ways like any link; a crash between the create and
its record never makes a second one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from e2e_support import (
    STAFF,
    CrashAfter,
    CrashBefore,
    Engineer,
    Mark,
    crash_then_restart,
    is_write,
    journals,
    messages,
    run_pass,
    sandbox,
)

from connectors.reamaze.sim.state import SimMessage
from syncer.app import run_all_once
from syncer.config import parse_config
from syncer.explain import describe_action
from syncer.plan import Side
from syncer.reconcile_reverse import OPENING
from syncer.sandbox import LOGIN, PROJECT, Sandbox, sandbox_config

FALLBACK = "support@acme.example"
PAIR = "bugs"
REVERSE: dict[str, Any] = {"enabled": True, "tracker_ids": [1],
                           "fallback_contact": FALLBACK, "tags": ["from-tracker"]}


def _world(tmp_path: Path, **pair: Any) -> tuple[Sandbox, Engineer]:
    sb = sandbox(tmp_path, reverse=REVERSE, staff_to_user={STAFF: "1"}, **pair)
    return sb, Engineer(sb)


def _bug(sb: Sandbox, subject: str, description: str, tracker_id: int = 1) -> int:
    project = next(p for p in sb.redmine.state.projects.values() if p.identifier == PROJECT)
    issue = sb.redmine.add_issue(project, subject, description=description)
    issue.tracker_id = tracker_id
    return issue.id


def _conversations(sb: Sandbox) -> list[str]:
    return sorted(sb.reamaze.conversations)


def _public_or_mailed(msgs: list[SimMessage]) -> list[str]:
    """Messages the sync wrote (the opening, notes) that a customer could see with
    anything of the issue in them, or that were emailed."""
    ours = [m for m in msgs if m.author.email == LOGIN or m.body == OPENING]
    return [m.body for m in ours if (m.visibility == 0 and m.body != OPENING) or m.notified]


def test_a_matching_issue_gets_one_internal_conversation_and_then_syncs_both_ways(
        tmp_path: Path) -> None:
    """An issue of a matching tracker opens one conversation for the customer it names
    (created as a contact), tagged, with the issue's text in an internal note only and
    nothing emailed; a second pass writes nothing; notes then flow both ways."""
    sb, dev = _world(tmp_path)
    iid = _bug(sb, "Export drops rows", "CSV export loses the last row.\n\n"
               "Customer: erin@customer.example")
    _bug(sb, "A feature", "Not a bug.", tracker_id=2)  # another tracker: left alone
    engine = sb.engine()
    run_pass(engine)
    assert len(sb.reamaze.conversations) == 1
    slug = _conversations(sb)[0]
    conv = sb.reamaze.conversations[slug]
    assert conv.author.email == "erin@customer.example"
    assert "erin@customer.example" in sb.reamaze.contacts
    assert len(sb.reamaze.calls("POST", "/api/v1/contacts")) == 1  # made before the create
    assert conv.tags == ["from-tracker"]
    msgs = messages(sb, slug)
    assert msgs[0].body == OPENING and not msgs[0].notified
    details = [m for m in msgs if "CSV export loses the last row." in m.body]
    assert [(m.visibility, m.author.email) for m in details] == [(1, LOGIN)]
    assert _public_or_mailed(msgs) == []
    link = engine.store.get_link_by_issue("bugs", str(iid))
    assert link is not None and link.conversation_id == slug and link.origin is Side.TRACKER
    assert journals(sb, iid) == []  # neither the opening nor our notes echo to the issue

    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []

    dev.note(iid, "Root cause found: off-by-one in the exporter.")
    sb.reamaze.add_staff_message(slug, "Customer confirms it happens on every export.",
                                 email=STAFF, visibility=1)
    run_pass(engine)
    assert any("off-by-one" in m.body and m.visibility == 1 for m in messages(sb, slug))
    assert any("every export" in n.text for n in journals(sb, iid))
    assert _public_or_mailed(messages(sb, slug)) == []
    assert len(sb.reamaze.conversations) == 1
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []


def test_an_issue_naming_no_customer_goes_to_the_fallback_contact(tmp_path: Path) -> None:
    """Without a Customer line the conversation is the fallback contact's, and an existing
    contact is found, not created again; the issue's assignee becomes the conversation's
    through the staff map."""
    sb, _ = _world(tmp_path)
    sb.reamaze.add_contact(FALLBACK, "Support inbox")
    iid = _bug(sb, "Login loop", "Users are sent back to the login page.")
    sb.redmine.state.issues[iid].assigned_to_id = 1
    run_pass(sb.engine())
    conv = next(iter(sb.reamaze.conversations.values()))
    assert conv.author.email == FALLBACK
    assert conv.assignee is not None and conv.assignee.email == STAFF
    assert sb.reamaze.calls("POST", "/api/v1/contacts") == []


def test_a_redmine_custom_field_names_the_contact(tmp_path: Path) -> None:
    """With ``contact_field_id``, the email in that issue custom field (set through the
    API as an engineer would) is the conversation's contact."""
    sb = sandbox(tmp_path, reverse={**REVERSE, "contact_field_id": 4})
    dev = Engineer(sb)
    iid = _bug(sb, "Upload fails", "Large files fail.\nCustomer: line@customer.example")
    dev.put(iid, custom_fields=[{"id": 4, "value": "ivy@customer.example"}])
    run_pass(sb.engine())
    [conv] = sb.reamaze.conversations.values()
    assert conv.author.email == "ivy@customer.example"


def test_a_dry_run_plans_the_conversation_and_writes_nothing(tmp_path: Path) -> None:
    """`plan`: the conversation the next pass would open is listed; nothing is written."""
    sb, _ = _world(tmp_path)
    iid = _bug(sb, "Crash", "It crashes.")
    mark = Mark.now(sb)
    [result] = run_all_once(sb.engine(), kind="poll", dry_run=True)
    assert mark.writes() == [] and sb.reamaze.conversations == {}
    lines = [describe_action(a) for p in result.plans for a in p.actions]
    assert lines == [f"issue {iid}: open a Re:amaze conversation (tracker 'Bug'; contact "
                     f"{FALLBACK} from fallback_contact); its first message content-free, "
                     "the details in an internal note, nothing emailed"]


def test_unmatched_and_disabled_issues_get_no_conversation(tmp_path: Path) -> None:
    """Off by default: with no [pairs.reverse] an issue of any tracker is left alone."""
    sb = sandbox(tmp_path)
    _bug(sb, "Crash", "It crashes.")
    run_pass(sb.engine())
    assert sb.reamaze.conversations == {}


def test_a_crash_between_the_create_and_its_record_makes_no_second_conversation(
        tmp_path: Path) -> None:
    """Killed just after Re:amaze created the conversation (its answer lost): the restarted
    engine finds it by its key, links it and syncs it; there is one conversation."""
    sb, _ = _world(tmp_path)
    iid = _bug(sb, "Data loss", "Saving loses data.\nCustomer: finn@customer.example")
    crash = CrashAfter(is_write("POST", r"/conversations$"))
    engine = crash_then_restart(sb, crash, "reamaze")
    assert len(sb.reamaze.conversations) == 1
    for _ in range(3):
        run_pass(engine)
    assert len(sb.reamaze.conversations) == 1
    slug = _conversations(sb)[0]
    link = engine.store.get_link_by_issue("bugs", str(iid))
    assert link is not None and link.conversation_id == slug
    msgs = messages(sb, slug)
    assert sum("Saving loses data." in m.body for m in msgs) == 1
    assert _public_or_mailed(msgs) == []
    assert journals(sb, iid) == []
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []


def test_a_crash_before_the_create_is_sent_creates_it_once_later(tmp_path: Path) -> None:
    """Killed with the create journalled but never sent: recovery does not find it, gives
    up after its lookups, and the issue's conversation is made once."""
    sb, _ = _world(tmp_path, sync={"unknown_write_lookups": 2,
                                   "unknown_write_window_seconds": 0})
    iid = _bug(sb, "Slow search", "Search takes a minute.")
    crash = CrashBefore(is_write("POST", r"/conversations$"))
    engine = crash_then_restart(sb, crash, "reamaze")
    assert sb.reamaze.conversations == {}
    for _ in range(4):
        run_pass(engine)
    assert len(sb.reamaze.conversations) == 1
    assert engine.store.get_link_by_issue("bugs", str(iid)) is not None


def test_a_lost_state_adopts_the_conversation_instead_of_making_another(
        tmp_path: Path) -> None:
    """The state database is lost after the conversation was made: the next engine finds
    the conversation by the issue's key and links it again."""
    sb, _ = _world(tmp_path)
    iid = _bug(sb, "Broken avatar", "Avatars do not load.")
    engine = sb.engine()
    run_pass(engine)
    engine.close()
    (tmp_path / "state.db").unlink()
    fresh = sb.engine()
    sb.redmine.touch(iid)
    run_pass(fresh)
    assert len(sb.reamaze.conversations) == 1
    link = fresh.store.get_link_by_issue("bugs", str(iid))
    assert link is not None and link.conversation_id == _conversations(sb)[0]
    slug = link.conversation_id
    assert sum("Avatars do not load." in m.body for m in messages(sb, slug)) == 1
    assert journals(sb, iid) == []


def test_issues_the_sync_created_never_get_a_second_conversation(tmp_path: Path) -> None:
    """An issue made for a conversation matches the reverse rule too (same tracker), but
    it is the sync's: no conversation is opened for it, not even after the state was lost
    and the tracker feed is read from the start while the conversation is older than the
    pair's ``since`` (so no pass re-adopts its link first)."""
    sb, _ = _world(tmp_path)
    sb.reamaze.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                tags=["bug"])
    engine = sb.engine()
    run_pass(engine)
    run_pass(engine)
    assert len(sb.redmine.state.issues) == 1 and len(sb.reamaze.conversations) == 1
    engine.close()
    (tmp_path / "state.db").unlink()
    later = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    sb.config = parse_config(sandbox_config(f"sqlite:///{tmp_path / 'state.db'}",
                                            reverse=REVERSE, since=later))
    fresh = sb.engine()
    run_pass(fresh)
    run_pass(fresh)
    assert len(sb.reamaze.conversations) == 1
    assert len(sb.redmine.state.issues) == 1


def test_a_lost_link_found_from_re_amaze_is_restored_not_given_an_issue(
        tmp_path: Path) -> None:
    """The conversation reverse creation opened carries a tag the pair's match rule wants
    (``bug``). With the state lost, the Re:amaze feed reads it first: it is linked to its
    issue again (proven by its key), never given a second issue, and nothing is echoed."""
    sb = sandbox(tmp_path, reverse={**REVERSE, "tags": ["bug"]})
    iid = _bug(sb, "Wrong totals", "Totals are off by one cent.")
    engine = sb.engine()
    run_pass(engine)
    engine.close()
    (tmp_path / "state.db").unlink()
    fresh = sb.engine()
    result = run_pass(fresh)
    assert result.counts["issues_created"] == 0
    assert sorted(sb.redmine.state.issues) == [iid]
    [slug] = sb.reamaze.conversations
    link = fresh.store.get_link(PAIR, slug)
    assert link is not None and link.issue_id == str(iid) and link.origin is Side.TRACKER
    assert sum("Totals are off" in m.body for m in messages(sb, slug)) == 1
    assert journals(sb, iid) == []
    mark = Mark.now(sb)
    run_pass(fresh)
    assert mark.writes() == []


def test_a_conversation_linked_by_hand_elsewhere_is_not_taken_back(tmp_path: Path) -> None:
    """The conversation opened for an issue was linked by hand to another issue after the
    state was lost: adopting it would steal it, so the issue fails on its own (the dead
    letter says why) and the pass goes on."""
    sb, _ = _world(tmp_path)
    iid = _bug(sb, "Export drops rows", "The last row is lost.")
    engine = sb.engine()
    run_pass(engine)
    engine.close()
    (tmp_path / "state.db").unlink()
    fresh = sb.engine()
    [slug] = sb.reamaze.conversations
    other = _bug(sb, "Another bug", "Unrelated.", tracker_id=2)
    fresh.store.create_link(PAIR, slug, str(other), Side.HELPDESK)
    sb.redmine.touch(iid)
    [result] = run_all_once(fresh)
    assert result.ok and list(result.failed) == [f"issue:{iid}"]
    assert "was opened for issue" in result.failed[f"issue:{iid}"]
    assert len(sb.reamaze.conversations) == 1
    assert fresh.store.get_link(PAIR, slug).issue_id == str(other)  # type: ignore[union-attr]
