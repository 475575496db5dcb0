"""Status both ways, the whole engine against both simulators: a conversation the customer
reopens reopens its issue, the [pairs.status] table moves both sides between its
statuses, each write reaches the other side once, and a pass after each writes nothing."""

from __future__ import annotations

from pathlib import Path

from e2e_support import Engineer, Mark, issue_for, messages, run_pass, sandbox

from syncer.app import Engine
from syncer.runner import PairRunner
from syncer.sandbox import Sandbox

NEW, IN_PROGRESS, RESOLVED, FEEDBACK, CLOSED, REJECTED = 1, 2, 3, 4, 5, 6
RZ_OPEN, RZ_RESPONDED, RZ_DONE = 0, 1, 2


def _start(sb: Sandbox) -> tuple[Engine, str, str]:
    slug = sb.reamaze.add_conversation("App crashes on login", "Since the update it crashes.",
                                       "carol@customer.example", tags=["bug"])
    engine = sb.engine()
    runner = engine.runner(sb.config.pairs[0])
    assert isinstance(runner, PairRunner)
    result = runner.run_once(kind="backfill", full=True)
    assert result.ok and not result.failed, (result.error, result.failed)
    return engine, slug, issue_for(engine, slug)


def _quiet(sb: Sandbox, engine: Engine) -> None:
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []


def _replies(sb: Sandbox, slug: str) -> int:
    return len([m for m in messages(sb, slug) if m.body.startswith("Fixed:")])


def test_customer_writing_again_reopens_the_issue_and_each_closing_gets_one_reply(
        tmp_path: Path) -> None:
    """Issue closed: conversation Done and one close reply. The customer writes again (Re:amaze
    reopens the conversation): the issue is reopened to the tracker's default status, the
    message copied. Closed again: Done again, and one more reply for the new closing."""
    sb = sandbox(tmp_path, status={"on_conversation_reopened": "reopen_issue",
                                   "close_reply_template": "Fixed: {subject}."})
    engine, slug, issue = _start(sb)
    dev = Engineer(sb)
    assert sb.config.pairs[0].status_field.direction == "both"  # follows the table

    dev.close(issue)
    run_pass(engine)
    assert sb.reamaze.conversations[slug].status == RZ_DONE and _replies(sb, slug) == 1
    _quiet(sb, engine)

    sb.reamaze.add_customer_message(slug, "It crashes again since this morning.")
    assert sb.reamaze.conversations[slug].status == RZ_OPEN
    result = run_pass(engine)
    assert result.counts["tracker_updated"] == 1
    assert sb.redmine.state.issues[int(issue)].status_id == NEW  # the tracker's default
    _quiet(sb, engine)

    dev.close(issue)
    run_pass(engine)
    assert sb.reamaze.conversations[slug].status == RZ_DONE and _replies(sb, slug) == 2
    _quiet(sb, engine)
    engine.close()


def test_staff_reopening_leaves_the_issue_closed_by_default(tmp_path: Path) -> None:
    """Without on_conversation_reopened, a reopened conversation does not reopen the issue
    (today's behaviour for existing configurations)."""
    sb = sandbox(tmp_path)
    engine, slug, issue = _start(sb)
    Engineer(sb).close(issue)
    run_pass(engine)
    sb.reamaze.set_status(slug, RZ_OPEN)
    _quiet(sb, engine)
    assert sb.redmine.state.issues[int(issue)].status_id == CLOSED
    engine.close()


def test_status_table_moves_both_sides_between_named_statuses(tmp_path: Path) -> None:
    """With a table: Responded → Feedback; Resolved (an open status) → Done; the customer
    writes → In Progress; staff marks Done → Rejected; the customer writes again → In
    Progress (reopened); Feedback on the tracker → Responded. Every move is written once
    and never comes back."""
    sb = sandbox(tmp_path, status={
        "on_conversation_closed": "close_issue", "on_conversation_reopened": "reopen_issue",
        "issue_to_conversation": {"Feedback": "pending", "resolved": "closed"},
        "conversation_to_issue": {"pending": "Feedback", "open": "2", "closed": "Rejected"}})
    engine, slug, issue = _start(sb)
    dev = Engineer(sb)
    steps: list[tuple[str, int | None, int, int]] = [
        # who acts, the status they set, then Re:amaze's and Redmine's status after a pass
        ("reamaze", RZ_RESPONDED, RZ_RESPONDED, FEEDBACK),
        ("redmine", RESOLVED, RZ_DONE, RESOLVED),
        ("customer", None, RZ_OPEN, IN_PROGRESS),
        ("reamaze", RZ_DONE, RZ_DONE, REJECTED),
        ("customer", None, RZ_OPEN, IN_PROGRESS),  # reopens the Rejected issue
        ("redmine", FEEDBACK, RZ_RESPONDED, FEEDBACK),
    ]
    for who, status, rz_after, rm_after in steps:
        if who == "reamaze":
            assert status is not None
            sb.reamaze.set_status(slug, status)
        elif who == "customer":
            sb.reamaze.add_customer_message(slug, "Still happening.")
        else:
            dev.put(issue, status_id=status)
        mark = Mark.now(sb)
        run_pass(engine)
        # one status write; the customer's message is also copied, as a note
        assert len(mark.writes()) == (2 if who == "customer" else 1), (who, mark.writes())
        assert (sb.reamaze.conversations[slug].status,
                sb.redmine.state.issues[int(issue)].status_id) == (rz_after, rm_after), who
        _quiet(sb, engine)
    engine.close()
