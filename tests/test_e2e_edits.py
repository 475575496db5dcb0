"""Copied comments edited or deleted at their source, end to end on the simulators: a
tracker note's edit or delete reaches Re:amaze as one internal note (its messages cannot be
changed), a Re:amaze internal note's edit rewrites its private tracker copy, nothing is
written twice (re-runs, crashes), and a pair that does not want it gets none of it."""

from __future__ import annotations

from pathlib import Path

from e2e_support import (
    STAFF,
    CrashAfter,
    Engineer,
    Mark,
    crash_then_restart,
    is_write,
    issue_for,
    journals,
    messages,
    run_pass,
    sandbox,
)
from github_support import REPO, World

from syncer.app import Engine
from syncer.runner import PairRunner, PassResult
from syncer.sandbox import Sandbox
from syncer.sweep import Checker, VerifyAll

INTERNAL = 1


def verify(engine: Engine, *, fix: bool) -> tuple[PassResult, Checker]:
    """`reamaze-sync verify [--fix]` for the sandbox's pair."""
    runner = engine.runner(engine.config.pairs[0])
    assert isinstance(runner, PairRunner)
    checker = Checker(fix=fix)
    runner.after_feeds = VerifyAll(checker, recent_pages=0)
    result = runner.run_once(kind="verify", dry_run=not fix, feeds=False)
    assert result.ok and not result.failed, (result.error, result.failed)
    return result, checker


def _with_copied_note(tmp_path: Path, **pair: object) -> tuple[Sandbox, Engine, Engineer,
                                                                str, str, int]:
    sb = sandbox(tmp_path, **pair)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.",
                                       "carol@customer.example", tags=["bug"])
    dev = Engineer(sb)
    engine = sb.engine()
    run_pass(engine)
    issue = issue_for(engine, slug)
    dev.note(issue, "ENG-NOTE fixed in 4.2")
    run_pass(engine)
    run_pass(engine)  # our copy moved the conversation: this pass sees it, and settles
    [note] = [n for n in journals(sb, issue) if "ENG-NOTE" in n.text]
    assert [m.body for m in messages(sb, slug) if "ENG-NOTE fixed in 4.2" in m.body]
    return sb, engine, dev, slug, issue, note.id


def _edit_journal(dev: Engineer, journal_id: int, text: str) -> None:
    dev.sim.clock.advance(2)
    answer = dev.http.put(f"/journals/{journal_id}.json", json={"journal": {"notes": text}})
    assert answer.status_code == 204, answer.text


def _notes_about(sb: Sandbox, slug: str, needle: str) -> list[tuple[int, bool]]:
    return [(m.visibility, m.notified) for m in messages(sb, slug) if needle in m.body]


def assert_quiet(sb: Sandbox, engine: Engine) -> None:
    """Nothing left to write: `verify --fix` and a pass leave both sides as they are."""
    mark = Mark.now(sb)
    verify(engine, fix=True)
    run_pass(engine)
    assert mark.writes() == []


def test_redmine_note_edited_reaches_reamaze_once_as_internal_note(tmp_path: Path) -> None:
    """Redmine does not move the issue for a note edit, so the poll sees nothing; the
    sweep finds it and writes one internal note with the new text; again, nothing."""
    sb, engine, dev, slug, issue, jid = _with_copied_note(tmp_path)
    try:
        before = sb.redmine.state.issues[int(issue)].updated_on
        _edit_journal(dev, jid, "ENG-NOTE fixed in 4.3")
        assert sb.redmine.state.issues[int(issue)].updated_on == before
        mark = Mark.now(sb)
        run_pass(engine)
        assert mark.writes() == []
        _, checker = verify(engine, fix=False)
        [drift] = checker.drift
        assert drift.problems == (f"tracker comment {jid} was edited after it was copied; "
                                  "the helpdesk has no note saying so",)
        verify(engine, fix=True)
        assert _notes_about(sb, slug, "ENG-NOTE fixed in 4.3") == [(INTERNAL, False)]
        mark = Mark.now(sb)
        _, checker = verify(engine, fix=True)
        run_pass(engine)
        assert mark.writes() == [] and checker.drift == []
    finally:
        engine.close()


def test_edit_of_a_note_emailed_to_the_customer_is_not_emailed(tmp_path: Path) -> None:
    """The copy went to the customer; its correction is an internal note all the same."""
    sb, engine, dev, slug, _, jid = _with_copied_note(
        tmp_path, visibility={"customer_replies_from_tracker": True})
    try:
        assert _notes_about(sb, slug, "ENG-NOTE fixed in 4.2") == [(0, True)]
        _edit_journal(dev, jid, "ENG-NOTE fixed in 4.3")
        verify(engine, fix=True)
        assert _notes_about(sb, slug, "ENG-NOTE fixed in 4.3") == [(INTERNAL, False)]
    finally:
        engine.close()


