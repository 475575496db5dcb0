"""`explain`: why a conversation or an issue did or did not sync, and what the next pass
would do with it, from both sides and the state, with nothing written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import STAFF, Served

from state import StateStore
from syncer.markers import Markers
from syncer.plan import Side
from syncer.reconcile import PAUSED
from syncer.sandbox import MARKER_KEY

EXE = Path(sys.executable).with_name("reamaze-sync")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def explain(served: Served, *args: str) -> str:
    """`explain`, which must succeed and write nothing to either side."""
    before = served.writes()
    result = served.cli("explain", *args)
    assert result.exit_code == 0, result.output
    assert served.writes() == before
    return result.stdout


def store_of(served: Served) -> StateStore:
    return StateStore(f"sqlite:///{served.db}")


def _bug(served: Served) -> str:
    slug = served.reamaze.add_conversation("Crash on save", "Saving crashes.",
                                           "carol@customer.example", tags=["bug"])
    served.reamaze.add_staff_message(slug, "Reproduced on 2.0.", email=STAFF, visibility=1)
    return slug


def test_an_unmatched_conversation_says_which_rules_it_missed(served: Served) -> None:
    """The console script, with no state database yet: a conversation no rule matches is
    explained (the pair's rules, what the conversation has, no issue), nothing is created
    on either side or on disk."""
    slug = served.reamaze.add_conversation("Invoice", "Send me the invoice.",
                                           "dave@customer.example")
    proc = subprocess.run([str(EXE), "--config", str(served.path), "explain",
                           f"{served.rz_server.url}/admin/conversations/{slug}"],
                          env={**os.environ, **served.env}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"[bugs] conversation {slug} 'Invoice' ({served.rz_server.url}/admin/conversations/"
        f"{slug})",
        "  not linked to an issue",
        "  matches no rule of the pair (tags bug); it has tags none, channel support, status "
        "open: so it gets no issue",
        "  next pass: nothing for it (does not match the pair's rules)"]
    assert "does not exist yet: explained as on a first run" in proc.stderr
    assert not served.db.exists() and served.writes() == []


def test_a_new_bug_shows_the_issue_it_would_get(served: Served) -> None:
    """A matching conversation without a link: the rule that matched, each message's fate
    and the plan in words."""
    slug = _bug(served)
    out = explain(served, slug)
    assert "  matches the pair's rules: tag 'bug'" in out
    assert re.search(r"helpdesk \S+ \(public, carol@customer.example, .*\): 'Saving crashes.': "
                     r"to be copied to tracker the new issue as a public comment", out)
    assert re.search(r"helpdesk \S+ \(internal, Jane Support, .*\): 'Reproduced on 2.0.': to "
                     r"be copied to tracker the new issue as an internal comment", out)
    assert "  next pass:\n    create issue '[Re:amaze] Crash on save'\n" in out
    assert "    post internal note with the issue link\n" in out


def test_a_linked_conversation_shows_copies_echoes_and_what_comes_next(
        served: Served) -> None:
    """After a sync: what was copied where, our own copies as echoes that are never copied
    back, the link note; a new tracker note is planned as an internal note (public tracker
    notes do not reach customers by default); `explain '#N'` says which conversation the
    issue belongs to; after the next pass it is up to date."""
    slug = _bug(served)
    assert served.cli("run", "--once").exit_code == 0
    assert served.cli("run", "--once").exit_code == 0
    issue = next(iter(served.redmine.state.issues.values()))
    settled = explain(served, slug)
    assert f"  linked to issue {issue.id} ({served.rm_server.url}/issues/{issue.id})" in settled
    assert "  unchanged on both sides since its last sync: passes leave it alone" in settled
    assert "'Saving crashes.': copied to the tracker as " in settled
    assert settled.count("(echo suppressed: never copied back)") == 2
    assert "'Linked to Redmine issue #1: " in settled
    assert "the sync's note with the issue link (the sync's own: never copied)" in settled
    assert "  next pass: nothing to send, it is up to date" in settled

    served.redmine.clock.advance(5)
    served.redmine.add_note(issue.id, "Fixed in 2.1.")
    by_issue = explain(served, f"#{issue.id}")
    assert by_issue.startswith(f"[bugs] issue {issue.id} is linked to conversation {slug}\n")
    assert (f"'Fixed in 2.1.': to be copied to helpdesk {slug} as an internal comment"
            in by_issue)
    assert re.search(rf"  next pass:\n    add internal comment to helpdesk {slug}: "
                     r"'Redmine Admin commented on Redmine issue #1: Fixed in 2.1.'", by_issue)
    assert served.cli("run", "--once").exit_code == 0
    assert "  next pass: nothing to send, it is up to date" in explain(served, slug)


def test_internal_notes_paused_by_a_leak_are_explained(served: Served) -> None:
    """While a leak is open, a new internal note is not sent: explain says the pair is
    paused and why that note waits."""
    slug = _bug(served)
    assert served.cli("run", "--once").exit_code == 0
    store = store_of(served)
    store.record_leak("bugs", slug, Side.TRACKER, "1", "99", "copy of an internal note is public")
    store.close()
    served.reamaze.add_staff_message(slug, "Customer DB is on host x.", email=STAFF,
                                     visibility=1)
    out = explain(served, slug)
    assert ("  internal notes of this pair are PAUSED: 1 public copies of internal content "
            "could not be removed (see `status`)") in out
    assert f"'Customer DB is on host x.': not copied: {PAUSED}" in out


def test_a_failing_then_excluded_conversation(served: Served) -> None:
    """A conversation in the dead letter shows its attempts and error, and that reading it
    fails still; once skipped it is EXCLUDED, with what a pass would do once retried."""
    slug = _bug(served)
    served.reamaze.faults.add(200, body=b"<html>oops</html>",
                              content_type="application/json",
                              path=rf"/conversations/{slug}/messages", times=None)
    assert served.cli("run", "--once").exit_code == 1
    failing = explain(served, slug)
    assert re.search(r"  FAILING: 1 attempt since \S+ \S+ UTC \(the next pass tries it "
                     r"again\): \S", failing), failing
    assert "  next pass: reading it fails, and the pass records that as its failure: " \
        in failing
    served.reamaze.faults.clear()
    assert served.cli("skip", slug).exit_code == 0
    excluded = explain(served, slug)
    assert ("  EXCLUDED: skipped by an operator (`skip` or `unlink --exclude`); passes leave "
            f"it and its issue alone until `reamaze-sync retry {slug}`") in excluded
    assert "  once retried, a pass would:\n    create issue '[Re:amaze] Crash on save'" \
        in excluded


def test_a_write_with_no_confirmed_outcome_holds_the_conversation(served: Served) -> None:
    """An issue create journalled but never confirmed: the link is pending, the write is
    HELD until recovery settles it, and the next pass does nothing else for it."""
    _bug(served)
    assert served.cli("run", "--once", "--pair", "bugs").exit_code == 0  # the database
    other = served.reamaze.add_conversation("Freeze", "It freezes.", "f@customer.example",
                                            tags=["bug"])
    store = store_of(served)
    store.create_link("bugs", other, None, Side.HELPDESK)
    store.begin_intent("bugs", Markers(MARKER_KEY.encode(), "bugs").issue(other),
                       "create_issue", other, Side.TRACKER, {})
    store.close()
    out = explain(served, other)
    assert "  linked, but its issue create is pending: no answer confirmed it" in out
    assert re.search(r"  HELD: create issue to the tracker was sent \d+s ago and no answer "
                     r"confirmed it \(looked for 0 times\)\. Each pass looks for it first; "
                     r"until it is found, or has been looked for 3 times and 10m have passed, "
                     r"it is not sent again", out)
    assert "'It freezes.': not copied yet (issue create is pending recovery)" in out
    assert "  next pass: nothing for it (issue create is pending recovery)" in out


def test_a_conflict_and_who_wins(served: Served) -> None:
    """Both sides changed the assignee since the last sync: explain names the conflict and
    the side that wins (the tracker, by default)."""
    user = served.redmine.add_user("dev", firstname="Dana")
    served.write_config(f'staff_to_user = {{ "{STAFF}" = "{user.id}" }}\n')
    slug = _bug(served)
    assert served.cli("run", "--once").exit_code == 0
    assert served.cli("run", "--once").exit_code == 0
    conv = served.reamaze.conversations[slug]
    conv.assignee = served.reamaze.staff[STAFF]
    served.reamaze.touch(conv)
    issue = next(iter(served.redmine.state.issues.values()))
    served.redmine.clock.advance(5)
    issue.assigned_to_id = served.redmine.admin.id
    issue.updated_on = served.redmine.clock.now()
    out = explain(served, slug)
    assert (f"    conflict on assignee (helpdesk={STAFF}, tracker={served.redmine.admin.id}); "
            "tracker wins") in out


def test_an_issue_no_conversation_is_linked_to(served: Served) -> None:
    """An issue made by hand that nothing links: explain says issues sync only through a
    conversation and how to link one."""
    assert served.cli("run", "--once").exit_code == 0
    issue = served.redmine.add_issue(served.project, "Made by hand")
    out = explain(served, f"{served.rm_server.url}/issues/{issue.id}")
    assert out.splitlines() == [
        f"[bugs] issue {issue.id} 'Made by hand' ({served.rm_server.url}/issues/{issue.id})",
        "  not linked to any conversation of this pair: an issue is synced only through its "
        f"conversation (`reamaze-sync link CONVERSATION {issue.id}` links one)"]


def test_plan_words_adoption_after_the_state_was_lost(served: Served) -> None:
    """With the state database gone, `plan` (and `explain`) say the issue the sync made
    earlier is adopted and its copies recognised; nothing would be sent again."""
    slug = _bug(served)
    assert served.cli("run", "--once").exit_code == 0
    served.db.unlink()
    plan = served.cli("plan")
    assert plan.exit_code == 0, plan.output
    assert (f"[bugs] {slug}: adopt issue 1, which the sync created earlier (found by its "
            "marker; the link is recorded again, nothing is sent)") in plan.stdout
    assert re.search(rf"\[bugs\] {slug}: recognise \S+ on the tracker side as the copy of "
                     r"helpdesk comment \S+ \(found by its marker; recorded, nothing sent\)",
                     plan.stdout)
    assert "planned_writes=0" in plan.stdout
    out = explain(served, slug)
    assert ("  not linked in this state, but issue 1 was created for it by the sync (its "
            "marker, by the sync's user): the next pass adopts it") in out
