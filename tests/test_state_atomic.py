"""atomic(): the all-or-nothing grouping the engine's cursor discipline depends on."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from state_support import *  # noqa: F403  (pytest fixtures)
from state_support import FakeClock

from state import StateStore
from syncer.models import Cursor
from syncer.plan import Side, Snapshot

H, T = Side.HELPDESK, Side.TRACKER
OLD = Cursor(watermark=datetime(2026, 1, 1, tzinfo=UTC), seen=("old",))
NEW = Cursor(watermark=datetime(2026, 1, 2, tzinfo=UTC), seen=("new",))


class Boom(Exception):
    pass


def _sync_one(store: StateStore, conversation_id: str) -> None:
    """What the engine does for one conversation: link, copies, snapshot, then the cursor."""
    store.create_link("p", conversation_id, f"issue-{conversation_id}", H)
    store.add_comment_link("p", conversation_id, H, "m1", "j1", "public", "fp")
    store.save_snapshot("p", conversation_id, Snapshot(helpdesk_tags=("t",)))
    store.save_cursor("p", H, NEW)


def test_atomic_commits_everything_at_exit(store: StateStore,
                                           open_store: Callable[[], StateStore]) -> None:
    """Writes inside atomic() are invisible to another connection until the block exits."""
    other = open_store()
    with store.atomic():
        _sync_one(store, "conv-1")
        assert other.get_link("p", "conv-1") is None
        assert other.get_cursor("p", H) is None
        assert store.get_cursor("p", H) == NEW  # the block reads its own writes
    link = other.get_link("p", "conv-1")
    assert link is not None and len(link.comment_links) == 1 and link.snapshot is not None
    assert other.get_cursor("p", H) == NEW


def test_exception_rolls_back_links_comments_snapshot_and_cursor(store: StateStore) -> None:
    """An exception inside atomic() undoes the link, comment links, snapshot AND cursor."""
    store.save_cursor("p", H, OLD)
    store.create_link("p", "conv-0", "issue-0", H)
    with pytest.raises(Boom), store.atomic():
        _sync_one(store, "conv-1")
        store.add_comment_link("p", "conv-0", T, "j5", "m5", "internal", "fp")
        store.set_link_status("p", "conv-0", "orphaned")
        raise Boom
    assert store.get_link("p", "conv-1") is None
    assert store.get_link_by_issue("p", "issue-conv-1") is None
    assert store.get_cursor("p", H) == OLD
    conv0 = store.get_link("p", "conv-0")
    assert conv0 is not None and conv0.status == "active" and conv0.comment_links == ()


def test_journal_writes_roll_back_with_the_block(store: StateStore) -> None:
    """Intents, runs and failures written inside a failed block are undone too."""
    with pytest.raises(Boom), store.atomic():
        store.begin_intent("p", "rs-1", "add_comment", "conv-1", T, {"body": "x"})
        store.start_run("p", "poll")
        store.record_failure("p", H, "conv-9", "bad")
        raise Boom
    assert store.get_intent("p", "rs-1") is None
    assert store.last_run("p") is None
    assert store.list_failures() == []


def test_nested_atomic_joins_the_outer_transaction(store: StateStore,
                                                   open_store: Callable[[], StateStore]) -> None:
    """A completed inner block commits only with the outer one, and rolls back with it."""
    other = open_store()
    with pytest.raises(Boom), store.atomic():
        with store.atomic():
            _sync_one(store, "conv-1")
        assert other.get_link("p", "conv-1") is None
        raise Boom
    assert store.get_link("p", "conv-1") is None
    assert store.get_cursor("p", H) is None


def test_caught_inner_failure_undoes_only_the_inner_block(store: StateStore) -> None:
    """An exception caught around a nested block discards that block's writes, no others."""
    with store.atomic():
        store.create_link("p", "conv-1", "1", H)
        with pytest.raises(Boom), store.atomic():
            store.create_link("p", "conv-2", "2", H)
            store.save_cursor("p", H, NEW)
            raise Boom
        store.create_link("p", "conv-3", "3", H)
    assert [v.conversation_id for v in store.iter_links("p")] == ["conv-1", "conv-3"]
    assert store.get_cursor("p", H) is None


def test_refused_link_inside_atomic_leaves_the_block_usable(store: StateStore) -> None:
    """A duplicate-link ValueError caught inside atomic() does not poison the transaction
    (PostgreSQL aborts a transaction on any failed statement)."""
    store.create_link("p", "conv-1", "1", H)
    with store.atomic():
        with pytest.raises(ValueError):
            store.create_link("p", "conv-1", "2", H)
        with pytest.raises(ValueError):
            store.create_link("p", "conv-2", "1", H)
        store.create_link("p", "conv-2", "2", H)
        store.save_cursor("p", H, NEW)
    assert store.count_links("p") == 2
    assert store.get_cursor("p", H) == NEW


def test_atomic_belongs_to_its_thread(store: StateStore) -> None:
    """Another thread's calls do not join a block that is open on this thread."""
    inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with store.atomic():
                store.create_link("p", "conv-1", "1", H)
                inside.set()
                release.wait(10)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    assert inside.wait(10)
    assert store.get_link("p", "conv-1") is None  # not joined, so not visible yet
    release.set()
    thread.join(10)
    assert errors == []
    assert store.get_link("p", "conv-1") is not None


def test_each_call_outside_atomic_commits_on_its_own(
        store: StateStore, open_store: Callable[[], StateStore]) -> None:
    """Without atomic(), a write is visible to other connections as soon as it returns."""
    other = open_store()
    store.create_link("p", "conv-1", "1", H)
    assert other.get_link("p", "conv-1") is not None
    store.save_cursor("p", T, NEW)
    assert other.get_cursor("p", T) == NEW


def test_in_memory_store_supports_atomic_rollback(clock: FakeClock) -> None:
    """The in-memory store (one shared connection) rolls back like a file database."""
    mem = StateStore.in_memory()
    try:
        mem.save_cursor("p", H, OLD)
        with pytest.raises(Boom), mem.atomic():
            _sync_one(mem, "conv-1")
            raise Boom
        assert mem.get_link("p", "conv-1") is None
        assert mem.get_cursor("p", H) == OLD
    finally:
        mem.close()


def test_reads_inside_atomic_see_the_blocks_own_updates(store: StateStore) -> None:
    """Counters bumped twice in one block come back current, not as a cached first read."""
    with store.atomic():
        store.create_link("p", "conv-1", None, H)
        assert store.begin_intent("p", "rs-1", "create_issue", "conv-1", T, {}).attempts == 1
        assert store.begin_intent("p", "rs-1", "create_issue", "conv-1", T, {}).attempts == 2
        assert store.record_failure("p", H, "conv-2", "a") == 1
        assert store.record_failure("p", H, "conv-2", "b") == 2
        store.set_failure_skipped("p", H, "conv-2", True)
        assert store.is_skipped("p", H, "conv-2")
        store.save_snapshot("p", "conv-1", Snapshot(helpdesk_tags=("one",)))
        store.save_snapshot("p", "conv-1", Snapshot(helpdesk_tags=("two",)))
        link = store.get_link("p", "conv-1")
        assert link is not None and link.snapshot == Snapshot(helpdesk_tags=("two",))
        store.set_link_issue("p", "conv-1", "101")
        assert store.get_link_by_issue("p", "101") is not None