def test_redmine_note_deleted_reaches_reamaze_once(tmp_path: Path) -> None:
    """A note blanked (Redmine's delete) is told once as an internal note."""
    sb, engine, dev, slug, _, jid = _with_copied_note(tmp_path)
    try:
        _edit_journal(dev, jid, "")
        assert jid not in sb.redmine.state.journals
        verify(engine, fix=True)
        assert _notes_about(sb, slug, f"Note {jid} on Redmine issue") == [(INTERNAL, False)]
        assert_quiet(sb, engine)
    finally:
        engine.close()


def test_policy_off_writes_nothing_for_edits_and_deletes(tmp_path: Path) -> None:
    """[pairs.edits] tracker_to_helpdesk = false: verify lists the edit, --fix writes
    nothing."""
    sb, engine, dev, _, _, jid = _with_copied_note(
        tmp_path, edits={"tracker_to_helpdesk": False})
    try:
        _edit_journal(dev, jid, "ENG-NOTE fixed in 4.3")
        mark = Mark.now(sb)
        _, checker = verify(engine, fix=True)
        assert mark.writes() == []
        [drift] = checker.drift
        assert drift.problems == () and drift.notes[0].startswith(f"{jid} was edited ")
        _edit_journal(dev, jid, "")
        assert_quiet(sb, engine)
    finally:
        engine.close()


def test_crash_between_edit_note_and_its_record_writes_no_second_note(tmp_path: Path) -> None:
    """The process dies just after Re:amaze took the edit note: recovery finds it by its
    key, and no pass writes it again."""
    sb, engine, dev, slug, _, jid = _with_copied_note(
        tmp_path, sync={"unknown_write_lookups": 2, "unknown_write_window_seconds": 0})
    engine.close()
    _edit_journal(dev, jid, "ENG-NOTE fixed in 4.3")
    # A customer message makes the poll reconcile the link (the edit alone does not).
    sb.reamaze.add_customer_message(slug, "Any news?")
    engine = crash_then_restart(
        sb, CrashAfter(lambda r: is_write("POST", r"/messages")(r)
                       and b"was edited" in r.content), "reamaze")
    try:
        assert _notes_about(sb, slug, "ENG-NOTE fixed in 4.3") == [(INTERNAL, False)]
        # Recovery finds the note by its key and records the edit with it: nothing is
        # left for the pass to rebuild.
        recovered = run_pass(engine)
        assert recovered.counts["intents_recovered"] == 1
        assert recovered.counts["comment_links_rebuilt"] == 0
        verify(engine, fix=True)
        run_pass(engine)
        assert _notes_about(sb, slug, "ENG-NOTE fixed in 4.3") == [(INTERNAL, False)]
        assert [i for i in engine.store.pending_intents("bugs") if i.status == "pending"] == []
    finally:
        engine.close()


def test_reamaze_internal_note_edited_rewrites_its_private_redmine_copy(
        tmp_path: Path) -> None:
    """An internal note is corrected in Re:amaze: the sweep rewrites its Redmine copy,
    still private, with its marker; our rewrite is not taken for an edited tracker note.

    Re:amaze messages have no id: only a message with an ``origin_id`` (posted by an
    integration) keeps its identity through an edit. One without is known by a hash of
    its text, so its edit reads as a new message (copied as one; see the next test)."""
    sb = sandbox(tmp_path)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.",
                                       "carol@customer.example", tags=["bug"])
    sb.reamaze.add_staff_message(slug, "INTERNAL-A customer on plan X", email=STAFF,
                                 visibility=INTERNAL, origin_id="crm-note-17")
    engine = sb.engine()
    try:
        run_pass(engine)
        issue = issue_for(engine, slug)
        [copy] = [n for n in journals(sb, issue) if "INTERNAL-A" in n.text]
        assert copy.private
        [source] = [m for m in messages(sb, slug) if "INTERNAL-A" in m.body]
        source.body = "INTERNAL-A customer on plan Y"  # edited in the Re:amaze app
        verify(engine, fix=True)
        [after] = [n for n in journals(sb, issue) if "INTERNAL-A" in n.text]
        assert after.id == copy.id and after.private
        assert "plan Y" in after.text and "plan X" not in after.text
        assert "rs-" in after.text  # the marker stays: recovery can still find the copy
        assert_quiet(sb, engine)
        assert not [m for m in messages(sb, slug) if "was edited" in m.body]
    finally:
        engine.close()


