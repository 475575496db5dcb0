"""Keeping the state database small: the daemon prunes after its passes.

Every conversation leaves about seven completed intents (some 7 KB) and every pass a run
row; nothing read them once they were done, so a database grew without bound. What must
stay is kept by the store's prune methods (pending and failed intents, the latest runs,
each pair's last successful and last failed run); this module decides when to prune:

* after a pass of the pair, at most once per ``every`` seconds, and again after the next
  pass while a batch came back full, so a large backlog is worked off in bounded steps
  instead of one long transaction that would hold up the passes;
* only while holding the pair (taken without waiting; a busy pair is pruned another
  time), so no pass of the pair runs meanwhile: none can be between journalling a known
  key again and completing it, and every open run older than the latest ones belongs to
  a dead process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from state import PairBusy, StateStore

log = structlog.get_logger("reamaze_sync.prune")

# Rows deleted per table and pruning: a few milliseconds of one write transaction.
PRUNE_BATCH = 1000
PRUNE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True)
class Pruned:
    intents: int
    runs: int

    def full(self, batch: int) -> bool:
        return self.intents >= batch or self.runs >= batch


@dataclass
class Pruner:
    store: StateStore
    keep_done_intents: timedelta
    keep_runs: int
    batch: int = PRUNE_BATCH
    every: float = PRUNE_EVERY_SECONDS
    monotonic: Callable[[], float] = time.monotonic
    _due: dict[str, float] = field(default_factory=dict, init=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False)

    def after_pass(self, pair: str) -> Pruned | None:
        """Prune the pair if it is due and free; what went, None when nothing was tried."""
        now = self.monotonic()
        with self._guard:
            if self._due.get(pair, now) > now:
                return None
            self._due[pair] = now + self.every
        try:
            lease = self.store.lease_pair(pair, wait_seconds=0.0)
        except PairBusy as exc:
            log.debug("prune_skipped", pair=pair, operation="prune", holder=str(exc.holder))
            with self._guard:
                self._due[pair] = now  # try again after the next pass
            return None
        with lease, self.store.fenced(lease):
            cutoff = self.store.now() - self.keep_done_intents
            pruned = Pruned(
                intents=self.store.prune_done_intents(pair, cutoff, limit=self.batch),
                runs=self.store.prune_runs(pair, self.keep_runs, limit=self.batch))
        more = pruned.full(self.batch)
        if more:
            with self._guard:
                self._due[pair] = now
        if pruned.intents or pruned.runs:
            log.info("state_pruned", pair=pair, operation="prune",
                     intents_deleted=pruned.intents, runs_deleted=pruned.runs, more=more)
        return pruned
