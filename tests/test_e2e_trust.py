"""Trust hardening, end to end against the simulators: lost state, writes whose answer never
came, permissions that change mid-run and forged markers never produce a duplicate, a lost
copy or an internal note left public. Each test names the case of the trust issue it
proves (1: lost state, 2: unknown writes, 3: permission changes, 5: forged markers)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import structlog
from e2e_support import (
    QUICK_RECOVERY,
    STAFF,
    CrashAfter,
    CrashBefore,
    Engineer,
    Handler,
    Mark,
    crash_then_restart,
    issue_for,
    issue_ids,
    journals,
    messages,
    run_pass,
    sandbox,
    seed_two_bugs,
)
from fakes import FakeClock

from state import StateStore
from syncer.app import Engine, run_all_once
from syncer.markers import Markers
from syncer.runner import PassResult
from syncer.sandbox import MARKER_KEY, PROJECT, Sandbox
from syncer.status import render_status

INTERNAL = 1


def _seed(sb: Sandbox) -> list[str]:
    slugs = seed_two_bugs(sb)
    sb.reamaze.add_customer_message(slugs[1], "It is still stalled.")
    return slugs


def _copies(engine: Engine, slugs: list[str]) -> dict[str, tuple[str | None, frozenset[
        tuple[str, str, str]]]]:
    """Per conversation: its issue and its comment links (side, source, copy)."""
    out = {}
    for slug in slugs:
        link = engine.store.get_link("bugs", slug)
        assert link is not None
        out[slug] = (link.issue_id, frozenset((c.source_side.value, c.source_id, c.target_id)
                                              for c in link.comment_links))
    return out


def _synced_world(tmp_path: Path) -> tuple[Sandbox, Engine, list[str]]:
    """Two linked conversations with messages copied both ways, public and private."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    dev = Engineer(sb)
    dev.note(issue_for(engine, slugs[0]), "Found it in the draft store.")
    dev.note(issue_for(engine, slugs[0]), "PRIVATE-1 suspect the cache", private=True)
    run_pass(engine)
    run_pass(engine)
    return sb, engine, slugs


def _drop_state(tmp_path: Path) -> None:
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)


# --- 1. lost or moved state -------------------------------------------------------------

def test_deleted_state_is_rebuilt_from_both_sides_and_nothing_is_sent_again(
        tmp_path: Path) -> None:
    """1: sync, delete the state, sync again: 0 new issues, 0 re-sent comments, every
    link and comment link rebuilt from the markers and authors on both sides."""
    sb, engine, slugs = _synced_world(tmp_path)
    before = _copies(engine, slugs)
    engine.close()
    _drop_state(tmp_path)

    fresh = sb.engine(clock=FakeClock())
    mark = Mark.now(sb)
    result = run_pass(fresh)
    assert mark.writes() == []
    assert result.counts["issues_created"] == 0 and result.counts["issues_adopted"] == 2
    assert len(issue_ids(sb)) == 2
    assert _copies(fresh, slugs) == before
    mark = Mark.now(sb)
    run_pass(fresh)
    assert mark.writes() == []
    fresh.close()


def test_a_restored_old_backup_adopts_what_happened_since(tmp_path: Path) -> None:
    """1: the state is rolled back to a copy taken before more messages were synced both
    ways: the next pass re-adopts the newer copies instead of sending them again."""
    sb, engine, slugs = _synced_world(tmp_path)
    engine.close()
    shutil.copy(tmp_path / "state.db", tmp_path / "backup.db")
    engine = sb.engine(clock=FakeClock())
    sb.reamaze.add_customer_message(slugs[1], "Now it crashes on start too.")
    sb.reamaze.add_staff_message(slugs[1], "INTERNAL-B escalated", email=STAFF,
                                 visibility=INTERNAL)
    Engineer(sb, login="dev2").note(issue_for(engine, slugs[1]), "Reproduced on 2.3.")
    run_pass(engine)
    run_pass(engine)
    after = _copies(engine, slugs)
    engine.close()
    _drop_state(tmp_path)
    shutil.copy(tmp_path / "backup.db", tmp_path / "state.db")

    restored = sb.engine(clock=FakeClock())
    mark = Mark.now(sb)
    result = run_pass(restored)
    assert mark.writes() == [], mark.writes()
    assert result.counts["comment_links_rebuilt"] >= 3
    assert _copies(restored, slugs) == after
    restored.close()


