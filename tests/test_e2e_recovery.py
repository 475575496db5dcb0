"""Crashes, lost answers, rate-limit storms and shifting pages: the engine never creates
a duplicate, never loses a message, and converges."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from e2e_support import (
    QUICK_RECOVERY,
    STAFF,
    CrashAfter,
    Engineer,
    Handler,
    Mark,
    crash_then_restart,
    is_write,
    issue_for,
    issue_ids,
    journals,
    messages,
    run_pass,
    sandbox,
    seed_two_bugs,
)
from fakes import FakeClock

from syncer.app import Engine, run_all_once
from syncer.sandbox import Sandbox
from syncer.status import render_status

INTERNAL = 1


_seed = seed_two_bugs


def _assert_converged(sb: Sandbox, engine: Engine, slugs: list[str]) -> None:
    """One issue per conversation, one link note each, every message copied exactly once
    with its visibility, and a further run writes nothing."""
    assert len(issue_ids(sb)) == len(slugs), issue_ids(sb)
    for slug in slugs:
        issue = issue_for(engine, slug)
        notes = journals(sb, issue)
        for m in messages(sb, slug):
            if "Linked to Redmine" in m.body or "commented on Redmine" in m.body:
                continue
            copies = [j for j in notes if m.body in j.text]
            assert len(copies) == 1, (slug, m.body, len(copies))
            assert copies[0].private == (m.visibility != 0)
        link_notes = [m for m in messages(sb, slug) if "Linked to Redmine" in m.body]
        assert [(m.visibility, f"#{issue}:" in m.body) for m in link_notes] == [
            (INTERNAL, True)], slug
        for j in notes:
            if "Re:amaze" in j.text:
                continue
            arrived = [m for m in messages(sb, slug) if j.text.split("\n\n<!--")[0] in m.body]
            assert len(arrived) == 1, (slug, j.text)
    assert not engine.store.pending_intents("bugs") or all(
        i.status != "pending" for i in engine.store.pending_intents("bugs"))
    mark = Mark.now(sb)
    run_pass(engine)
    assert mark.writes() == []


def test_crash_after_issue_create_recovers_the_issue_instead_of_duplicating(
        tmp_path: Path) -> None:
    """The process dies after Redmine created the issue but before the link was saved; a
    new engine on the same state file finds the issue by its marker and creates no other."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    crash = CrashAfter(is_write("POST", r"^/issues\.json$"))
    engine = crash_then_restart(sb, crash, "redmine")
    assert len(issue_ids(sb)) == 1
    pending = [i for i in engine.store.pending_intents("bugs") if i.status == "pending"]
    assert [i.kind for i in pending] == ["create_issue"]
    result = run_pass(engine)
    assert result.counts["intents_recovered"] == 1
    assert result.counts["issues_created"] == 1  # only the other conversation's
    _assert_converged(sb, engine, slugs)
    engine.close()


@pytest.mark.parametrize("which", ["public", "private"])
def test_crash_after_note_write_keeps_one_copy(tmp_path: Path, which: str) -> None:
    """The process dies after a note reached Redmine but before it was recorded; the next
    engine finds the note by its marker and does not write it again."""
    sb = sandbox(tmp_path, sync=QUICK_RECOVERY)
    slugs = _seed(sb)

    def private_note(request: httpx.Request) -> bool:
        if request.method != "PUT" or not request.url.path.startswith("/issues/"):
            return False
        issue = json.loads(request.content or b"{}").get("issue", {})
        return "notes" in issue and issue.get("private_notes") == (which == "private")

    crash = CrashAfter(private_note)
    engine = crash_then_restart(sb, crash, "redmine")
    assert sum(len(journals(sb, i)) for i in issue_ids(sb)) >= 1
    # Notes are confirmed by one read-back after their batch: the notes of the batch the
    # crash interrupted are unconfirmed, and each is recovered by its marker.
    pending = [i for i in engine.store.pending_intents("bugs") if i.status == "pending"]
    assert pending and {i.kind for i in pending} == {"add_comment"}
    result = run_pass(engine)
    # The note that landed is found; the batch's later notes, never sent before the crash,
    # cannot be told from notes still in flight: they are held until looked for enough.
    assert result.counts["intents_recovered"] >= 1
    assert result.counts["intents_recovered"] + result.counts["writes_held"] == len(pending)
    if result.counts["writes_held"]:
        assert run_pass(engine).counts["intents_expired"] == result.counts["writes_held"]
    _assert_converged(sb, engine, slugs)
    engine.close()


