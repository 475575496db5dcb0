"""Readiness: is the sync keeping up?

Ready means the state database answers and every pair the daemon schedules had a
successful pass recently, relative to its interval: its last pass that finished without
error did so at most ``stale_after_intervals`` intervals ago. One failed pass (a 503 from
an API, a timeout) is no outage yet; passes failing for longer, a pair no instance works,
or a daemon whose scheduler is stuck are. The runs come from the state database, so the
answer is the same on every instance sharing it: an instance that holds no pair is ready
while another one keeps its pairs in sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from state import RunRecord, StateStore
from syncer.config import PairConfig
from syncer.secrets import scrub


@dataclass(frozen=True)
class PairReadiness:
    pair: str
    ready: bool
    reason: str
    last_success: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class Readiness:
    pairs: tuple[PairReadiness, ...]
    state_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.state_error is None and all(p.ready for p in self.pairs)

    def as_json(self) -> dict[str, Any]:
        """The body of /readyz: overall, the state database, and each pair with why."""
        return {
            "ready": self.ready,
            "state_store": ({"ok": True} if self.state_error is None
                            else {"ok": False, "error": self.state_error}),
            "pairs": {p.pair: {"ready": p.ready, "reason": p.reason,
                               "last_success": (p.last_success.isoformat()
                                                if p.last_success else None),
                               "last_error": p.last_error}
                      for p in self.pairs},
        }


def readiness(store: StateStore, pairs: list[PairConfig],
              stale_after_intervals: float) -> Readiness:
    try:
        store.ping()
        now = store.now()
        return Readiness(pairs=tuple(
            _pair(p, store.last_ok_run(p.name), store.last_error_run(p.name), now,
                  stale_after_intervals) for p in pairs))
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [type(exc).__name__])[0]
        return Readiness(pairs=(), state_error=scrub(f"state database unreachable: {first}"))


def _pair(pair: PairConfig, success: RunRecord | None, error: RunRecord | None,
          now: datetime, stale_after: float) -> PairReadiness:
    # Failed since its last success (a pass still running has not failed yet).
    last_error = error.error if error is not None and (
        success is None or error.id > success.id) else None
    finished = success.finished_at if success is not None else None
    if finished is None:
        ready, reason = False, "no successful pass yet"
    else:
        age = (now - finished).total_seconds()
        ready = age <= stale_after * pair.interval_seconds
        reason = (f"last successful pass {age:.0f} s ago" if ready else
                  f"last successful pass {age:.0f} s ago, more than {stale_after:g} times its "
                  f"{pair.interval_seconds:g} s interval")
    if last_error is not None:
        reason += f"; the last pass failed: {last_error}"
    return PairReadiness(pair=pair.name, ready=ready, reason=reason, last_success=finished,
                         last_error=last_error)