def test_a_backup_older_than_a_closing_still_mails_the_next_closing(tmp_path: Path) -> None:
    """1: the state is rolled back to a copy taken before the issue was closed and the
    customer mailed; the issue is then reopened and closed again: the second closing
    gets its reply (the restored count used to give it the first reply's key, which
    was found, so the customer heard nothing)."""
    sb = sandbox(tmp_path, status={"close_reply_template": "Good news: {subject} is fixed."})
    slugs = _seed(sb)
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    engine.close()
    shutil.copy(tmp_path / "state.db", tmp_path / "backup.db")
    engine = sb.engine(clock=FakeClock())
    dev = Engineer(sb)
    issue = issue_for(engine, slugs[0])
    dev.close(issue)
    run_pass(engine)
    engine.close()
    _drop_state(tmp_path)
    shutil.copy(tmp_path / "backup.db", tmp_path / "state.db")
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    dev.reopen(issue)
    run_pass(engine)
    dev.close(issue)
    run_pass(engine)
    replies = [m for m in messages(sb, slugs[0]) if "Good news" in m.body]
    assert [(m.visibility, m.notified) for m in replies] == [(0, True), (0, True)]
    assert sb.reamaze.conversations[slugs[0]].status == 2
    engine.close()


def test_a_second_host_with_its_own_state_adopts_instead_of_duplicating(
        tmp_path: Path) -> None:
    """1: another engine with an empty state of its own (a second host) finds every issue
    and copy by its markers: nothing is created twice."""
    sb, engine, slugs = _synced_world(tmp_path)
    other_state = StateStore(f"sqlite:///{tmp_path / 'other-host.db'}")
    other = sb.engine(store=other_state, clock=FakeClock())
    mark = Mark.now(sb)
    run_pass(other)
    assert mark.writes() == []
    assert _copies(other, slugs) == _copies(engine, slugs)
    engine.close()
    other.close()


# --- 2. writes whose answer never arrives -----------------------------------------------

@dataclass
class LateWrite:
    """Wrap a handler: requests matching ``hit`` get no answer (the client times out) and
    reach the server ``after`` seconds later on ``clock``, or never (``after`` None): a slow
    server finishing a write after the client gave up."""

    hit: Callable[[httpx.Request], bool]
    clock: FakeClock
    after: float | None
    times: int = 1
    parked: list[tuple[float, httpx.Request]] = field(default_factory=list)
    landed: int = 0

    def wrap(self, handler: Handler) -> Handler:
        def handle(request: httpx.Request) -> httpx.Response:
            self.release(handler)
            if self.times > 0 and self.hit(request):
                self.times -= 1
                request.read()
                if self.after is not None:
                    self.parked.append((self.clock.now + self.after, request))
                raise httpx.ReadTimeout("no answer (the server is slow)", request=request)
            return handler(request)
        self._handler = handler
        return handle

    def release(self, handler: Handler | None = None) -> None:
        for due in [p for p in self.parked if p[0] <= self.clock.now]:
            self.parked.remove(due)
            (handler or self._handler)(due[1])
            self.landed += 1


class Time:
    """One clock for the HTTP clients and the state store, moved by hand between passes."""

    def __init__(self) -> None:
        self.api = FakeClock()
        self.start = datetime.now(UTC)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.api.now)

    def advance(self, seconds: float) -> None:
        self.api.sleep(seconds)


def _engine(sb: Sandbox, tmp_path: Path, time: Time) -> Engine:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}", clock=time.now)
    return sb.engine(store=store, clock=time.api)


def _note_put(request: httpx.Request) -> bool:
    return request.method == "PUT" and request.url.path.startswith("/issues/") and \
        b'"notes"' in request.content


def _internal_a(request: httpx.Request) -> bool:
    return _note_put(request) and b"INTERNAL-A" in request.content


def _one_copy(sb: Sandbox, slug: str, text: str, engine: Engine) -> None:
    found = [j for j in journals(sb, issue_for(engine, slug)) if text in j.text]
    assert len(found) == 1, found