def test_crash_after_reamaze_message_post_keeps_one_message(tmp_path: Path) -> None:
    """The process dies after Re:amaze stored our link note; the restart recovers it by its
    origin_id and every later note is still written once."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    crash = CrashAfter(is_write("POST", r"/messages$"))
    engine = crash_then_restart(sb, crash, "reamaze")
    result = run_pass(engine)
    assert result.counts["intents_recovered"] == 1
    _assert_converged(sb, engine, slugs)
    engine.close()


def test_issue_create_answer_lost_then_engine_restarted(tmp_path: Path) -> None:
    """Redmine creates the issue but the answer is lost and every look-up fails too, so the
    pass gives up with a pending intent; a brand-new engine resolves it: one issue."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    sb.redmine.faults.add(status=503, commit=True, method="POST", path=r"^/issues\.json$")
    # The first search (does this conversation have an issue already?) still works.
    sb.redmine.faults.add(status=503, times=10_000, method="GET", path=r"^/issues\.json$",
                          skip=1)
    engine = sb.engine(clock=FakeClock())
    results = run_all_once(engine)
    assert results[0].error is not None and "503" in results[0].error
    assert len(issue_ids(sb)) == 1
    assert [i.status for i in engine.store.pending_intents("bugs")] == ["pending"]
    engine.close()
    sb.redmine.faults.clear()
    fresh = sb.engine(clock=FakeClock())
    run_pass(fresh)
    _assert_converged(sb, fresh, slugs)
    fresh.close()


