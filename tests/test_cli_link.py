"""`link` and `unlink` as an operator uses them: issue numbers, `#77` and URLs, the only
pair by default, conflicts as conflicts, and an unlink that says what happens next."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import Served

from state import StateStore

EXE = Path(sys.executable).with_name("reamaze-sync")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def console(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), "--config", str(served.path), "--log-level", "error",
                           *args], env={**os.environ, **served.env}, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def linked_issue(served: Served, slug: str) -> str | None:
    store = StateStore(f"sqlite:///{served.db}")
    try:
        link = store.get_link("bugs", slug)
        return None if link is None else link.issue_id
    finally:
        store.close()


def conversation_url(served: Served, slug: str) -> str:
    return f"{served.rz_server.url}/admin/conversations/{slug}"


def test_link_takes_numbers_hashes_and_urls_and_defaults_the_pair(served: Served) -> None:
    """With one pair, `link` needs no --pair; the issue may be 77, #77 or its URL on the
    tracker, the conversation its slug or its Re:amaze URL (console script)."""
    issues = [served.redmine.add_issue(served.project, f"Issue {n}") for n in range(3)]
    slugs = [served.reamaze.add_conversation(f"Question {n}", "Hello.", f"c{n}@customer.example")
             for n in range(3)]
    forms = [(slugs[0], str(issues[0].id)),
             (conversation_url(served, slugs[1]), f"#{issues[1].id}"),
             (slugs[2], f"{served.rm_server.url}/issues/{issues[2].id}?tab=history")]
    for (conv, issue), slug, made in zip(forms, slugs, issues, strict=True):
        result = console(served, "link", conv, issue)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == (f"[bugs] linked {slug} <-> issue {made.id}; "
                                         "the next pass syncs them")
        assert linked_issue(served, slug) == str(made.id)


def test_link_refuses_urls_of_another_server(served: Served) -> None:
    """An issue URL of another tracker (or a conversation URL of another host) is a usage
    error naming the expected form; nothing is linked."""
    issue = served.redmine.add_issue(served.project, "Issue")
    slug = served.reamaze.add_conversation("Question", "Hello.", "c@customer.example")
    other = served.cli("link", slug, f"https://other.example/issues/{issue.id}")
    assert other.exit_code == 2
    assert (f"is not a tracker issue URL here (expected {served.rm_server.url}/issues/…)"
            in other.stderr)
    wrong = served.cli("link", f"https://elsewhere.example/admin/conversations/{slug}",
                       str(issue.id))
    assert wrong.exit_code == 2 and "is not a Re:amaze conversation URL here" in wrong.stderr
    junk = served.cli("link", slug, "issue-seven")
    assert junk.exit_code == 2 and "is not an issue: give its number" in junk.stderr
    assert not served.db.exists() or linked_issue(served, slug) is None


def test_a_link_conflict_is_reported_as_such(served: Served) -> None:
    """Linking a conversation already linked elsewhere, or an issue another conversation
    holds, says "already linked" and exits 1 (not a configuration error)."""
    first, second = (served.redmine.add_issue(served.project, f"Issue {n}") for n in range(2))
    slug = served.reamaze.add_conversation("Question", "Hello.", "c@customer.example")
    other = served.reamaze.add_conversation("Other", "Hi.", "d@customer.example")
    assert served.cli("link", slug, str(first.id)).exit_code == 0
    taken = served.cli("link", slug, str(second.id))
    assert taken.exit_code == 1
    assert taken.stderr.startswith(f"error: already linked: conversation {slug} is already "
                                   f"linked in pair 'bugs' (issue {first.id}, active)")
    assert "configuration error" not in taken.stderr
    held = served.cli("link", other, f"#{first.id}")
    assert held.exit_code == 1
    assert (f"error: already linked: issue {first.id} is already linked in pair 'bugs' "
            f"(conversation {slug}, active)") in held.stderr
    assert linked_issue(served, slug) == str(first.id) and linked_issue(served, other) is None


def test_pair_is_required_when_there_are_several(served: Served) -> None:
    """With two pairs, `link`, `unlink` and `skip` without --pair are usage errors naming
    the pairs."""
    served.redmine.add_project("roadmap")
    served.write_config('\n[[pairs]]\nname = "features"\ntracker = "redmine"\n')
    for args in (["link", "some-slug", "1"], ["unlink", "some-slug"], ["skip", "some-slug"]):
        result = served.cli(*args)
        assert result.exit_code == 2, args
        assert "--pair is needed: this configuration has 2 pairs (bugs, features)" \
            in result.stderr


def _hand_linked(served: Served) -> tuple[str, int]:
    """A bug conversation linked by hand to an issue someone made (it has no marker)."""
    slug = served.reamaze.add_conversation("Crash on save", "It crashes.",
                                           "carol@customer.example", tags=["bug"])
    issue = served.redmine.add_issue(served.project, "Crash when saving")
    assert served.cli("link", slug, str(issue.id)).exit_code == 0
    assert served.cli("run", "--once").exit_code == 0
    return slug, issue.id


def test_unlink_warns_and_wants_a_yes(served: Served) -> None:
    """Not at a terminal, `unlink` without --yes warns that a matching conversation gets a
    new issue and refuses (exit 1); with --yes it unlinks, and the warning comes true: the
    conversation's next change creates a second issue."""
    slug, issue = _hand_linked(served)
    refused = console(served, "unlink", slug)
    assert refused.returncode == 1 and refused.stdout == ""
    warning, error = refused.stderr.strip().splitlines()
    assert warning == (f"warning: if {slug} still matches the rules of pair 'bugs' (tags "
                       "bug), the next pass that reads it (when it changes, or a backfill) "
                       f"links it again: to issue {issue} if the sync created it (found by "
                       "its marker), otherwise to a NEW issue. `unlink --exclude` also keeps "
                       "it from syncing (undo: `retry`).")
    assert error == f"error: {slug} not unlinked: confirm with --yes, or use --exclude"
    assert linked_issue(served, slug) == str(issue)
    done = console(served, "unlink", f"#{issue}", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"[bugs] unlinked {slug}"
    assert done.stderr.startswith("warning: ")
    served.reamaze.add_customer_message(slug, "Still crashing.")
    assert served.cli("run", "--once").exit_code == 0
    assert len(served.redmine.state.issues) == 2
    assert linked_issue(served, slug) not in (None, str(issue))


def test_unlink_exclude_keeps_it_from_syncing_until_retry(served: Served) -> None:
    """`unlink --exclude` forgets the link and skips the conversation: its next change
    creates nothing; `retry` takes the skip back and the next pass links it again."""
    slug, issue = _hand_linked(served)
    excluded = console(served, "unlink", slug, "--exclude")
    assert excluded.returncode == 0, excluded.stderr
    assert excluded.stdout.strip() == (f"[bugs] unlinked {slug} from issue {issue} and "
                                       "excluded it: passes leave it alone until "
                                       f"`reamaze-sync retry {slug}`")
    assert excluded.stderr == ""
    served.reamaze.add_customer_message(slug, "Still crashing.")
    left = served.cli("run", "--once")
    assert left.exit_code == 0 and "skipped_by_operator=1" in left.stdout
    assert len(served.redmine.state.issues) == 1 and linked_issue(served, slug) is None
    assert served.cli("retry", slug).exit_code == 0
    assert served.cli("run", "--once").exit_code == 0
    assert linked_issue(served, slug) is not None


@pytest.mark.parametrize("answer, unlinked", [("n", False), ("y", True)])
def test_unlink_at_a_terminal_asks(served: Served, answer: str, unlinked: bool) -> None:
    """At a terminal `unlink` shows the warning and asks; "n" keeps the link (exit 1), "y"
    unlinks (exit 0)."""
    slug, _ = _hand_linked(served)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(EXE), "--config", str(served.path), "unlink", slug],
                            env={**os.environ, **served.env}, stdin=follower,
                            stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 30
    while b"Unlink anyway? [y/N]" not in seen:
        assert time.monotonic() < deadline, seen
        try:
            chunk = os.read(leader, 1024)
        except OSError:  # the process is gone and its terminal with it
            chunk = b""
        if not chunk:
            proc.wait(timeout=30)
            pytest.fail(f"no question asked (exit {proc.returncode}): {seen!r}")
        seen += chunk
    os.write(leader, f"{answer}\n".encode())
    out, _ = proc.communicate(timeout=30)
    os.close(leader)
    assert b"to a NEW issue" in seen
    assert proc.returncode == (0 if unlinked else 1)
    assert (out.strip() == f"[bugs] unlinked {slug}") is unlinked
    assert (linked_issue(served, slug) is None) is unlinked