def test_a_note_that_lands_a_few_seconds_late_is_found_in_the_same_pass(
        tmp_path: Path) -> None:
    """2: the note's answer never came, but the server stored it 5 s later: the spaced
    lookups find it before anything is re-sent."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    time = Time()
    late = LateWrite(_internal_a, time.api, after=5)
    sb.wrap = lambda name, handler: late.wrap(handler) if name == "redmine" else handler
    engine = _engine(sb, tmp_path, time)
    result = run_pass(engine)
    assert late.landed == 1 and result.ok
    _one_copy(sb, slugs[0], "INTERNAL-A", engine)
    engine.close()


@pytest.mark.parametrize("restart", [False, True], ids=["same-engine", "restarted"])
def test_a_note_landing_after_the_pass_gave_up_is_held_not_resent(
        tmp_path: Path, restart: bool) -> None:
    """2: the note lands 90 s after the client gave up, past the in-pass lookups. The
    pass reports it (unknown, not failed); later passes, and a restarted engine, hold the
    note instead of sending it again, and find it once it has landed: one copy."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    time = Time()
    late = LateWrite(_internal_a, time.api, after=90)
    sb.wrap = lambda name, handler: late.wrap(handler) if name == "redmine" else handler
    engine = _engine(sb, tmp_path, time)
    first = run_all_once(engine)[0]
    assert first.ok and len(first.failed) == 1 and not first.clean
    assert "not sent again" in next(iter(first.failed.values()))
    time.advance(30)
    if restart:
        engine.close()
        engine = _engine(sb, tmp_path, time)
    held = run_all_once(engine)[0]
    assert held.counts["writes_held"] >= 1 and late.landed == 0
    assert not any("INTERNAL-A" in j.text for i in issue_ids(sb) for j in journals(sb, i))
    time.advance(60)
    late.release()
    assert late.landed == 1
    found = run_all_once(engine)[0]
    assert found.counts["intents_recovered"] >= 1
    run_pass(engine)
    _one_copy(sb, slugs[0], "INTERNAL-A", engine)
    engine.close()


@dataclass
class RefuseLookups:
    """Wrap a handler: once ``armed``, the next ``times`` reads of an issue are answered
    429 (a lookup of a write whose answer was lost, all its retries included)."""

    times: int
    armed: bool = False
    refused: int = 0

    def wrap(self, handler: Handler) -> Handler:
        def handle(request: httpx.Request) -> httpx.Response:
            if (self.armed and self.refused < self.times and request.method == "GET"
                    and request.url.path.startswith("/issues/")):
                self.refused += 1
                return httpx.Response(429, headers={"Retry-After": "1"})
            return handler(request)
        return handle


def test_a_late_write_whose_lookup_fails_is_not_sent_again(tmp_path: Path) -> None:
    """2: the note's answer never came and the lookup for it is refused (429 to the last
    retry): that says nothing about the note, which lands two minutes later. It stays
    unknown and held (it was taken for "never sent" and sent again: two copies)."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    time = Time()
    refuse = RefuseLookups(times=8)  # the first lookup, all 8 attempts
    late = LateWrite(_internal_a, time.api, after=120)
    hit = late.hit
    late.hit = lambda r: hit(r) and not setattr(refuse, "armed", True)
    sb.wrap = lambda name, handler: (refuse.wrap(late.wrap(handler)) if name == "redmine"
                                     else handler)
    engine = _engine(sb, tmp_path, time)
    first = run_all_once(engine)[0]
    assert refuse.refused == 8 and late.landed == 0 and not first.clean
    for _ in range(6):
        time.advance(45)
        late.release()
        run_all_once(engine)
    assert late.landed == 1
    run_pass(engine)
    _one_copy(sb, slugs[0], "INTERNAL-A", engine)
    engine.close()


def test_a_write_left_unknown_by_a_retry_is_not_sent_again_later_in_the_same_pass(
        tmp_path: Path) -> None:
    """2: a failing conversation is retried at the start of a pass; its note gets no answer
    (it lands 30 s later), and a customer message arrives before the walk reads the
    conversation. The walk must not reconcile it a second time in that pass: the unknown
    note is not held yet (recovery only holds what was unknown when the pass began), and
    was sent again (two copies)."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    time = Time()
    puts: list[httpx.Request] = []

    def second_put(request: httpx.Request) -> bool:
        if _note_put(request) and b"First follow-up" in request.content:
            puts.append(request)
            return len(puts) == 2  # the first is refused (422), the retry's gets no answer
        return False

    late = LateWrite(second_put, time.api, after=30)
    sb.wrap = lambda name, handler: late.wrap(handler) if name == "redmine" else handler
    engine = _engine(sb, tmp_path, time)
    run_pass(engine)
    sb.reamaze.add_customer_message(slugs[1], "First follow-up.")
    refusal = sb.redmine.faults.add(status=422, body=b'{"errors":["Notes is invalid"]}',
                                    method="PUT", path=r"^/issues/\d+\.json$")
    assert slugs[1] in run_all_once(engine)[0].failed and refusal.hits == 1
    arrived: list[bool] = []

    def second_message(request: httpx.Request) -> None:
        if not arrived and request.method == "GET" and \
                request.url.path == "/api/v1/conversations":
            arrived.append(True)
            sb.reamaze.add_customer_message(slugs[1], "Second follow-up.")

    sb.reamaze.before_request.append(second_message)
    retried = run_all_once(engine)[0]
    assert retried.counts["failures_retried"] == 1 and arrived and slugs[1] in retried.failed
    for _ in range(4):
        time.advance(60)
        late.release()
        run_all_once(engine)
    assert late.landed == 1
    run_pass(engine)
    for text in ("First follow-up.", "Second follow-up."):
        _one_copy(sb, slugs[1], text, engine)
    engine.close()