def test_lost_answers_on_both_sides_inside_one_pass_create_nothing_twice(
        tmp_path: Path) -> None:
    """Writes that land but whose answers are lost (issue create, note, Re:amaze message)
    are found by marker within the same pass: no duplicates, no failure."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    create = sb.redmine.faults.add(timeout=True, commit=True, method="POST",
                                   path=r"^/issues\.json$")
    note = sb.redmine.faults.add(status=502, commit=True, method="PUT",
                                 path=r"^/issues/\d+\.json$")
    message = sb.reamaze.faults.add(status=500, commit=True, method="POST",
                                    path_prefix="/api/v1/conversations/")
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    assert (create.hits, note.hits, message.hits) == (1, 1, 1)
    _assert_converged(sb, engine, slugs)
    engine.close()


class Chaos:
    """Seeded faults on every request: 429 with Retry-After, timeouts before the server
    sees the request, and writes that land but whose answer is lost."""

    def __init__(self, seed: int, rate: float) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.injected: Counter[str] = Counter()
        self.enabled = True

    def wrap(self, handler: Handler) -> Handler:
        def handle(request: httpx.Request) -> httpx.Response:
            roll = self.rng.random()
            if not self.enabled or roll >= self.rate:
                return handler(request)
            kind = self.rng.choice(["429", "429", "timeout", "lost"])
            self.injected[kind] += 1
            if kind == "429":
                return httpx.Response(429, headers={"Retry-After": "3"},
                                      json={"error": "Too Many Requests"})
            if kind == "timeout":
                raise httpx.ReadTimeout("chaos: no answer", request=request)
            handler(request)  # applied, then the answer never arrives
            raise httpx.ReadTimeout("chaos: answer lost", request=request)
        return handle


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rate_limit_storm_and_timeouts_converge_without_duplicates(tmp_path: Path,
                                                                   seed: int) -> None:
    """With half of all requests answered 429, timing out, or losing their answer after the
    write landed, passes may fail but never duplicate; once the storm passes, the next
    passes converge to exactly one copy of everything."""
    sb = sandbox(tmp_path, sync=QUICK_RECOVERY)
    slugs = _seed(sb)
    chaos = Chaos(seed, rate=0.5)
    sb.wrap = lambda _name, handler: chaos.wrap(handler)
    clock = FakeClock()
    engine = sb.engine(clock=clock)
    dev = Engineer(sb)
    outcomes: list[bool] = []
    for round_no in range(6):
        results = run_all_once(engine)
        outcomes.append(results[0].ok)
        if round_no == 1:
            for slug in slugs:
                link = engine.store.get_link("bugs", slug)
                if link is not None and link.issue_id is not None:
                    dev.note(link.issue_id, f"PRIVATE-{slug} looking", private=True)
                    dev.note(link.issue_id, f"Public update on {slug}")
            sb.reamaze.add_customer_message(slugs[1], "Still stalled this morning.")
        # Never two issues for one conversation, whatever happened in this pass.
        assert len(issue_ids(sb)) <= len(slugs)
    assert sum(chaos.injected.values()) > 10, chaos.injected
    assert clock.sleeps, "nobody waited for Retry-After"
    chaos.enabled = False
    # Writes whose outcome the storm hid are looked for on two passes before being sent
    # again: a few quiet passes settle everything.
    for _ in range(4):
        run_all_once(engine)
    _assert_converged(sb, engine, slugs)
    engine.close()


def test_tracker_change_is_not_lost_when_an_aborted_pass_is_repeated(tmp_path: Path) -> None:
    """A pass syncs conversation A, then aborts on B; a Redmine note then lands on A's
    issue. The repeated walk re-reads A unchanged, and the tracker feed must still copy the
    note (it used to be skipped as "already handled" and its cursor moved past it)."""
    sb = sandbox(tmp_path)
    a, b = _seed(sb)
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    sb.reamaze.add_customer_message(b, "Any news?")  # so that B is read, and fails
    sb.reamaze.add_staff_message(a, "INTERNAL-B newest change", email=STAFF,
                                 visibility=INTERNAL)
    sb.reamaze.faults.add(status=503, times=8, method="GET",
                          path_prefix=f"/api/v1/conversations/{b}/messages")
    aborted = run_all_once(engine)[0]
    assert aborted.error is not None and "503" in aborted.error
    assert any("INTERNAL-B" in j.text for j in journals(sb, issue_for(engine, a)))
    Engineer(sb).note(issue_for(engine, a), "Found it: a null pointer in the draft store.")
    run_pass(engine)
    copies = [m for m in messages(sb, a) if "null pointer" in m.body]
    assert [m.visibility for m in copies] == [INTERNAL]
    _assert_converged(sb, engine, [a, b])
    engine.close()


def test_rejected_note_is_recorded_as_failing_then_retried_once(tmp_path: Path) -> None:
    """Redmine refusing one note (422) fails only that conversation: the other is synced,
    `status` lists the failing object, and the next pass writes the note exactly once."""
    sb = sandbox(tmp_path)
    first, second = _seed(sb)
    sb.redmine.faults.add(status=422, body=b'{"errors":["Notes is invalid"]}', method="PUT",
                          path=r"^/issues/\d+\.json$")
    engine = sb.engine(clock=FakeClock())
    result = run_all_once(engine)[0]
    assert result.ok and len(result.failed) == 1
    [failed] = result.failed
    assert "Notes is invalid" in result.failed[failed]
    [failure] = engine.store.list_failures("bugs")
    assert failure.object_id == failed and failure.attempts == 1
    status = render_status(sb.config, engine.store, datetime.now(UTC))
    assert f"helpdesk {failed}: 1 attempts: " in status
    retried = run_pass(engine)
    assert retried.counts["failures_retried"] == 1
    assert engine.store.list_failures("bugs") == []
    _assert_converged(sb, engine, [first, second])
    engine.close()


def test_failed_copy_of_a_tracker_note_is_retried_although_the_conversation_is_unchanged(
        tmp_path: Path) -> None:
    """Re:amaze refusing the copy of a Redmine note fails the conversation; the next pass
    retries it even though the conversation itself did not change, and the note arrives
    once (the tracker feed has already moved past the issue)."""
    sb = sandbox(tmp_path)
    first, second = _seed(sb)
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    run_pass(engine)
    issue = issue_for(engine, first)
    Engineer(sb).note(issue, "Found the cause.")
    rule = sb.reamaze.faults.add(status=422, body=b'{"errors":{"body":["is invalid"]}}',
                                 method="POST", path_prefix=f"/api/v1/conversations/{first}/")
    failed = run_all_once(engine)[0]
    assert rule.hits == 1 and first in failed.failed and "is invalid" in failed.failed[first]
    retried = run_pass(engine)
    assert retried.counts["failures_retried"] == 1 and retried.counts["comments_to_helpdesk"] == 1
    assert engine.store.list_failures("bugs") == []
    assert len([m for m in messages(sb, first) if "Found the cause." in m.body]) == 1
    _assert_converged(sb, engine, [first, second])
    engine.close()


def test_failing_conversation_that_stops_matching_is_no_longer_retried(tmp_path: Path) -> None:
    """A conversation whose issue create was refused stops being retried (and listed as
    failing) once it no longer matches the pair's rules."""
    sb = sandbox(tmp_path)
    _seed(sb)
    sb.redmine.faults.add(status=422, body=b'{"errors":["Subject is invalid"]}',
                          method="POST", path=r"^/issues\.json$")
    engine = sb.engine(clock=FakeClock())
    result = run_all_once(engine)[0]
    assert len(result.failed) == 1 and len(issue_ids(sb)) == 1
    [failed] = result.failed
    sb.reamaze.set_tags(failed, [])
    retried = run_pass(engine)
    assert retried.counts["failures_retried"] == 1
    assert engine.store.list_failures("bugs") == []
    assert engine.store.get_link("bugs", failed) is None and len(issue_ids(sb)) == 1
    assert run_pass(engine).counts["failures_retried"] == 0
    engine.close()


