"""`reamaze-sync verify`: drift the change feeds missed is listed per conversation in words
(exit 1) with nothing written anywhere; `--fix` repairs it through the normal path, once."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import STAFF, Served

from state import StateStore

STATUS_BOTH = """
[pairs.status]
on_conversation_closed = "close_issue"

[pairs.status_field]
direction = "both"
owner = "tracker"
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    s.write_config(STATUS_BOTH)
    yield s
    s.close()


def _behind_the_feeds(served: Served, slug: str, change: str) -> None:
    """Change a conversation without moving its place or time in the change listing: what
    a feed that relies on `sort=changed` never sees."""
    conv = served.reamaze.conversations[slug]
    kept = (conv.updated_at, conv.change_seq)
    if change == "done":
        conv.status = 2
    elif change == "bug":
        conv.tags = [*conv.tags, "bug"]
    elif change == "note":
        served.reamaze.add_staff_message(slug, "INTERNAL-SWEEP heap dump attached",
                                         email=STAFF, visibility=1)
    conv.updated_at, conv.change_seq = kept


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _issue(served: Served, slug: str) -> int:
    store = StateStore(f"sqlite:///{served.db}", read_only=True)
    try:
        link = store.get_link("bugs", slug)
        assert link is not None and link.issue_id is not None
        return int(link.issue_id)
    finally:
        store.close()


def _notes(served: Served, issue: int, text: str) -> list[bool]:
    """The private flag of each note of the issue holding ``text``."""
    return [j.private_notes for j in served.redmine.state.journals.values()
            if j.issue_id == issue and text in (j.notes or "")]


def test_verify_lists_drift_writes_nothing_and_fix_repairs_it_once(served: Served) -> None:
    """A status change, an internal note and a tag the feeds missed, and an issue deleted
    on the tracker, are each reported in words with exit 1 while the state database and
    both sides stay untouched; `--fix` repairs them (the note copied privately once, the
    issue closed, the orphaned link marked, the new match given its issue) and a second
    `verify` finds nothing."""
    rz = served.reamaze
    closed = rz.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                 tags=["bug"])
    gone = rz.add_conversation("Sync stalls", "Stalls.", "dave@customer.example", tags=["bug"])
    later = rz.add_conversation("Slow app", "Slow.", "erin@customer.example",
                                tags=["question"])
    assert served.cli("run", "--once").exit_code == 0
    assert served.cli("run", "--once").exit_code == 0
    closed_issue, gone_issue = _issue(served, closed), _issue(served, gone)
    _behind_the_feeds(served, closed, "done")
    _behind_the_feeds(served, closed, "note")
    _behind_the_feeds(served, later, "bug")
    served.redmine.delete_issue(gone_issue)
    assert served.cli("run", "--once").exit_code == 0  # the feeds see none of it
    assert served.redmine.state.issues[closed_issue].status_id != 5

    before, db = served.writes(), _digest(served.db)
    result = served.cli("verify")
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert f"[bugs] {closed}, issue {closed_issue}:" in out
    assert "  - internal message" in out and "is missing on the tracker" in out
    assert f"  - tracker {closed_issue} differs: should be" in out
    assert f"[bugs] {gone}, issue {gone_issue}:" in out
    assert f"  - issue {gone_issue} is gone: the link is orphaned" in out
    assert f"[bugs] {later}:" in out
    assert "  - matches the pair's rules (tag 'bug') but has no issue" in out
    assert "[bugs] ok; verified 2 link(s): drift in 3 conversation(s); `verify --fix` " \
        "repairs it" in out
    assert served.writes() == before and _digest(served.db) == db

    fixed = served.cli("verify", "--fix")
    assert fixed.exit_code == 0, fixed.output
    assert "drift in 3 conversation(s), 3 repaired" in fixed.stdout
    assert _notes(served, closed_issue, "INTERNAL-SWEEP") == [True]
    assert served.redmine.state.issues[closed_issue].status_id == 5
    store = StateStore(f"sqlite:///{served.db}", read_only=True)
    try:
        orphan = store.get_link("bugs", gone)
        assert orphan is not None and orphan.status == "orphaned"
        assert store.get_link("bugs", later) is not None
    finally:
        store.close()
    assert len(served.redmine.state.issues) == 2  # closed + later; gone stays gone

    again = served.cli("verify")
    assert again.exit_code == 0, again.output
    assert "verified 2 link(s): no drift" in again.stdout
    assert served.cli("verify", "--fix").exit_code == 0
    assert _notes(served, closed_issue, "INTERNAL-SWEEP") == [True]


def test_verify_without_a_state_database_says_so(served: Served) -> None:
    """Nothing has run yet: exit 1 naming the database, which is not created."""
    result = served.cli("verify")
    assert result.exit_code == 1
    assert f"no state database at {served.db}" in result.output
    assert not served.db.exists()


def test_verify_with_an_unknown_pair_is_a_configuration_error(served: Served) -> None:
    """An unknown `--pair` is a configuration error (exit 2) naming the pairs."""
    result = served.cli("verify", "--pair", "nope")
    assert result.exit_code == 2, result.output