def test_a_write_that_never_lands_is_sent_again_only_after_the_window(
        tmp_path: Path) -> None:
    """2: a note that never reaches the server is held for at least the configured
    lookups and window after its send, then sent again: exactly one copy."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    time = Time()
    lost = LateWrite(_internal_a, time.api, after=None)
    sb.wrap = lambda name, handler: lost.wrap(handler) if name == "redmine" else handler
    engine = _engine(sb, tmp_path, time)
    run_all_once(engine)
    for _ in range(4):  # 4 lookups, but only 4 minutes: still held
        time.advance(60)
        assert run_all_once(engine)[0].counts["writes_held"] >= 1
    assert not any("INTERNAL-A" in j.text for i in issue_ids(sb) for j in journals(sb, i))
    time.advance(600)
    expired = run_all_once(engine)[0]
    assert expired.counts["intents_expired"] >= 1
    run_pass(engine)
    _one_copy(sb, slugs[0], "INTERNAL-A", engine)
    engine.close()


def test_an_issue_create_that_lands_late_gives_one_issue_and_one_link_note(
        tmp_path: Path) -> None:
    """2: the issue create times out and the issue appears 2 minutes later: never a second
    issue, never a second link note."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    time = Time()
    late = LateWrite(lambda r: r.method == "POST" and r.url.path == "/issues.json",
                     time.api, after=120)
    sb.wrap = lambda name, handler: late.wrap(handler) if name == "redmine" else handler
    engine = _engine(sb, tmp_path, time)
    for _ in range(4):
        run_all_once(engine)
        time.advance(60)
        late.release()
    run_pass(engine)
    assert late.landed == 1 and len(issue_ids(sb)) == 2
    for slug in slugs:
        notes = [m for m in messages(sb, slug) if "Linked to Redmine" in m.body]
        assert len(notes) == 1
    engine.close()


def test_a_public_reply_to_the_customer_is_never_emailed_twice(tmp_path: Path) -> None:
    """2: with tracker replies going to the customer, the reply POST gets no answer but is
    stored (and emailed) a minute later: the customer gets exactly one email."""
    sb = sandbox(tmp_path, visibility={"customer_replies_from_tracker": True})
    slugs = _seed(sb)
    time = Time()
    engine = _engine(sb, tmp_path, time)
    run_pass(engine)
    Engineer(sb).note(issue_for(engine, slugs[1]), "Fixed in 2.4, please update.")
    late = LateWrite(lambda r: r.method == "POST" and r.url.path.endswith("/messages")
                     and b"Fixed in 2.4" in r.content, time.api, after=60)
    sb.wrap = lambda name, handler: late.wrap(handler) if name == "reamaze" else handler
    engine.close()
    engine = _engine(sb, tmp_path, time)
    for _ in range(4):
        run_all_once(engine)
        time.advance(45)
        late.release()
    emailed = [m for m in messages(sb, slugs[1]) if "Fixed in 2.4" in m.body]
    assert len(emailed) == 1 and emailed[0].visibility == 0 and emailed[0].notified
    engine.close()