def test_429_storm_is_waited_out_within_one_pass(tmp_path: Path) -> None:
    """A burst of 429s on both APIs (on reads and on the non-idempotent creates) is absorbed
    by waits on the injected clock that honour the servers' Retry-After: the pass succeeds."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    sb.reamaze.faults.add(status=429, retry_after="7", times=5)
    sb.reamaze.faults.add(status=429, retry_after="7", times=3, method="POST")
    # Redmine creates are tried 4 times in a row at most (connectors/redmine/notes.py).
    sb.redmine.faults.add(status=429, headers={"Retry-After": "11"}, times=3, method="POST")
    sb.redmine.faults.add(status=429, headers={"Retry-After": "11"}, times=3, method="PUT")
    sb.redmine.faults.add(status=429, headers={"Retry-After": "11"}, times=3, method="GET")
    clock = FakeClock()
    engine = sb.engine(clock=clock)
    run_pass(engine)
    assert clock.sleeps.count(7) == 8
    assert clock.sleeps.count(11) == 9
    _assert_converged(sb, engine, slugs)
    engine.close()


# --- pages shifting under the walk ---------------------------------------------------------

def _on_first(sim_hook: list[Callable[[httpx.Request], None]],
              match: Callable[[httpx.Request], bool], action: Callable[[], None]) -> None:
    fired: list[bool] = []

    def hook(request: httpx.Request) -> None:
        if not fired and match(request):
            fired.append(True)
            action()
    sim_hook.append(hook)


def test_conversations_changing_between_page_reads_are_not_skipped(tmp_path: Path) -> None:
    """45 bug conversations (two pages of 30); while page 2 is being requested one of its
    conversations gets a new message, one from page 1 too, and a new one arrives: after two
    passes every conversation has its issue and every message is copied."""
    sb = sandbox(tmp_path)
    slugs = [sb.reamaze.add_conversation(f"Bug report {n:02d}", f"Problem number {n}.",
                                         f"c{n}@customer.example", tags=["bug"])
             for n in range(45)]

    def is_page_two(request: httpx.Request) -> bool:
        return (request.url.path.endswith("/conversations")
                and request.url.params.get("page") == "2")

    def shift() -> None:
        sb.reamaze.add_customer_message(slugs[3], "Extra detail on an old one.")  # page 2
        sb.reamaze.add_customer_message(slugs[40], "Extra detail on a new one.")  # page 1
        slugs.append(sb.reamaze.add_conversation("Late arrival", "Arrived mid-walk.",
                                                 "late@customer.example", tags=["bug"]))

    _on_first(sb.reamaze.before_request, is_page_two, shift)
    engine = sb.engine()
    run_pass(engine)
    assert len(sb.reamaze.calls("GET", "/api/v1/conversations")) >= 2  # two pages read
    # The one that moved from page 2 to the front was behind the walk, and the late one
    # arrived after page 1: both are newer than the saved watermark, so the next pass
    # reads them.
    assert len(issue_ids(sb)) == 44
    assert engine.store.get_link("bugs", slugs[3]) is None
    run_pass(engine)
    _assert_converged(sb, engine, slugs)
    assert len(slugs) == 46
    engine.close()


def _many_messages(sb: Sandbox, n: int) -> str:
    slug = sb.reamaze.add_conversation("Export fails", "Export 1 fails.", "erin@customer.example",
                                       tags=["bug"])
    for k in range(2, n + 1):
        sb.reamaze.add_customer_message(slug, f"Export {k} fails.")
    return slug


def test_note_refused_mid_batch_keeps_the_ones_before_and_writes_the_rest_later(
        tmp_path: Path) -> None:
    """Redmine refuses the third of five notes: the first two are linked, the conversation
    is recorded as failing, nothing after the refusal is sent; the next pass writes the
    last three exactly once."""
    sb = sandbox(tmp_path)
    slug = _many_messages(sb, 5)
    refusal = sb.redmine.faults.add(status=422, body=b'{"errors":["Notes is invalid"]}',
                                    method="PUT", path=r"^/issues/\d+\.json$", skip=2)
    engine = sb.engine(clock=FakeClock())
    result = run_all_once(engine)[0]
    assert result.ok and list(result.failed) == [slug] and refusal.hits == 1
    issue = issue_for(engine, slug)
    assert len(journals(sb, issue)) == 2
    intents = {i.key: i.status for i in engine.store.pending_intents("bugs")}
    assert sorted(intents.values()) == ["failed", "failed", "failed"]
    link = engine.store.get_link("bugs", slug)
    assert link is not None and len(link.comment_links) == 3  # link note + the first two
    run_pass(engine)
    _assert_converged(sb, engine, [slug])
    assert len(journals(sb, issue)) == 5
    engine.close()


@pytest.mark.parametrize("landed", [False, True], ids=["not-landed", "landed"])
def test_outage_mid_batch_is_resolved_by_recovery_without_duplicates(
        tmp_path: Path, landed: bool) -> None:
    """Redmine stops answering at the third note (which may or may not have been applied):
    the pass aborts with that note's intent pending; the next passes look for its marker
    (a landed note is found at once; one that did not land is held until it has been looked
    for long enough, then sent again), and every message ends up on the issue exactly
    once."""
    sb = sandbox(tmp_path, sync=QUICK_RECOVERY)
    slug = _many_messages(sb, 5)
    sb.redmine.faults.add(status=503, commit=landed, method="PUT",
                          path=r"^/issues/\d+\.json$", skip=2)
    sb.redmine.faults.add(status=503, times=None, method="PUT", path=r"^/issues/\d+\.json$",
                          skip=3)
    sb.redmine.faults.add(status=503, times=None, method="GET", path=r"^/issues/\d+\.json$")
    engine = sb.engine(clock=FakeClock())
    assert run_all_once(engine)[0].error is not None
    pending = [i for i in engine.store.pending_intents("bugs") if i.status == "pending"]
    assert len(pending) >= 1 and {i.kind for i in pending} == {"add_comment"}
    sb.redmine.faults.clear()
    result = run_pass(engine)
    if landed:
        assert result.counts["intents_recovered"] >= len(pending)
    else:
        assert result.counts["writes_held"] >= 1
        assert len(journals(sb, issue_for(engine, slug))) < 5  # nothing re-sent yet
        result = run_pass(engine)
        assert result.counts["intents_expired"] >= 1
    _assert_converged(sb, engine, [slug])
    assert len(journals(sb, issue_for(engine, slug))) == 5
    engine.close()


def test_held_work_survives_a_pass_that_aborts_right_after_recovery_resolved_it(
        tmp_path: Path) -> None:
    """A note's answer is lost (503, not applied): the conversation fails, then waits while
    recovery looks for the note. The pass in which recovery gives up on it aborts before
    the conversation is reconciled again. The note must still be sent (the wait used to
    clear the conversation's failure and save its snapshot, so once the pass that resolved
    the note died, nothing remembered the work: the note was never sent)."""
    sb = sandbox(tmp_path, sync=QUICK_RECOVERY)
    first, second = _seed(sb)
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    run_pass(engine)
    sb.reamaze.add_customer_message(second, "It stalled again overnight.")
    sb.redmine.faults.add(status=503, method="PUT", path=r"^/issues/\d+\.json$")
    unknown = run_all_once(engine)[0]
    assert second in unknown.failed and "not sent again" in unknown.failed[second]
    waiting = run_all_once(engine)[0]
    assert waiting.counts["writes_held"] == 1 and waiting.ok
    outage = sb.reamaze.faults.add(status=503, times=8, method="GET",
                                   path_prefix=f"/api/v1/conversations/{second}")
    aborted = run_all_once(engine)[0]
    assert aborted.counts["intents_expired"] == 1 and aborted.error is not None
    assert outage.hits == 8
    run_all_once(engine)
    run_pass(engine)
    copies = [j for j in journals(sb, issue_for(engine, second))
              if "It stalled again overnight." in j.text]
    assert len(copies) == 1
    _assert_converged(sb, engine, [first, second])
    engine.close()


def test_a_conversation_whose_issue_create_was_lost_gets_its_issue_after_an_aborted_pass(
        tmp_path: Path) -> None:
    """The same for the issue itself: its create gets a 503 (not applied), the conversation
    waits while recovery looks for the issue, and the pass in which recovery gives up on
    it aborts before the conversation is reconciled again. It must still get its issue
    (the wait used to clear its failure, and with its half link gone nothing brought the
    unchanged conversation back: it never got an issue)."""
    sb = sandbox(tmp_path, sync=QUICK_RECOVERY)
    first, second = _seed(sb)
    sb.redmine.faults.add(status=503, method="POST", path=r"^/issues\.json$", skip=1)
    engine = sb.engine(clock=FakeClock())
    unknown = run_all_once(engine)[0]
    assert list(unknown.failed) == [first] and len(issue_ids(sb)) == 1
    waiting = run_all_once(engine)[0]
    assert waiting.counts["writes_held"] == 1 and waiting.ok
    outage = sb.reamaze.faults.add(status=503, times=8, method="GET",
                                   path_prefix=f"/api/v1/conversations/{first}")
    aborted = run_all_once(engine)[0]
    assert aborted.counts["intents_expired"] == 1 and aborted.error is not None
    assert outage.hits == 8
    run_all_once(engine)
    run_pass(engine)
    _assert_converged(sb, engine, [first, second])
    engine.close()
