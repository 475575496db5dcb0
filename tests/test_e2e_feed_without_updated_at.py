"""The Re:amaze feed works when list items carry no ``updated_at`` (the documented list
item has none): status, tag and note changes are still synced, and an idle poll stays one
list request."""

from __future__ import annotations

from pathlib import Path

from e2e_support import STAFF, Mark, issue_for, issue_ids, journals, run_pass, sandbox

from syncer.sandbox import Sandbox


def _sandbox(tmp_path: Path) -> Sandbox:
    sb = sandbox(tmp_path, status={"on_conversation_closed": "close_issue"},
                 status_field={"direction": "both", "owner": "tracker"})
    sb.reamaze.list_items_without_updated_at = True
    return sb


def _list_requests(sb: Sandbox, mark: Mark) -> list[str]:
    return [r.path for r in sb.reamaze.requests[mark.reamaze:] if r.method == "GET"]


def test_status_change_without_updated_at_closes_the_issue(tmp_path: Path) -> None:
    """A status-only change of a linked conversation (no new message, so the list item's
    derived time does not move) still reaches the tracker."""
    sb = _sandbox(tmp_path)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                       tags=["bug"])
    engine = sb.engine()
    try:
        run_pass(engine)
        run_pass(engine)  # settles the feed after the sync's own writes
        issue = issue_for(engine, slug)
        sb.reamaze.set_status(slug, 2)
        run_pass(engine)
        assert sb.redmine.state.issues[int(issue)].status_id == 5
        mark = Mark.now(sb)
        run_pass(engine)
        assert mark.writes() == []
    finally:
        engine.close()


def test_tag_change_without_updated_at_creates_the_issue(tmp_path: Path) -> None:
    """A conversation that only gets the matching tag later gets its issue on the next poll."""
    sb = _sandbox(tmp_path)
    slug = sb.reamaze.add_conversation("Slow app", "It is slow.", "dave@customer.example",
                                       tags=["question"])
    engine = sb.engine()
    try:
        run_pass(engine)
        assert issue_ids(sb) == []
        sb.reamaze.set_tags(slug, ["question", "bug"])
        run_pass(engine)
        assert len(issue_ids(sb)) == 1
    finally:
        engine.close()


def test_internal_note_without_updated_at_is_copied_privately(tmp_path: Path) -> None:
    """An internal note (not shown in the list item but counted in ``message_count``) is
    copied as a private note."""
    sb = _sandbox(tmp_path)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                       tags=["bug"])
    engine = sb.engine()
    try:
        run_pass(engine)
        run_pass(engine)
        issue = issue_for(engine, slug)
        sb.reamaze.add_staff_message(slug, "INTERNAL-X reproduced", email=STAFF, visibility=1)
        run_pass(engine)
        copies = [n for n in journals(sb, issue) if "INTERNAL-X" in n.text]
        assert len(copies) == 1 and copies[0].private
    finally:
        engine.close()


def test_idle_poll_without_updated_at_is_one_list_request(tmp_path: Path) -> None:
    """Once settled, a poll with nothing changed reads one page of conversations and
    writes nothing."""
    sb = _sandbox(tmp_path)
    for n in range(40):  # more than a page
        sb.reamaze.add_conversation(f"Crash {n}", "It crashes.", f"c{n}@customer.example",
                                    tags=["bug"] if n % 2 else ["question"])
    engine = sb.engine()
    try:
        run_pass(engine)
        run_pass(engine)
        run_pass(engine)
        mark = Mark.now(sb)
        run_pass(engine)
        assert mark.writes() == []
        assert _list_requests(sb, mark) == ["/api/v1/conversations"]
    finally:
        engine.close()