def test_the_close_reply_is_not_emailed_again_when_the_issue_changes_before_the_retry(
        tmp_path: Path) -> None:
    """2: the "fixed" reply went out but the pass failed before the conversation was
    closed; the issue is then edited again. The retried pass finds the reply it sent
    (its key does not depend on the issue's change time): one email."""
    sb = sandbox(tmp_path, status={"close_reply_template": "Good news: {subject} is fixed."})
    slugs = _seed(sb)
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    run_pass(engine)
    dev = Engineer(sb)
    issue = issue_for(engine, slugs[0])
    dev.close(issue)
    refused = sb.reamaze.faults.add(status=422, method="PUT",
                                    path_prefix=f"/api/v1/conversations/{slugs[0]}")
    failed = run_all_once(engine)[0]
    assert refused.hits == 1 and slugs[0] in failed.failed
    dev.note(issue, "Release notes updated.")  # the issue changes again
    run_pass(engine)
    run_pass(engine)
    replies = [m for m in messages(sb, slugs[0]) if "Good news" in m.body]
    assert len(replies) == 1 and replies[0].notified
    assert sb.reamaze.conversations[slugs[0]].status == 2
    engine.close()


def test_a_held_close_reply_keeps_the_conversation_open_until_it_is_sent(
        tmp_path: Path) -> None:
    """2: the process dies after journalling the close reply, before sending it. While
    the reply is held the conversation is not closed either: closed first, the closing
    was no longer seen by any later pass, and the reply recovery then gave up on was
    never sent. Now it goes out once, then the conversation is closed."""
    sb = sandbox(tmp_path, sync=QUICK_RECOVERY,
                 status={"close_reply_template": "Good news: {subject} is fixed."})
    slugs = _seed(sb)
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    run_pass(engine)
    Engineer(sb).close(issue_for(engine, slugs[0]))
    engine.close()
    crash = CrashBefore(lambda r: r.method == "POST" and b"Good news" in r.content)
    engine = crash_then_restart(sb, crash, "reamaze")
    held = run_all_once(engine)[0]
    assert held.counts["writes_held"] == 1
    assert sb.reamaze.conversations[slugs[0]].status == 0  # not closed before its reply
    run_pass(engine)  # not found on the second lookup: given up, sent again, then closed
    replies = [m for m in messages(sb, slugs[0]) if "Good news" in m.body]
    assert [(m.visibility, m.notified) for m in replies] == [(0, True)]
    assert sb.reamaze.conversations[slugs[0]].status == 2
    engine.close()


def test_a_held_link_note_does_not_keep_the_new_link_from_its_first_snapshot(
        tmp_path: Path) -> None:
    """2: the process dies after journalling a new issue's link note, before sending it;
    the issue is closed while the note is held. The link's first snapshot (the base
    changes are seen against) is saved all the same, so the closing is seen once the
    note is resolved: the conversation is closed and the customer mailed. Without a
    snapshot the closing would be taken as the link's starting state."""
    sb = sandbox(tmp_path, sync=QUICK_RECOVERY,
                 status={"close_reply_template": "Good news: {subject} is fixed."})
    slugs = _seed(sb)
    crash = CrashBefore(lambda r: r.method == "POST" and b"Linked to Redmine" in r.content)
    engine = crash_then_restart(sb, crash, "reamaze")
    slug = next(s for s in slugs if f"/{s}/" in crash.crashed[0])
    held = run_all_once(engine)[0]
    assert held.counts["writes_held"] == 1
    Engineer(sb).close(issue_for(engine, slug))
    run_pass(engine)  # the note given up on and sent; the closing seen
    replies = [m for m in messages(sb, slug) if "Good news" in m.body]
    assert [(m.visibility, m.notified) for m in replies] == [(0, True)]
    assert sb.reamaze.conversations[slug].status == 2
    assert len([m for m in messages(sb, slug) if "Linked to Redmine" in m.body]) == 1
    engine.close()


# --- 3. permission changes ---------------------------------------------------------------

def _bot(sb: Sandbox, **flags: bool) -> None:
    """The engine works as a non-admin Manager of the project (admins keep every right)."""
    bot = sb.redmine.add_user("syncbot", **flags)
    project = next(p for p in sb.redmine.state.projects.values() if p.identifier == PROJECT)
    sb.redmine.add_member(project, bot, ("Manager",))
    sb.environ["REDMINE_API_KEY"] = bot.api_key


def _revoke_private_notes(sb: Sandbox) -> None:
    manager = next(r for r in sb.redmine.state.roles.values() if r.name == "Manager")
    manager.permissions = tuple(p for p in manager.permissions if p != "set_notes_private")


def _public_notes(sb: Sandbox, text: str) -> list[str]:
    return [j.notes or "" for j in sb.redmine.state.journals.values()
            if j.notes and text in j.notes and not j.private_notes]


