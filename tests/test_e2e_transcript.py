"""``history = "transcript"`` end to end: a backfill writes each conversation's public
messages into its new issue's description, internal notes still arrive as private notes,
and no message is ever written twice, also across crashes and lost answers."""

from __future__ import annotations

import time
from pathlib import Path

from e2e_support import (
    STAFF,
    CrashAfter,
    Mark,
    crash_then_restart,
    is_write,
    issue_for,
    issue_ids,
    journals,
    messages,
    run_pass,
    sandbox,
)
from fakes import FakeClock

from syncer.app import Engine, run_all_once
from syncer.plan import Side, description_target
from syncer.sandbox import Sandbox

PUBLIC, INTERNAL, COLLISION = 0, 1, 2
OPENING = "Saving a draft crashes the app."
REPLY = "Thanks, could you tell us your app version?"
SECRET = "INTERNAL-1 reproduced on Android 14, customer is on the Enterprise plan"
WITH_FILE = "Here is the crash log."


def _gap() -> None:
    # Re:amaze times have millisecond precision: keep the seeded order unambiguous.
    time.sleep(0.005)


def _seed(sb: Sandbox) -> str:
    rz = sb.reamaze
    slug = rz.add_conversation("Crash on save", OPENING, "carol@customer.example",
                               customer_name="Carol Customer", tags=["bug"])
    _gap()
    rz.add_staff_message(slug, SECRET, email=STAFF, visibility=INTERNAL)
    _gap()
    rz.add_staff_message(slug, "COLLISION-1 Jane is also replying", email=STAFF,
                         visibility=COLLISION)
    _gap()
    rz.add_staff_message(slug, REPLY, email=STAFF, suppress_autoresolve=True)
    _gap()
    rz.add_customer_message(slug, WITH_FILE, attachments=[
        rz.attachment_from_url("https://files.example/crash.txt")])
    return slug


def _description(sb: Sandbox, issue: str) -> str:
    return sb.redmine.state.issues[int(issue)].description or ""


def _places(sb: Sandbox, issue: str, text: str) -> list[str]:
    """Where a message's text is on the issue: "description" and/or "public"/"private"."""
    found = ["description"] if text in _description(sb, issue) else []
    found += ["private" if j.private else "public" for j in journals(sb, issue) if text in j.text]
    return found


def _assert_each_message_once(sb: Sandbox, engine: Engine, slug: str,
                              transcribed: int = 2) -> None:
    """The transcript holds the two public messages without attachments; the internal note
    is one private note, the message with a file one public note; nothing twice, and the
    comment links say so."""
    issue = issue_for(engine, slug)
    assert len(issue_ids(sb)) == 1
    assert _places(sb, issue, OPENING) == ["description"]
    assert _places(sb, issue, REPLY) == ["description"]
    assert _places(sb, issue, SECRET) == ["private"]
    assert _places(sb, issue, WITH_FILE) == ["public"]
    assert _places(sb, issue, "COLLISION-1") == []
    link = engine.store.get_link("bugs", slug)
    assert link is not None
    in_description = [c for c in link.comment_links
                      if c.target_id == description_target(issue)]
    assert len(in_description) == transcribed
    assert all(c.source_side is Side.HELPDESK for c in in_description)
    linked = [m for m in messages(sb, slug) if "Linked to Redmine" in m.body]
    assert [m.visibility for m in linked] == [INTERNAL]


def _assert_quiet(sb: Sandbox, engine: Engine, passes: int = 2) -> None:
    for _ in range(passes):
        mark = Mark.now(sb)
        run_pass(engine)
        assert mark.writes() == []


def test_backfill_writes_a_transcript_and_keeps_internal_notes_private(
        tmp_path: Path) -> None:
    """One issue whose description is the public history in order, with the customer
    anonymised; the internal note a private note; later passes write nothing; a message
    arriving afterwards becomes a note."""
    sb = sandbox(tmp_path, history="transcript")
    slug = _seed(sb)
    engine = sb.engine()
    result = run_pass(engine, kind="backfill", full=True)
    assert result.counts["issues_created"] == 1
    assert result.counts["messages_in_description"] == 2
    assert result.counts["comments_to_tracker"] == 2  # the internal note and the file
    _assert_each_message_once(sb, engine, slug)

    issue = issue_for(engine, slug)
    desc = _description(sb, issue)
    assert desc.index(OPENING) < desc.index(REPLY)
    assert "**Customer** (customer) — Re:amaze message" in desc
    assert "Carol" not in desc and "carol@customer.example" not in desc
    assert "**Jane Support** (staff) — Re:amaze message" in desc
    assert "Sent as notes instead: 1 message with attachments." in desc
    assert "INTERNAL-1" not in desc
    public = [j.text for j in journals(sb, issue) if not j.private] + [desc]
    assert not any("INTERNAL-1" in t or "Enterprise plan" in t for t in public)

    _assert_quiet(sb, engine, passes=2)  # the second and third pass
    _gap()
    sb.reamaze.add_customer_message(slug, "It also crashes on the web app.")
    later = run_pass(engine)
    assert later.counts["comments_to_tracker"] == 1
    assert _places(sb, issue, "It also crashes on the web app.") == ["public"]
    _assert_each_message_once(sb, engine, slug)
    _assert_quiet(sb, engine, passes=1)
    engine.close()