def test_reamaze_note_edit_not_sent_when_policy_off(tmp_path: Path) -> None:
    """[pairs.edits] helpdesk_to_tracker = false: the Redmine copy keeps its text."""
    sb = sandbox(tmp_path, edits={"helpdesk_to_tracker": False})
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.",
                                       "carol@customer.example", tags=["bug"])
    sb.reamaze.add_staff_message(slug, "INTERNAL-A customer on plan X", email=STAFF,
                                 visibility=INTERNAL, origin_id="crm-note-17")
    engine = sb.engine()
    try:
        run_pass(engine)
        [source] = [m for m in messages(sb, slug) if "INTERNAL-A" in m.body]
        source.body = "INTERNAL-A customer on plan Y"
        mark = Mark.now(sb)
        verify(engine, fix=True)
        assert mark.writes() == []
    finally:
        engine.close()


def test_reamaze_note_without_stable_id_edited_is_copied_as_a_new_note(
        tmp_path: Path) -> None:
    """A note a person wrote in Re:amaze has no id but its text's hash: edited, it reads
    as a new note and goes as one, private; the old copy is left as it was (nothing is
    guessed from a message that merely went missing)."""
    sb = sandbox(tmp_path)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.",
                                       "carol@customer.example", tags=["bug"])
    sb.reamaze.add_staff_message(slug, "INTERNAL-A customer on plan X", email=STAFF,
                                 visibility=INTERNAL)
    engine = sb.engine()
    try:
        run_pass(engine)
        issue = issue_for(engine, slug)
        [source] = [m for m in messages(sb, slug) if "INTERNAL-A" in m.body]
        source.body = "INTERNAL-A customer on plan Y"
        verify(engine, fix=True)
        assert [(n.private, "plan Y" in n.text) for n in journals(sb, issue)
                if "INTERNAL-A" in n.text] == [(True, False), (True, True)]
    finally:
        engine.close()


# --- GitHub: a comment edit or delete moves the issue, so the poll sees it ---------------

def test_github_comment_edited_and_deleted_reach_reamaze_once(tmp_path: Path) -> None:
    w = World(f"sqlite:///{tmp_path / 'state.db'}")
    slug = w.reamaze.add_conversation("Crash on save", "It crashes.",
                                      "carol@customer.example", tags=["bug"])
    engine = w.engine()
    try:
        run_pass(engine)
        w.gh.sim.clock.advance(5)
        made = w.gh.person().post(f"/repos/{REPO}/issues/1/comments",
                                  json={"body": "GH-NOTE fix in 4.2"})
        comment_id = made.json()["id"]
        run_pass(engine)
        conv = w.reamaze.conversations[slug]
        assert [m for m in conv.messages if "GH-NOTE fix in 4.2" in m.body]

        w.gh.sim.clock.advance(5)
        w.gh.person().patch(f"/repos/{REPO}/issues/comments/{comment_id}",
                            json={"body": "GH-NOTE fix in 4.3"})
        run_pass(engine)
        run_pass(engine)
        edits = [(m.visibility, m.notified) for m in conv.messages
                 if "GH-NOTE fix in 4.3" in m.body]
        assert edits == [(INTERNAL, False)]

        w.gh.sim.clock.advance(5)
        w.gh.person().delete(f"/repos/{REPO}/issues/comments/{comment_id}")
        run_pass(engine)
        run_pass(engine)
        deleted = [m.visibility for m in conv.messages
                   if f"Note {comment_id} on GitHub issue" in m.body]
        assert deleted == [INTERNAL]
        assert not any("was edited" in b or "was deleted" in b for b in w.comments(1))
    finally:
        engine.close()


def test_github_policy_off_writes_nothing(tmp_path: Path) -> None:
    w = World(f"sqlite:///{tmp_path / 'state.db'}", edits={"tracker_to_helpdesk": False})
    slug = w.reamaze.add_conversation("Crash on save", "It crashes.",
                                      "carol@customer.example", tags=["bug"])
    engine = w.engine()
    try:
        run_pass(engine)
        w.gh.sim.clock.advance(5)
        made = w.gh.person().post(f"/repos/{REPO}/issues/1/comments",
                                  json={"body": "GH-NOTE fix in 4.2"})
        run_pass(engine)
        posts = len(w.reamaze.calls("POST"))
        w.gh.sim.clock.advance(5)
        w.gh.person().patch(f"/repos/{REPO}/issues/comments/{made.json()['id']}",
                            json={"body": "GH-NOTE fix in 4.3"})
        run_pass(engine)
        assert len(w.reamaze.calls("POST")) == posts
        assert not [m for m in w.reamaze.conversations[slug].messages if "4.3" in m.body]
    finally:
        engine.close()