def test_role_losing_private_notes_mid_run_leaks_nothing_and_the_pass_says_so(
        tmp_path: Path) -> None:
    """3: the role loses "set notes private" while the engine's cached answer still says
    yes: the first internal note after that comes back public, is removed at once, nothing
    else is sent, and the pass is not clean (the CLI exits non-zero)."""
    sb = sandbox(tmp_path)
    _bot(sb)
    slugs = _seed(sb)
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    _revoke_private_notes(sb)
    for n in range(3):
        sb.reamaze.add_staff_message(slugs[0], f"INTERNAL-X{n} secret", email=STAFF,
                                     visibility=INTERNAL)
    result = run_all_once(engine)[0]
    assert result.counts["leaks_removed"] == 1 and not result.clean
    assert _public_notes(sb, "INTERNAL-X") == []
    assert not any("INTERNAL-X1" in (j.notes or "") for j in sb.redmine.state.journals.values())
    again = run_all_once(engine)[0]  # refused up front now: nothing public, still failing
    assert slugs[0] in again.failed and "private" in again.failed[slugs[0]]
    assert _public_notes(sb, "INTERNAL-X") == []
    engine.close()


def test_internal_note_refused_for_many_passes_arrives_once_the_permission_is_back(
        tmp_path: Path) -> None:
    """3: the role loses "set notes private" for longer than the automatic retries of a
    failing conversation last (ten passes): the internal note is refused every time, and
    still arrives, privately, once the permission is back (the refusals used to count as
    the conversation's failed attempts: after ten it was no longer retried, and the note
    never arrived)."""
    sb = sandbox(tmp_path)
    _bot(sb)
    slugs = _seed(sb)
    _revoke_private_notes(sb)
    engine = sb.engine(clock=FakeClock())
    first = run_all_once(engine)[0]
    assert "private" in first.failed[slugs[0]]
    for _ in range(11):
        run_all_once(engine)
    assert _public_notes(sb, "INTERNAL-A") == []
    manager = next(r for r in sb.redmine.state.roles.values() if r.name == "Manager")
    manager.permissions = (*manager.permissions, "set_notes_private")
    engine.close()
    engine = sb.engine(clock=FakeClock())  # the permission answer is asked anew
    run_pass(engine)
    copies = [j for j in sb.redmine.state.journals.values()
              if j.notes and "INTERNAL-A" in j.notes]
    assert [j.private_notes for j in copies] == [True]
    engine.close()


def test_a_leak_that_cannot_be_removed_pauses_internal_content_until_it_is_gone(
        tmp_path: Path) -> None:
    """3: the leaked copy cannot be deleted: it is recorded, `status` shows it, every pass
    fails loudly and sends no internal content (public messages still flow) until a person
    deletes it; then internal notes resume."""
    sb = sandbox(tmp_path)
    _bot(sb, drop_private_notes=True)
    slugs = _seed(sb)
    blocked = sb.redmine.faults.add(status=403, times=None, method="PUT",
                                    path=r"^/journals/\d+\.json$")
    engine = sb.engine(clock=FakeClock())
    with structlog.testing.capture_logs() as logs:
        first = run_all_once(engine)[0]
    assert first.counts["leaks_unremoved"] == 1 and not first.clean
    assert any(e["event"] == "visibility_leak_unremoved" and e["log_level"] == "critical"
               for e in logs)
    status = render_status(sb.config, engine.store, datetime.now(UTC))
    assert "LEAK:" in status and "PUBLIC copy of internal content" in status
    sb.reamaze.add_staff_message(slugs[1], "INTERNAL-Y later note", email=STAFF,
                                 visibility=INTERNAL)
    sb.reamaze.add_customer_message(slugs[1], "Any news?")
    # A restarted engine asks for the permission anew (the roles still say yes): only the
    # recorded leak keeps it from sending the next internal note into the same trap.
    engine.close()
    engine = sb.engine(clock=FakeClock())
    paused = run_all_once(engine)[0]
    assert paused.error is not None and "paused" in paused.error and not paused.clean
    assert not any("INTERNAL-Y" in (j.notes or "") for j in sb.redmine.state.journals.values())
    assert any("Any news?" in (j.notes or "") for j in sb.redmine.state.journals.values())
    # A person deletes the leaked note; the plugin is fixed.
    blocked.times = 0
    leaked = next(j for j in sb.redmine.state.journals.values()
                  if j.notes and "INTERNAL-A" in j.notes and not j.private_notes)
    leaked.notes = ""
    bot = next(u for u in sb.redmine.state.users.values() if u.login == "syncbot")
    bot.drop_private_notes = False
    engine.close()
    engine = sb.engine(clock=FakeClock(start=10_000))  # the permission answer is asked anew
    resumed = run_all_once(engine)[0]
    assert resumed.counts.get("leaks_open", 0) == 0
    run_all_once(engine)
    for text in ("INTERNAL-A", "INTERNAL-Y"):
        copies = [j for j in sb.redmine.state.journals.values() if j.notes and text in j.notes]
        assert [j.private_notes for j in copies] == [True], text
    assert "LEAK:" not in render_status(sb.config, engine.store, datetime.now(UTC))
    engine.close()