def test_per_message_mode_is_unchanged(tmp_path: Path) -> None:
    """The default still writes one note per message and says so in the description."""
    sb = sandbox(tmp_path)
    slug = _seed(sb)
    engine = sb.engine()
    run_pass(engine, kind="backfill", full=True)
    issue = issue_for(engine, slug)
    assert "Messages from the conversation follow as notes." in _description(sb, issue)
    assert _places(sb, issue, OPENING) == ["public"]
    assert _places(sb, issue, REPLY) == ["public"]
    assert _places(sb, issue, SECRET) == ["private"]
    engine.close()


def test_crash_after_the_issue_create_records_the_transcript_on_recovery(
        tmp_path: Path) -> None:
    """The process dies after Redmine created the issue, before the link was saved; the new
    engine finds the issue and records the transcribed messages as copied, so they are not
    sent again as notes."""
    sb = sandbox(tmp_path, history="transcript")
    slug = _seed(sb)
    engine = crash_then_restart(sb, CrashAfter(is_write("POST", r"^/issues\.json$")), "redmine")
    assert len(issue_ids(sb)) == 1
    result = run_pass(engine)
    assert result.counts["intents_recovered"] == 1
    assert result.counts["issues_created"] == 0
    _assert_each_message_once(sb, engine, slug)
    _assert_quiet(sb, engine, passes=2)
    engine.close()


def test_lost_create_answer_resolved_by_a_new_engine_writes_nothing_twice(
        tmp_path: Path) -> None:
    """Redmine creates the issue but the answer and every look-up fail, so the pass ends
    with a pending intent; a fresh engine resolves it from the journal: no duplicate
    issue, no transcribed message copied again."""
    sb = sandbox(tmp_path, history="transcript")
    slug = _seed(sb)
    sb.redmine.faults.add(status=503, commit=True, method="POST", path=r"^/issues\.json$")
    # The search before the create (is there an issue already?) still works.
    sb.redmine.faults.add(status=503, times=10_000, method="GET", path=r"^/issues\.json$",
                          skip=1)
    engine = sb.engine(clock=FakeClock())
    assert run_all_once(engine)[0].error is not None
    assert [i.kind for i in engine.store.pending_intents("bugs")] == ["create_issue"]
    engine.close()
    sb.redmine.faults.clear()
    fresh = sb.engine(clock=FakeClock())
    run_pass(fresh)
    _assert_each_message_once(sb, fresh, slug)
    _assert_quiet(sb, fresh, passes=2)
    fresh.close()


def test_a_retried_create_recovers_with_the_messages_of_the_retry(tmp_path: Path) -> None:
    """The first create is refused; a message arrives; the retry's create lands but the
    process dies. Recovery goes by the retry's transcript (which holds the new message), so
    that message is not also written as a note."""
    sb = sandbox(tmp_path, history="transcript")
    slug = _seed(sb)
    sb.redmine.faults.add(status=422, method="POST", path=r"^/issues\.json$",
                          body=b'{"errors":["Subject is too long"]}',
                          content_type="application/json")
    engine = sb.engine()
    first = run_all_once(engine)[0]
    assert first.failed and issue_ids(sb) == []
    engine.close()
    _gap()
    sb.reamaze.add_customer_message(slug, "Any update on this?")
    engine = crash_then_restart(sb, CrashAfter(is_write("POST", r"^/issues\.json$")), "redmine")
    run_pass(engine)
    issue = issue_for(engine, slug)
    assert _places(sb, issue, "Any update on this?") == ["description"]
    _assert_each_message_once(sb, engine, slug, transcribed=3)
    _assert_quiet(sb, engine, passes=1)
    engine.close()
