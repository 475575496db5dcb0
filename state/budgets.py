"""Request budgets shared by every process using a credential (``syncer.budgets``).

One row per credential holds when its next request may go, as a GCRA bucket: booking a
request moves ``next_slot`` on by the request's interval, and a request waits until
``next_slot`` minus what the burst allows. Booking is one short write transaction (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: the row locked ``FOR UPDATE``), so two processes never
book the same slot. Not fenced by a pair's lease: a budget belongs to a credential, which
every pair of every process shares.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import select

from state.core import StoreCore
from state.tables import RequestBudgetRow

# A booking further ahead than this is from a clock that went back (or a stale row from
# another host's clock): start again from now rather than make everyone wait for it.
MAX_AHEAD_SECONDS = 900.0


class RequestBudgetStore(StoreCore):
    def reserve_request(self, key: str, now: float | Callable[[], float], interval: float,
                        burst: float, *, background: bool = False,
                        count: int = 1) -> tuple[float, bool]:
        """Book the next ``count`` requests on ``key`` (one interval apart): (seconds to
        wait before sending the first, booked). A background booking is only made when no
        request is queued ahead of it; else it is told how long until the queue is empty,
        to look again then. ``now`` may be a clock, read once the row is locked: a booking
        that waited for the lock must not start its slots in the past."""
        stamp = self._now()
        with self._tx(write=True, fenced=False) as s:
            query = select(RequestBudgetRow).where(RequestBudgetRow.key == key)
            if self._dialect == "postgresql":
                # A row to lock first: two first bookings would both see none and book the
                # same slots (READ COMMITTED: the second insert waits for the first, then
                # the lock below sees its row).
                s.execute(self._insert(RequestBudgetRow).values(
                    key=key, next_slot=0.0, updated_at=stamp).on_conflict_do_nothing(
                    index_elements=["key"]))
                query = query.with_for_update()
            row = self._first(s, query)
            now = now() if callable(now) else now
            due = row.next_slot if row is not None else now
            if due > now + MAX_AHEAD_SECONDS:
                due = now
            due = max(due, now)
            if background and due > now:
                return due - now, False
            wait = max(0.0, due - now - (burst - 1.0) * interval)
            values = {"next_slot": due + count * interval, "updated_at": stamp}
            s.execute(self._insert(RequestBudgetRow).values(key=key, **values)
                      .on_conflict_do_update(index_elements=["key"], set_=values))
            return wait, True