def test_a_recorded_leak_whose_note_id_now_belongs_to_a_person_is_not_deleted(
        tmp_path: Path) -> None:
    """3: a leaked copy could not be removed and was recorded; a person then deletes it,
    and Redmine (ids are max + 1 on SQLite) gives its id to the engineer's next note. The
    recheck of the recorded leak must not delete that note, which is not the engine's
    (it did, as the public copy it was looking for), and the note is copied as usual."""
    sb = sandbox(tmp_path)
    _bot(sb, drop_private_notes=True)
    slug = sb.reamaze.add_conversation("Crash on save", "Saving a draft crashes the app.",
                                       "carol@customer.example", tags=["bug"])
    sb.reamaze.add_staff_message(slug, "INTERNAL-A reproduced on Android 14", email=STAFF,
                                 visibility=INTERNAL)
    blocked = sb.redmine.faults.add(status=403, times=None, method="PUT",
                                    path=r"^/journals/\d+\.json$")
    engine = sb.engine(clock=FakeClock())
    assert run_all_once(engine)[0].counts["leaks_unremoved"] == 1
    [leak] = engine.store.open_leaks("bugs")
    assert int(leak.comment_id) == max(sb.redmine.state.journals)  # the newest note
    del sb.redmine.state.journals[int(leak.comment_id)]  # deleted by a person
    blocked.times = 0
    bot = next(u for u in sb.redmine.state.users.values() if u.login == "syncbot")
    bot.drop_private_notes = False
    Engineer(sb).note(leak.ticket_id, "Workaround: clear the cache.")
    note = sb.redmine.state.journals[int(leak.comment_id)]
    assert note.notes == "Workaround: clear the cache." and not note.private_notes
    engine.close()
    engine = sb.engine(clock=FakeClock(start=10_000))
    run_all_once(engine)
    run_pass(engine)
    assert sb.redmine.state.journals[int(leak.comment_id)].notes == note.notes
    assert [m.visibility for m in messages(sb, slug)
            if "Workaround: clear the cache." in m.body] == [INTERNAL]
    assert engine.store.open_leaks("bugs") == []
    engine.close()


def test_recovery_never_records_a_public_copy_of_an_internal_note_as_good(
        tmp_path: Path) -> None:
    """3: the process dies right after an internal note was written, and the server had
    dropped its private flag. Recovery finds the copy by its marker, sees it public,
    removes it and sends the note again privately; it never links the public copy."""
    sb = sandbox(tmp_path, sync=QUICK_RECOVERY)
    _bot(sb, drop_private_notes=True)
    slugs = _seed(sb)
    crash = CrashAfter(lambda r: (_note_put(r) and b'"private_notes": true' in r.content)
                       or (_note_put(r) and b'"private_notes":true' in r.content))
    engine = crash_then_restart(sb, crash, "redmine")
    assert _public_notes(sb, "INTERNAL-A") != []  # the leak the crash left behind
    bot = next(u for u in sb.redmine.state.users.values() if u.login == "syncbot")
    bot.drop_private_notes = False
    result = run_all_once(engine)[0]
    assert result.counts["leaks_removed"] == 1 and not result.clean
    assert _public_notes(sb, "INTERNAL-A") == []
    run_all_once(engine)
    copies = [j for j in sb.redmine.state.journals.values()
              if j.notes and "INTERNAL-A" in j.notes]
    assert [j.private_notes for j in copies] == [True]
    link = engine.store.get_link("bugs", slugs[0])
    assert link is not None and all(c.target_id != str(j.id) for c in link.comment_links
                                    for j in sb.redmine.state.journals.values()
                                    if not j.notes)
    engine.close()


# --- 5. forged markers ---------------------------------------------------------------------

