"""The whole engine against both simulators: backfill, two-way copies with visibility kept
message by message, quiet second runs, and the issue status round trip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from e2e_support import (
    STAFF,
    Engineer,
    Mark,
    assert_same_second_note_is_copied_once,
    issue_for,
    issue_ids,
    journals,
    messages,
    run_pass,
    sandbox,
)
from fakes import FakeClock

from syncer.app import Engine, run_all_once
from syncer.runner import PairRunner
from syncer.sandbox import Sandbox

PUBLIC, INTERNAL, COLLISION = 0, 1, 2


def _seed(sb: Sandbox) -> tuple[str, str, str]:
    rz = sb.reamaze
    crash = rz.add_conversation("App crashes on login", "Since the update the app crashes.",
                                "carol@customer.example", customer_name="Carol", tags=["bug"])
    rz.add_staff_message(crash, "INTERNAL-1 reproduced, customer is on the Enterprise plan",
                         email=STAFF, visibility=INTERNAL)
    rz.add_staff_message(crash, "COLLISION-1 Jane is also replying", email=STAFF,
                         visibility=COLLISION)
    rz.add_staff_message(crash, "Thanks Carol, we are looking into it.", email=STAFF,
                         suppress_autoresolve=True)
    export = rz.add_conversation("Export button does nothing", "Clicking Export does nothing.",
                                 "dave@customer.example", tags=["bug", "export"])
    invoice = rz.add_conversation("Invoice copy", "Could you send last month's invoice?",
                                  "erin@customer.example")
    rz.add_staff_message(invoice, "INTERNAL-2 billing is late this month", email=STAFF,
                         visibility=INTERNAL)
    return crash, export, invoice


def _backfill(sb: Sandbox) -> tuple[Engine, PairRunner]:
    engine = sb.engine()
    runner = engine.runner(sb.config.pairs[0])
    assert isinstance(runner, PairRunner)
    result = runner.run_once(kind="backfill", full=True)
    assert result.ok and not result.failed, (result.error, result.failed)
    return engine, runner


def _first_line(note: str) -> str:
    """The copied text of a note (after the attribution header, before the marker)."""
    return note.split("\n\n")[1].splitlines()[0]


def _public_texts(sb: Sandbox) -> list[str]:
    texts = [m.body for c in sb.reamaze.conversations.values() for m in c.messages
             if m.visibility == PUBLIC]
    texts += [j.notes for j in sb.redmine.state.journals.values()
              if not j.private_notes and j.notes]
    texts += [i.subject + "\n" + (i.description or "") for i in sb.redmine.state.issues.values()]
    return texts


def _assert_no_internal_text_is_public(sb: Sandbox, *needles: str) -> None:
    public = "\n".join(_public_texts(sb))
    for needle in needles:
        assert needle not in public, f"{needle!r} leaked into a public message"


def test_backfill_then_changes_on_both_sides_keep_visibility_and_settle(tmp_path: Path) -> None:
    """Backfill creates issues for bug conversations only, every message keeps (or lowers)
    its visibility in both directions, collisions are never copied, and a second run
    after the changes writes nothing."""
    sb = sandbox(tmp_path)
    crash, export, invoice = _seed(sb)
    engine, _ = _backfill(sb)
    assert len(issue_ids(sb)) == 2
    assert engine.store.get_link("bugs", invoice) is None
    crash_issue = issue_for(engine, crash)
    export_issue = issue_for(engine, export)

    # One note per copied message, its privacy that of the source (order within one
    # millisecond is not defined, so match by text).
    notes = {_first_line(j.text): j.private for j in journals(sb, crash_issue)}
    assert notes == {"Since the update the app crashes.": False,
                     "INTERNAL-1 reproduced, customer is on the Enterprise plan": True,
                     "Thanks Carol, we are looking into it.": False}
    assert not any("COLLISION-1" in (j.notes or "") for j in sb.redmine.state.journals.values())
    link_note = messages(sb, crash)[-1]
    assert f"issues/{crash_issue}" in link_note.body and link_note.visibility == INTERNAL

    # Changes on both sides.
    dev = Engineer(sb)
    sb.reamaze.add_customer_message(crash, "It also crashes on the web app.")
    sb.reamaze.add_staff_message(export, "INTERNAL-3 probably the CSV worker", email=STAFF,
                                 visibility=INTERNAL)
    dev.note(crash_issue, "PRIVATE-1 root cause is the token refresh race", private=True)
    dev.note(crash_issue, "Fixed in build 2.3.1, deploying tonight.")
    dev.note(export_issue, "Could not reproduce on staging yet.")

    first = run_pass(engine)
    assert first.counts["comments_to_tracker"] == 2
    assert first.counts["comments_to_helpdesk"] == 3
    mark = Mark.now(sb)
    second = run_pass(engine)
    assert mark.writes() == [], "the second run wrote something"
    assert second.counts["comments_to_tracker"] == second.counts["comments_to_helpdesk"] == 0

    # Re:amaze side, message by message.
    crash_msgs = [(m.visibility, m.body.splitlines()[0][:40]) for m in messages(sb, crash)]
    assert crash_msgs[:4] == [
        (PUBLIC, "Since the update the app crashes."),
        (INTERNAL, "INTERNAL-1 reproduced, customer is on th"),
        (COLLISION, "COLLISION-1 Jane is also replying"),
        (PUBLIC, "Thanks Carol, we are looking into it."),
    ]
    copies = [m for m in messages(sb, crash)[4:] if "commented on Redmine" in m.body]
    assert [(m.visibility, m.notified) for m in copies] == [(INTERNAL, False), (INTERNAL, False)]
    assert "PRIVATE-1" in copies[0].body and "Fixed in build" in copies[1].body
    export_copies = [m for m in messages(sb, export) if "commented on Redmine" in m.body]
    assert [m.visibility for m in export_copies] == [INTERNAL]

    # Redmine side, note by note.
    crash_notes = journals(sb, crash_issue)
    new = [j for j in crash_notes if "web app" in j.text]
    assert len(new) == 1 and not new[0].private
    export_notes = journals(sb, export_issue)
    internal3 = [j for j in export_notes if "INTERNAL-3" in j.text]
    assert len(internal3) == 1 and internal3[0].private
    # Every note exists once: nothing we wrote was copied back.
    for issue in (crash_issue, export_issue):
        texts = [j.text for j in journals(sb, issue)]
        assert not any("commented on Redmine" in t for t in texts)
    assert len([m for m in messages(sb, crash) if "PRIVATE-1" in m.body]) == 1

    _assert_no_internal_text_is_public(sb, "INTERNAL-1", "INTERNAL-2", "INTERNAL-3",
                                       "COLLISION-1", "PRIVATE-1")
    assert sb.reamaze.conversations[crash].status == 0  # no status change was asked for
    engine.close()


def test_public_tracker_notes_reach_the_customer_only_when_the_pair_allows(
        tmp_path: Path) -> None:
    """With customer_replies_from_tracker=true a public Redmine note becomes a public,
    emailed reply; a private note still arrives as an internal note."""
    sb = sandbox(tmp_path, visibility={"customer_replies_from_tracker": True})
    crash, _, _ = _seed(sb)
    engine, _ = _backfill(sb)
    issue = issue_for(engine, crash)
    dev = Engineer(sb)
    dev.note(issue, "PRIVATE-2 the fix touches the auth service", private=True)
    dev.note(issue, "We found the bug; a fix ships tomorrow.")
    run_pass(engine)
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []
    copies = [m for m in messages(sb, crash) if "commented on Redmine" in m.body]
    assert [(m.visibility, m.notified) for m in copies] == [(INTERNAL, False), (PUBLIC, True)]
    assert "PRIVATE-2" in copies[0].body and "fix ships tomorrow" in copies[1].body
    # The public reply is not copied back to Redmine as a new note.
    assert [j.text for j in journals(sb, issue)].count(
        next(j.text for j in journals(sb, issue) if "fix ships" in j.text)) == 1
    assert not any("commented on Redmine" in j.text for j in journals(sb, issue))
    _assert_no_internal_text_is_public(sb, "PRIVATE-2", "INTERNAL-1", "COLLISION-1")
    engine.close()


def test_issue_closed_then_reopened_moves_the_conversation_with_one_close_reply(
        tmp_path: Path) -> None:
    """Closing the issue marks the conversation Done and emails the configured close reply
    once; reopening the issue reopens the conversation; quiet runs after each write nothing."""
    sb = sandbox(tmp_path, status={"close_reply_template": "Fixed: {subject} (#{issue_id})."})
    crash, _, _ = _seed(sb)
    engine, _ = _backfill(sb)
    issue = issue_for(engine, crash)
    dev = Engineer(sb)

    dev.close(issue)
    result = run_pass(engine)
    assert result.counts["helpdesk_updated"] == 1
    conv = sb.reamaze.conversations[crash]
    assert conv.status == 2
    replies = [m for m in conv.messages if m.body.startswith("Fixed:")]
    assert [(m.body, m.visibility, m.notified) for m in replies] == [
        (f"Fixed: App crashes on login (#{issue}).", PUBLIC, True)]
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []

    dev.reopen(issue)
    run_pass(engine)
    assert sb.reamaze.conversations[crash].status == 0
    assert len([m for m in conv.messages if m.body.startswith("Fixed:")]) == 1
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []

    dev.close(issue)  # closed again: Done again, and a second close reply for the new close
    run_pass(engine)
    assert sb.reamaze.conversations[crash].status == 2
    assert len([m for m in conv.messages if m.body.startswith("Fixed:")]) == 2
    engine.close()


def test_close_without_reply_template_sends_nothing_to_the_customer(tmp_path: Path) -> None:
    """Without a close reply template, closing the issue only changes the status: the
    customer gets no message."""
    sb = sandbox(tmp_path)
    crash, _, _ = _seed(sb)
    engine, _ = _backfill(sb)
    before = [m.seq for m in messages(sb, crash)]
    Engineer(sb).close(issue_for(engine, crash))
    run_pass(engine)
    conv = sb.reamaze.conversations[crash]
    assert conv.status == 2
    assert [m.seq for m in conv.messages if m.visibility == PUBLIC and m.seq not in before] == []
    engine.close()


def test_tracker_note_in_the_same_second_as_our_read_is_not_lost(tmp_path: Path) -> None:
    """Redmine shows change times in whole seconds: a note added in the same second as the
    last sync's read keeps the issue's visible change time, and must still be copied."""
    sb = sandbox(tmp_path, live_tracker_clock=True)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "c@customer.example",
                                       tags=["bug"])
    engine = sb.engine()
    run_pass(engine)
    run_pass(engine)  # reads the issue as it is now, in this very second
    issue = issue_for(engine, slug)
    assert_same_second_note_is_copied_once(sb, engine, slug, issue)
    engine.close()


def test_deleted_issue_orphans_the_link_with_one_internal_note(tmp_path: Path) -> None:
    """When the linked issue is deleted, the next change of the conversation leaves one
    internal note saying so, the link is marked orphaned, and no new issue is created."""
    sb = sandbox(tmp_path)
    crash, _, _ = _seed(sb)
    engine, _ = _backfill(sb)
    issue = issue_for(engine, crash)
    sb.redmine.delete_issue(int(issue))
    sb.reamaze.add_customer_message(crash, "Any news?")
    result = run_pass(engine)
    assert result.counts["orphaned"] == 1
    link = engine.store.get_link("bugs", crash)
    assert link is not None and link.status == "orphaned"
    notes = [m for m in messages(sb, crash) if "no longer exists" in m.body]
    assert [(m.visibility, f"#{issue}" in m.body) for m in notes] == [(INTERNAL, True)]
    assert int(issue) not in issue_ids(sb) and len(issue_ids(sb)) == 1
    sb.reamaze.add_customer_message(crash, "Hello?")
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []
    engine.close()


def test_conversation_done_closes_the_issue_when_configured(tmp_path: Path) -> None:
    """With on_conversation_closed = "close_issue" (and status flowing both ways), marking
    the conversation Done closes the issue; the issue's close is not echoed back as a
    close reply to the customer."""
    sb = sandbox(tmp_path, status={"on_conversation_closed": "close_issue",
                                   "close_reply_template": "Fixed: {subject}."},
                 status_field={"direction": "both", "owner": "tracker"})
    crash, _, _ = _seed(sb)
    engine, _ = _backfill(sb)
    issue = issue_for(engine, crash)
    sb.reamaze.set_status(crash, 2)
    result = run_pass(engine)
    assert result.counts["tracker_updated"] == 1
    assert sb.redmine.state.issues[int(issue)].status_id == 5
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []
    assert not [m for m in messages(sb, crash) if m.body.startswith("Fixed:")]
    engine.close()


def test_tracker_dropping_the_private_flag_never_leaves_internal_text_public(
        tmp_path: Path) -> None:
    """When Redmine silently saves an internal note as public (a plugin drops the flag),
    the copy is deleted at once and the conversation is reported as failing: no internal
    text stays readable on the tracker, and retries do not leak it again."""
    sb = sandbox(tmp_path)
    crash, _, _ = _seed(sb)
    bot = sb.redmine.add_user("syncbot", drop_private_notes=True)
    project = next(p for p in sb.redmine.state.projects.values() if p.identifier == "support")
    sb.redmine.add_member(project, bot, ("Manager",))
    sb.environ["REDMINE_API_KEY"] = bot.api_key
    engine = sb.engine()
    for _ in range(3):
        result = run_all_once(engine)[0]
        assert result.ok and crash in result.failed
        assert "came back public" in result.failed[crash]
        _assert_no_internal_text_is_public(sb, "INTERNAL-1", "COLLISION-1")
    assert not any("INTERNAL-1" in (j.notes or "") for j in sb.redmine.state.journals.values())
    [failure] = [f for f in engine.store.list_failures("bugs") if f.object_id == crash]
    # The leak counts; the refusals after it wait for the permission and use up no retries.
    assert failure.attempts == 1
    engine.close()


def _before_first(sim_hooks: list[Callable[[httpx.Request], None]],
                  match: Callable[[httpx.Request], bool], action: Callable[[], None]) -> None:
    """Run ``action`` once, just before the first request ``match`` accepts."""
    fired: list[bool] = []

    def hook(request: httpx.Request) -> None:
        if not fired and match(request):
            fired.append(True)
            action()
    sim_hooks.append(hook)


@pytest.mark.parametrize("helpdesk_change", ["message", "tags"])
def test_tracker_note_made_while_the_pass_runs_is_copied(tmp_path: Path,
                                                         helpdesk_change: str) -> None:
    """The conversation changes, so the pass reconciles it against its issue first; then an
    engineer adds a note before the tracker feed is read. The feed shows the issue changed,
    and the note must be copied (it used to be skipped as "already reconciled in this
    pass" and the feed's cursor moved past it: lost until the issue changed again)."""
    sb = sandbox(tmp_path)
    crash, export, _ = _seed(sb)
    engine = sb.engine()
    run_pass(engine)
    run_pass(engine)
    if helpdesk_change == "message":  # the pass also writes a note to the issue
        sb.reamaze.add_customer_message(crash, "It crashed again this morning.")
    else:  # the pass writes nothing to the issue
        sb.reamaze.set_tags(crash, ["bug", "urgent"])
    dev = Engineer(sb)
    issue = issue_for(engine, crash)
    feed = sb.redmine.faults.add(
        method="GET", path=r"^/issues\.json$", params={"sort": "updated_on,id"},
        action=lambda _r: dev.note(issue, "Found it: the draft store."))
    run_pass(engine)
    assert feed.hits == 1
    run_pass(engine)
    assert [m.visibility for m in messages(sb, crash)
            if "Found it: the draft store." in m.body] == [INTERNAL]
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []
    assert issue_for(engine, export)
    engine.close()


def test_message_arriving_after_a_failed_conversation_was_retried_is_copied(
        tmp_path: Path) -> None:
    """A failing conversation is retried from a fresh read at the start of a pass; a
    customer message arriving before the walk reads it must still be copied (the walk
    skipped it as "just retried" and its cursor moved past the message)."""
    sb = sandbox(tmp_path)
    crash, _export, _ = _seed(sb)
    engine = sb.engine()
    run_pass(engine)
    run_pass(engine)
    sb.reamaze.add_customer_message(crash, "First follow-up.")
    refusal = sb.redmine.faults.add(status=422, body=b'{"errors":["Notes is invalid"]}',
                                    method="PUT", path=r"^/issues/\d+\.json$")
    failed = run_all_once(engine)[0]
    assert refusal.hits == 1 and crash in failed.failed
    _before_first(sb.reamaze.before_request,
                  lambda r: r.method == "GET" and r.url.path == "/api/v1/conversations",
                  lambda: sb.reamaze.add_customer_message(crash, "Second follow-up."))
    retried = run_pass(engine)
    assert retried.counts["failures_retried"] == 1
    run_pass(engine)
    notes = journals(sb, issue_for(engine, crash))
    for text in ("First follow-up.", "Second follow-up."):
        assert len([j for j in notes if text in j.text]) == 1, text
    engine.close()


def test_issue_changing_again_later_in_the_same_tracker_walk_is_looked_at(
        tmp_path: Path) -> None:
    """The tracker feed returns an issue unchanged since its last sync (a walk repeated
    after an aborted pass), then, after an engineer's note moved it to the end, again
    on a later page: the note must be copied (the first sighting used to count as the
    issue's sync for the whole walk, and the cursor moved past the note)."""
    sb = sandbox(tmp_path)
    slugs = [sb.reamaze.add_conversation(f"Bug report {n:03d}", f"Problem number {n}.",
                                         f"c{n}@customer.example", tags=["bug"])
             for n in range(101)]  # one more than a page of the tracker feed
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    run_pass(engine)
    dev = Engineer(sb)
    first = issue_for(engine, slugs[0])
    dev.put(first, subject="Renamed by the engineer")  # synced without writing anything
    for slug in slugs[1:]:
        dev.put(issue_for(engine, slug), subject=f"Renamed {slug}")
    # A note, so the second issue's conversation must be read (a rename alone is decided
    # without reading it).
    dev.note(issue_for(engine, slugs[1]), "Looking into it.")
    # The pass syncs the first issue, then dies on the second one's conversation.
    sb.reamaze.faults.add(status=503, times=8, method="GET",
                          path_prefix=f"/api/v1/conversations/{slugs[1]}")
    assert run_all_once(engine)[0].error is not None
    _before_first(sb.reamaze.before_request,
                  lambda r: r.url.path.startswith(f"/api/v1/conversations/{slugs[1]}"),
                  lambda: dev.note(first, "Found it while renaming."))
    run_pass(engine)
    run_pass(engine)
    assert [m.visibility for m in messages(sb, slugs[0])
            if "Found it while renaming." in m.body] == [INTERNAL]
    engine.close()
