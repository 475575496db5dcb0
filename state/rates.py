"""Request rates learned from 429s (``connectors.learned_rate``), shared between processes.

Keyed by service and credential identity (``syncer.budgets``), so a daemon restarted, or a
`backfill` next to it, starts from the rate the last process learned instead of drawing
the same 429s again. Not fenced by a pair's lease: a rate belongs to a connection, which
every pair of the process shares.
"""

from __future__ import annotations

from sqlmodel import col, select

from state.core import StoreCore
from state.records import LearnedRateRecord
from state.tables import LearnedRateRow


class LearnedRateStore(StoreCore):
    def save_learned_rate(self, key: str, service: str, per_minute: float,
                          refused_at_per_minute: float | None) -> None:
        now = self._now()
        with self._tx(write=True, fenced=False) as s:
            s.execute(self._insert(LearnedRateRow).values(
                key=key, service=service, per_minute=per_minute,
                refused_at_per_minute=refused_at_per_minute, updated_at=now,
            ).on_conflict_do_update(index_elements=["key"], set_={
                "service": service, "per_minute": per_minute,
                "refused_at_per_minute": refused_at_per_minute, "updated_at": now}))

    def learned_rates(self) -> list[LearnedRateRecord]:
        with self._tx(write=False) as s:
            rows = self._all(s, select(LearnedRateRow).order_by(col(LearnedRateRow.key)))
            return [LearnedRateRecord.model_validate(r.model_dump()) for r in rows]
