"""`retry` and `skip`: an operator acting on the failure table (dead letter) `status` shows."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import Served

from state import StateStore
from syncer.plan import Side
from syncer.runner import MAX_AUTO_RETRIES

EXE = Path(sys.executable).with_name("reamaze-sync")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def console(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as an operator runs it."""
    return subprocess.run([str(EXE), "--config", str(served.path), "--log-level", "error",
                           *args], env={**os.environ, **served.env}, capture_output=True,
                          text=True, timeout=60)


def store_of(served: Served) -> StateStore:
    return StateStore(f"sqlite:///{served.db}")


def poison(served: Served, slug: str) -> None:
    """Re:amaze answers the conversation's message list with something that is not JSON:
    the conversation fails on its own (the dead letter) while the pass goes on."""
    served.reamaze.faults.add(200, body=b"<html>oops</html>", content_type="application/json",
                              path=rf"/conversations/{slug}/messages", times=None)


def test_skip_leaves_a_conversation_alone_until_retry(served: Served) -> None:
    """`skip SLUG` (console script) records the skip; passes then create no issue for it
    while the other conversation syncs; `retry SLUG` takes the skip back and the next pass
    syncs it."""
    keep = served.reamaze.add_conversation("Crash", "It crashes.", "c@customer.example",
                                           tags=["bug"])
    other = served.reamaze.add_conversation("Freeze", "It freezes.", "d@customer.example",
                                            tags=["bug"])
    skipped = console(served, "skip", keep)
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout.strip() == (f"[bugs] skip {keep}: skipped; passes leave it alone "
                                      f"until `reamaze-sync retry {keep}`")
    first = served.cli("run", "--once")
    assert first.exit_code == 0, first.output
    assert "skipped_by_operator=1" in first.stdout
    store = store_of(served)
    assert store.get_link("bugs", keep) is None and store.get_link("bugs", other) is not None
    store.close()
    status = served.cli("status")
    assert f"    helpdesk {keep}: 0 attempts (skipped): skipped by operator" in status.stdout
    again = console(served, "skip", keep)
    assert again.stdout.strip() == f"[bugs] skip {keep}: already skipped"

    retried = console(served, "retry", keep)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == (f"[bugs] retry {keep}: was skipped; the next pass "
                                      "tries it again")
    second = served.cli("run", "--once")
    assert second.exit_code == 0, second.output
    assert "issues_created=1" in second.stdout and "failures_retried=1" in second.stdout
    store = store_of(served)
    assert store.get_link("bugs", keep) is not None and store.list_failures("bugs") == []
    store.close()
    assert len(served.redmine.state.issues) == 2


def test_retry_brings_back_an_object_past_the_automatic_retry_limit(served: Served) -> None:
    """A conversation that failed MAX_AUTO_RETRIES times is no longer retried by passes;
    `retry` (every failure of the pair) resets its attempts and the next pass syncs it."""
    slug = served.reamaze.add_conversation("Crash", "It crashes.", "c@customer.example",
                                           tags=["bug"])
    poison(served, slug)
    failed = served.cli("run", "--once")
    assert failed.exit_code == 1 and f"failed {slug}:" in failed.stdout
    store = store_of(served)
    for _ in range(MAX_AUTO_RETRIES - 1):
        store.record_failure("bugs", Side.HELPDESK, slug, "BadPayloadError: not JSON")
    store.close()
    served.reamaze.faults.clear()
    idle = served.cli("run", "--once")
    assert idle.exit_code == 0 and "failures_retried" not in idle.stdout
    assert not served.redmine.state.issues
    assert "(no longer retried automatically)" in served.cli("status").stdout

    retried = console(served, "retry")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith(f"[bugs] retry {slug}: was failing, "
                                     f"{MAX_AUTO_RETRIES} attempts: ")
    assert retried.stdout.rstrip().endswith("; the next pass tries it again")
    synced = served.cli("run", "--once")
    assert synced.exit_code == 0, synced.output
    assert "issues_created=1" in synced.stdout
    nothing = console(served, "retry")
    assert nothing.returncode == 0 and nothing.stdout.strip() == "[bugs] nothing to retry"


