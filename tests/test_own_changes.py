"""Re:amaze requests per change: the sync's own writes are not read back as changes, and a
link whose issue changed is decided without reading the conversation where the decision
cannot depend on it, without losing or doubling anything when someone else writes at the
same moment, when ``message_count`` is missing or counts differently, or when the state
is an older copy."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from e2e_support import STAFF, Engineer, issue_for, journals, messages, run_pass, sandbox

from syncer.app import Engine
from syncer.sandbox import Sandbox

INTERNAL = 1


def reamaze_calls(sb: Sandbox, since: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in sb.reamaze.requests[since:]:
        path = r.path.removeprefix("/api/v1")
        kind = ("list" if path == "/conversations" else
                "messages" if path.endswith("/messages") else "conversation")
        key = f"{r.method} {kind}"
        out[key] = out.get(key, 0) + 1
    return out


def linked(tmp_path: Path, message_count: str = "all",
           **pair: object) -> tuple[Sandbox, Engine, str, str, Engineer]:
    sb = sandbox(tmp_path, **pair)
    sb.reamaze.message_count = message_count
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                       tags=["bug"])
    engine = sb.engine()
    run_pass(engine)
    run_pass(engine)
    return sb, engine, slug, issue_for(engine, slug), Engineer(sb)


def settle(sb: Sandbox, engine: Engine, passes: int = 3) -> dict[str, int]:
    """Passes until quiet; the Re:amaze requests they made beyond one listing each."""
    mark = len(sb.reamaze.requests)
    for _ in range(passes):
        run_pass(engine)
        calls = reamaze_calls(sb, mark)
    calls.pop("GET list", None)
    return calls


def test_a_customer_message_costs_one_reamaze_read(tmp_path: Path) -> None:
    sb, engine, slug, _, _ = linked(tmp_path)
    sb.reamaze.add_customer_message(slug, "Still broken.")
    assert settle(sb, engine) == {"GET messages": 1}


def test_an_engineers_note_costs_one_read_and_the_copy(tmp_path: Path) -> None:
    sb, engine, slug, issue, dev = linked(tmp_path)
    dev.note(issue, "Root cause found.")
    assert settle(sb, engine) == {"GET messages": 1, "POST messages": 1}
    assert [m.visibility for m in messages(sb, slug) if "Root cause" in m.body] == [INTERNAL]


def test_an_issue_change_the_pair_does_not_carry_reads_no_conversation(tmp_path: Path) -> None:
    sb, engine, _, issue, dev = linked(tmp_path)
    dev.put(issue, subject="Renamed by the engineer")
    assert settle(sb, engine) == {}


def test_without_recognising_own_changes_the_copy_is_read_back(tmp_path: Path) -> None:
    """The baseline the counts above are measured against: a conversation whose count is
    never trusted (``message_count`` missing) is read again after each copy."""
    sb, engine, _, issue, dev = linked(tmp_path, message_count="missing")
    dev.note(issue, "Root cause found.")
    assert settle(sb, engine) == {"GET messages": 2, "POST messages": 1}


def _before(sb: Sandbox, method: str, path_end: str, action: Callable[[], None]) -> None:
    fired: list[bool] = []

    def hook(request: httpx.Request) -> None:
        if not fired and request.method == method and request.url.path.endswith(path_end):
            fired.append(True)
            action()
    sb.reamaze.before_request.append(hook)


@pytest.mark.parametrize("count", ["all", "public", "missing"])
@pytest.mark.parametrize("who", ["customer", "staff note"])
def test_a_message_written_just_before_our_copy_is_not_taken_for_ours(
        tmp_path: Path, count: str, who: str) -> None:
    """Someone writes in the conversation between the sync's read and its copy: the list
    item then shows one more message than the sync's own, and the message is copied."""
    sb, engine, slug, issue, dev = linked(tmp_path, message_count=count)
    text = "NEW-1 one more detail"

    def write() -> None:
        if who == "customer":
            sb.reamaze.add_customer_message(slug, text)
        else:
            sb.reamaze.add_staff_message(slug, text, email=STAFF, visibility=INTERNAL)
    _before(sb, "POST", f"{slug}/messages", write)
    dev.note(issue, "Root cause found.")
    settle(sb, engine)
    assert [j.text for j in journals(sb, issue) if text in j.text] != []
    assert sum(1 for m in messages(sb, slug) if "Root cause" in m.body) == 1


@pytest.mark.parametrize("count", ["all", "public", "missing"])
def test_a_staff_note_right_after_our_copy_is_copied(tmp_path: Path, count: str) -> None:
    sb, engine, slug, issue, dev = linked(tmp_path, message_count=count)
    dev.note(issue, "Root cause found.")
    run_pass(engine)
    sb.reamaze.add_staff_message(slug, "NEW-2 told the customer", email=STAFF,
                                 visibility=INTERNAL)
    settle(sb, engine)
    assert any("NEW-2" in j.text for j in journals(sb, issue))


def test_a_status_change_with_an_issue_note_is_carried(tmp_path: Path) -> None:
    sb, engine, slug, issue, dev = linked(tmp_path, status={
        "on_conversation_closed": "close_issue"})
    sb.reamaze.set_status(slug, 2)
    dev.note(issue, "Root cause found.")
    settle(sb, engine)
    assert sb.redmine.state.issues[int(issue)].closed_on is not None
    assert sum(1 for m in messages(sb, slug) if "Root cause" in m.body) == 1


def test_an_older_copy_of_the_state_never_doubles_a_copy(tmp_path: Path) -> None:
    """The state restored from before a note was copied: the next note on the issue must
    not make the sync write the first one again (its copy is found by its marker)."""
    sb, engine, slug, issue, dev = linked(tmp_path)
    engine.close()
    shutil.copy(tmp_path / "state.db", tmp_path / "backup.db")
    engine = sb.engine()
    dev.note(issue, "FIRST root cause found.")
    settle(sb, engine)
    engine.close()
    shutil.copy(tmp_path / "backup.db", tmp_path / "state.db")
    engine = sb.engine()
    dev.note(issue, "SECOND fix is ready.")
    settle(sb, engine)
    assert sum(1 for m in messages(sb, slug) if "FIRST" in m.body) == 1
    assert sum(1 for m in messages(sb, slug) if "SECOND" in m.body) == 1
    engine.close()


def test_a_close_reply_names_the_conversation_though_only_the_issue_changed(
        tmp_path: Path) -> None:
    """The sync's own words about the conversation (a close reply) are never written from
    the snapshot's stand-in: that plan is made again from a full read."""
    sb, engine, slug, issue, dev = linked(
        tmp_path, status={"close_reply_template": "Fixed: {subject} (#{issue_id})."})
    settle(sb, engine)
    dev.close(issue)
    settle(sb, engine)
    replies = [m.body for m in messages(sb, slug) if m.body.startswith("Fixed:")]
    assert replies == [f"Fixed: Crash on save (#{issue})."]
    assert sb.reamaze.conversations[slug].status == 2