def test_an_issue_forged_with_our_marker_never_gets_the_conversation(tmp_path: Path) -> None:
    """5: someone else creates an issue ending with the exact marker the engine would
    write (the worst case: they know it), and the engine's real create fails with 502.
    Recovery and the search before creating both ignore the forged issue (not by the
    sync's user): the conversation gets its own issue, and nothing, internal notes least
    of all, is written on the forged one."""
    sb = sandbox(tmp_path, sync=QUICK_RECOVERY)
    slugs = _seed(sb)
    marker = Markers(MARKER_KEY.encode(), "bugs").issue(slugs[0])
    mallory = Engineer(sb, login="mallory")
    forged = mallory.http.post("/issues.json", json={"issue": {
        "project_id": PROJECT, "subject": "Totally the sync's issue",
        "description": f"Nothing to see.\n\n<!-- reamaze-sync:{marker} -->"}})
    assert forged.status_code == 201
    forged_id = forged.json()["issue"]["id"]
    sb.redmine.faults.add(status=502, method="POST", path=r"^/issues\.json$")
    engine = sb.engine(clock=FakeClock())
    with structlog.testing.capture_logs() as logs:
        for _ in range(4):
            run_all_once(engine)
    run_pass(engine)
    assert issue_for(engine, slugs[0]) != str(forged_id)
    assert journals(sb, forged_id) == []
    assert any(e["event"] == "marker_not_trusted" for e in logs)
    assert len(issue_ids(sb)) == 3  # the forged one, and one per conversation
    engine.close()


def test_a_copied_marker_in_a_persons_note_never_hides_it(tmp_path: Path) -> None:
    """5: an engineer's note ends with a marker copied from one of the engine's notes: it
    is still a person's note, copied to Re:amaze, and the engine says why it looked odd."""
    sb = sandbox(tmp_path)
    slugs = _seed(sb)
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    issue = issue_for(engine, slugs[0])
    ours = next(j.text for j in journals(sb, issue) if "reamaze-sync:" in j.text)
    copied_marker = ours.splitlines()[-1]
    Engineer(sb).note(issue, f"Real finding: the cache is stale.\n\n{copied_marker}")
    with structlog.testing.capture_logs() as logs:
        run_pass(engine)
    assert [m.visibility for m in messages(sb, slugs[0])
            if "the cache is stale" in m.body] == [INTERNAL]
    assert any(e["event"] == "marker_not_trusted" for e in logs)
    engine.close()


def test_exit_code_is_non_zero_after_a_failed_object(tmp_path: Path) -> None:
    """A pass that recorded a failed object is not clean: the CLI exits non-zero."""
    sb = sandbox(tmp_path)
    _seed(sb)
    sb.redmine.faults.add(status=422, body=b'{"errors":["Subject is invalid"]}',
                          method="POST", path=r"^/issues\.json$")
    engine = sb.engine(clock=FakeClock())
    result: PassResult = run_all_once(engine)[0]
    assert result.ok and result.failed and not result.clean
    from syncer.cli import _print_results

    assert _print_results([result]) == 1
    engine.close()


def test_a_kill_after_a_status_write_does_not_make_it_look_like_a_persons_change(
        tmp_path: Path) -> None:
    """The process dies right after reopening the conversation (the issue was reopened),
    before the new base of the field merge was saved; the issue is closed again before the
    restart. The field writes are journalled, so recovery records the reopen as the sync's
    own: the next pass sees the second closing, closes the conversation and mails its
    close reply once."""
    from e2e_support import CrashAfter, crash_then_restart

    sb = sandbox(tmp_path, status={"close_reply_template": "Good news: {subject} is fixed."})
    slugs = _seed(sb)
    engine = sb.engine(clock=FakeClock())
    run_pass(engine)
    issue = issue_for(engine, slugs[0])
    dev = Engineer(sb)
    dev.close(issue)
    run_pass(engine)
    assert sb.reamaze.conversations[slugs[0]].status == 2
    engine.close()
    dev.reopen(issue)
    crash = CrashAfter(lambda r: r.method == "PUT"
                       and r.url.path == f"/api/v1/conversations/{slugs[0]}")
    engine = crash_then_restart(sb, crash, "reamaze")
    assert sb.reamaze.conversations[slugs[0]].status == 0  # the reopen landed
    dev.close(issue)
    result = run_pass(engine)
    assert result.counts["intents_recovered"] >= 1
    run_pass(engine)
    assert sb.reamaze.conversations[slugs[0]].status == 2
    replies = [m for m in messages(sb, slugs[0]) if "Good news" in m.body]
    assert len(replies) == 2 and all(m.notified for m in replies)
    engine.close()