def test_skip_by_issue_stops_its_link_syncing_too(served: Served) -> None:
    """`skip '#N'` finds the conversation linked to issue N; a note added to the issue is
    then not copied (the tracker side is left alone too) until `retry`."""
    slug = served.reamaze.add_conversation("Crash", "It crashes.", "c@customer.example",
                                           tags=["bug"])
    assert served.cli("run", "--once").exit_code == 0
    # Settled: the next pass reads the link note's change and nothing else, so after it
    # only the issue's own change brings the conversation up (through the tracker feed).
    assert served.cli("run", "--once").exit_code == 0
    issue = next(iter(served.redmine.state.issues.values()))
    skipped = served.cli("skip", f"#{issue.id}")
    assert skipped.exit_code == 0, skipped.output
    assert f"[bugs] skip {slug}: skipped; it stays linked to issue {issue.id}" in skipped.stdout
    served.redmine.clock.advance(5)  # a later second: the tracker feed shows the change
    served.redmine.add_note(issue.id, "Fixed in 2.1.")
    before = len(served.reamaze.conversations[slug].messages)
    left = served.cli("run", "--once")
    assert left.exit_code == 0 and "skipped_by_operator=1" in left.stdout
    assert len(served.reamaze.conversations[slug].messages) == before
    assert served.cli("retry", f"{served.rm_server.url}/issues/{issue.id}").exit_code == 0
    copied = served.cli("run", "--once")
    assert copied.exit_code == 0, copied.output
    assert any("Fixed in 2.1." in m.body for m in served.reamaze.conversations[slug].messages)


def test_retry_of_something_not_failing_exits_1(served: Served) -> None:
    """Naming an object the failure table does not list is reported (exit 1); an unlinked
    issue is an error; without a database `retry` creates none."""
    nothing = served.cli("retry", "no-such-slug")
    assert nothing.exit_code == 1 and "no state database" in nothing.stderr
    assert not served.db.exists()
    assert served.cli("run", "--once").exit_code == 0
    unknown = served.cli("retry", "no-such-slug")
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == ("no-such-slug: not in the failure table of pair 'bugs'; "
                                      "nothing to retry")
    issue = served.cli("skip", "#99")
    assert issue.exit_code == 1
    assert "issue 99 is not linked to a conversation in pair 'bugs'" in issue.stderr


def test_a_pass_that_succeeds_keeps_a_skip_made_meanwhile(tmp_path: Path) -> None:
    """The runner clears an object's failures when it syncs; a skip the operator made while
    that pass ran stays (only `retry` takes it back)."""
    store = StateStore(f"sqlite:///{tmp_path / 's.db'}")
    store.record_failure("p", Side.HELPDESK, "conv-1", "boom")
    store.set_failure_skipped("p", Side.HELPDESK, "conv-1", True)
    store.clear_failure("p", Side.HELPDESK, "conv-1")
    assert [f.skipped for f in store.list_failures("p")] == [True]
    before = store.reset_failure("p", Side.HELPDESK, "conv-1")
    assert before is not None and before.skipped
    [after] = store.list_failures("p")
    assert (after.skipped, after.attempts) == (False, 0)
    store.clear_failure("p", Side.HELPDESK, "conv-1")
    assert store.list_failures("p") == []
    store.close()


def test_an_issue_whose_conversation_cannot_be_opened_is_retried_on_request(
        served: Served) -> None:
    """Reverse creation into a channel Re:amaze refuses fails the issue on the tracker side
    of the dead letter, past the automatic limit it waits; `retry` resets it and, once the
    channel exists, the next pass opens its one conversation."""
    served.write_config('\n[pairs.reverse]\nenabled = true\ntracker_ids = [1]\n'
                        'fallback_contact = "support@acme.example"\ncategory = "bugs"\n')
    issue = served.redmine.add_issue(served.project, "Crash", description="It crashes.")
    first = served.cli("run", "--once")
    assert first.exit_code == 1, first.output
    store = store_of(served)
    for _ in range(MAX_AUTO_RETRIES):
        store.record_failure("bugs", Side.TRACKER, str(issue.id), "refused")
    store.close()
    served.reamaze.add_channel("bugs")
    waiting = served.cli("run", "--once")
    assert waiting.exit_code == 0 and served.reamaze.conversations == {}, waiting.output
    retried = served.cli("retry")
    assert retried.exit_code == 0, retried.output
    assert f"[bugs] retry issue {issue.id} (its conversation): was failing" in retried.stdout
    done = served.cli("run", "--once")
    assert done.exit_code == 0, done.output
    assert len(served.reamaze.conversations) == 1
