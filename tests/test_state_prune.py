"""Pruning the state database: completed intents and old runs go, what is read stays."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from state_support import *  # noqa: F403  (pytest fixtures)
from state_support import FakeClock

from state import StateStore
from syncer.plan import Side
from syncer.prune import Pruner

T = Side.TRACKER
DAY = 86400.0


def _done(store: StateStore, key: str) -> None:
    store.begin_intent("p", key, "add_comment", "conv-1", T, {})
    store.complete_intent("p", key, f"id-{key}")


def test_done_intents_older_than_the_cutoff_go(store: StateStore, clock: FakeClock) -> None:
    """Only completed intents last touched before the cutoff are deleted; pending, failed
    and recent ones, and other pairs' intents, stay."""
    _done(store, "old-done")
    store.begin_intent("p", "old-pending", "add_comment", "conv-1", T, {})
    store.begin_intent("p", "old-failed", "add_comment", "conv-1", T, {})
    store.fail_intent("p", "old-failed", "rejected")
    store.begin_intent("q", "other-pair", "add_comment", "conv-1", T, {})
    store.complete_intent("q", "other-pair", "x")
    clock.advance(8 * DAY)
    _done(store, "new-done")
    cutoff = store.now() - timedelta(days=7)
    assert store.prune_done_intents("p", cutoff, limit=100) == 1
    assert store.get_intent("p", "old-done") is None
    kept = ("old-pending", "old-failed", "new-done")
    assert all(store.get_intent("p", k) is not None for k in kept)
    assert store.get_intent("q", "other-pair") is not None
    assert [i.key for i in store.pending_intents("p")] == ["old-pending", "old-failed"]


def test_done_intents_are_pruned_in_bounded_batches(store: StateStore,
                                                    clock: FakeClock) -> None:
    """One call deletes at most ``limit`` intents, oldest first."""
    for n in range(5):
        _done(store, f"k{n}")
    clock.advance(8 * DAY)
    cutoff = store.now() - timedelta(days=7)
    assert store.prune_done_intents("p", cutoff, limit=2) == 2
    assert store.get_intent("p", "k0") is None and store.get_intent("p", "k2") is not None
    assert store.prune_done_intents("p", cutoff, limit=2) == 2
    assert store.prune_done_intents("p", cutoff, limit=2) == 1
    assert store.prune_done_intents("p", cutoff, limit=2) == 0


def test_a_pruned_key_journalled_again_is_a_new_pending_write(store: StateStore,
                                                             clock: FakeClock) -> None:
    """After pruning, the same key starts over as an ordinary pending intent, which
    recovery looks up by its marker like any other."""
    _done(store, "k")
    clock.advance(8 * DAY)
    store.prune_done_intents("p", store.now() - timedelta(days=7), limit=10)
    again = store.begin_intent("p", "k", "add_comment", "conv-1", T, {})
    assert (again.status, again.attempts) == ("pending", 1)


def test_prune_runs_spares_the_last_ok_and_last_failed_run(store: StateStore) -> None:
    """Beyond the latest ``keep`` runs, the last successful and the last failed run stay:
    status, /readyz and the metrics read them."""
    failed = store.start_run("p", "poll")
    store.finish_run(failed, {}, "server error")
    ok = store.start_run("p", "poll")
    store.finish_run(ok, {}, None)
    dead = store.start_run("p", "poll")  # its process died: never finished
    latest = []
    for _ in range(3):
        run = store.start_run("p", "poll")
        store.finish_run(run, {}, "still failing")
        latest.append(run)
    assert store.prune_runs("p", keep=3) == 2  # the dead one and the older failure
    last_ok, last_error = store.last_ok_run("p"), store.last_error_run("p")
    assert last_ok is not None and last_ok.id == ok
    assert last_error is not None and last_error.id == latest[-1]
    store.finish_run(latest[0], {}, None)  # the latest three are all still there
    for gone in (failed, dead):
        try:
            store.finish_run(gone, {}, None)
        except KeyError:
            continue
        raise AssertionError(f"run {gone} was kept")


def test_prune_runs_respects_its_limit(store: StateStore) -> None:
    """``limit`` bounds the runs one call deletes."""
    for _ in range(6):
        store.finish_run(store.start_run("p", "poll"), {}, None)
    assert store.prune_runs("p", keep=1, limit=2) == 2
    assert store.prune_runs("p", keep=1, limit=10) == 3


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_pruner_runs_once_per_period_and_again_while_batches_are_full(
        store: StateStore, clock: FakeClock) -> None:
    """A full batch makes the next pass prune again; otherwise it waits ``every``."""
    for n in range(3):
        _done(store, f"k{n}")
    clock.advance(8 * DAY)
    ticks = Ticks()
    pruner = Pruner(store, keep_done_intents=timedelta(days=7), keep_runs=10, batch=2,
                    every=3600.0, monotonic=ticks)
    first = pruner.after_pass("p")
    assert first is not None and first.intents == 2
    second = pruner.after_pass("p")  # the batch was full: due again at once
    assert second is not None and second.intents == 1
    assert pruner.after_pass("p") is None  # not full: waits for the period
    _done(store, "k3")
    clock.advance(8 * DAY)
    ticks.now += 3600.0
    third = pruner.after_pass("p")
    assert third is not None and third.intents == 1


def test_pruner_leaves_a_pair_another_process_works(
        open_store: Callable[[], StateStore], clock: FakeClock) -> None:
    """A pair whose lease another process holds is not pruned (its pass may be between
    journalling a known key and completing it), and is tried again after the next pass."""
    store, other = open_store(), open_store()
    _done(store, "k")
    clock.advance(8 * DAY)
    pruner = Pruner(store, keep_done_intents=timedelta(days=7), keep_runs=10,
                    monotonic=Ticks())
    with other.lease_pair("p"):
        assert pruner.after_pass("p") is None
        assert store.get_intent("p", "k") is not None
    pruned = pruner.after_pass("p")
    assert pruned is not None and pruned.intents == 1
