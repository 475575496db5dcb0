"""The write-ahead journal (intents), run history and the dead letter of failing objects.

Intents close the crash window every anchor tripped over: the engine records what it is
about to write, under the idempotency key it also writes on the remote object, *before*
the remote call, and completes it afterwards. A pending intent found later means "the
write may or may not have happened; search the remote for the key before retrying".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import Row, delete, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from state import sql
from state.core import StoreCore, check_value, row_id
from state.locks import process_label
from state.records import FailureRecord, Intent, LeakRecord, RunRecord
from state.tables import INTENT_KINDS, RUN_KINDS, FailureRow, LeakRow, RunRow
from syncer.errors import trim
from syncer.logs import SECRET_KEY_RE
from syncer.plan import Side

# Stored error text; enough for a trimmed HTTP body and the context. Every error column is
# written through ``trim``, which masks credentials first: operators dump this database.
ERROR_LIMIT = 2000


@dataclass(frozen=True)
class NewIntent:
    key: str
    kind: str
    conversation_id: str
    target: Side
    payload: dict[str, Any] = field(default_factory=dict)


class JournalStore(StoreCore):
    # --- intents ------------------------------------------------------------------------

    def begin_intent(self, pair: str, key: str, kind: str, conversation_id: str,
                     target: Side, payload: dict[str, Any]) -> Intent:
        """Journal a write before making it; for a known key return the existing intent.

        Each call that may lead to a write (the intent is not done yet) counts as an
        attempt and puts a failed intent back to pending. ``payload`` is stored as JSON
        (datetimes become ISO strings); it must never contain credentials.
        """
        with self._tx(write=True) as s:
            self.begin_intents(pair, [NewIntent(key=key, kind=kind,
                                                conversation_id=conversation_id,
                                                target=target, payload=payload)])
            return self._require_intent(s, pair, key)

    def begin_intents(self, pair: str, intents: Sequence[NewIntent]) -> None:
        """``begin_intent`` for several writes in one transaction and one statement:
        the engine journals all the writes of a conversation before sending the first, so
        a backfill pays one commit per conversation instead of one per write."""
        if not intents:
            return
        now = self._now()
        rows = []
        for it in intents:
            check_value(it.kind, INTENT_KINDS, "intent kind")
            data = to_jsonable_python(it.payload)
            if not isinstance(data, dict):
                raise TypeError("intent payload must be a JSON object")
            _refuse_secrets(data)
            rows.append({"pair": pair, "key": it.key, "kind": it.kind,
                         "conversation_id": it.conversation_id,
                         "target": Side(it.target).value, "payload": data,
                         "status": "pending", "attempts": 1, "created_at": now,
                         "updated_at": now})
        with self._tx(write=True) as s:
            s.connection().execute(sql.upserts(self._dialect).intent, rows)

    def complete_intent(self, pair: str, key: str, result_id: str) -> None:
        self.complete_intents(pair, {key: result_id})

    def complete_intents(self, pair: str, results: dict[str, str]) -> None:
        """Mark done the intents ``key -> id of the object the write created``."""
        if not results:
            return
        now = self._now()
        with self._tx(write=True) as s:
            self._require_intents(s, pair, list(results))
            s.connection().execute(sql.INTENT_DONE, [
                {"b_pair": pair, "b_key": k, "b_result": v, "b_now": now}
                for k, v in results.items()])

    def fail_intent(self, pair: str, key: str, error: str) -> None:
        """Mark the write failed; it stays in ``pending_intents`` to be retried."""
        self.fail_intents(pair, [key], error)

    def fail_intents(self, pair: str, keys: Sequence[str], error: str) -> None:
        if not keys:
            return
        with self._tx(write=True) as s:
            self._require_intents(s, pair, list(keys))
            s.connection().execute(sql.INTENT_FAILED, {
                "b_pair": pair, "b_keys": list(keys), "b_error": trim(error, ERROR_LIMIT),
                "b_now": self._now()})

    @staticmethod
    def _require_intents(s: Session, pair: str, keys: list[str]) -> None:
        # Checked up front: executemany row counts are not reliable on every driver.
        known = set(s.connection().execute(sql.INTENT_KEYS,
                                           {"pair": pair, "keys": keys}).scalars())
        missing = sorted(set(keys) - known)
        if missing:
            raise KeyError(f"no intent {missing[0]!r} in pair {pair!r}")

    def note_lookup(self, pair: str, key: str) -> Intent:
        """Recovery looked for this pending write and did not find it; the intent as it is
        now (its ``lookups`` counts the lookups since the write was last sent)."""
        now = self._now()
        t = sql.intents
        with self._tx(write=True) as s:
            s.connection().execute(t.update().where(t.c.pair == pair, t.c.key == key).values(
                lookups=t.c.lookups + 1, last_lookup_at=now))
            return self._require_intent(s, pair, key)

    def now(self) -> datetime:
        """The store's clock: intents and runs are stamped with it."""
        return self._now()

    def pending_intents(self, pair: str) -> list[Intent]:
        t = sql.intents
        with self._tx(write=False) as s:
            rows = s.connection().execute(sa_select(t).where(
                t.c.pair == pair, t.c.status.in_(("pending", "failed"))).order_by(t.c.id))
            return [_intent(r) for r in rows]

    def get_intent(self, pair: str, key: str) -> Intent | None:
        with self._tx(write=False) as s:
            row = s.connection().execute(sql.INTENT_BY_KEY, {"pair": pair, "key": key}).first()
            return _intent(row) if row else None

    def _require_intent(self, s: Session, pair: str, key: str) -> Intent:
        row = s.connection().execute(sql.INTENT_BY_KEY, {"pair": pair, "key": key}).first()
        if row is None:
            raise KeyError(f"no intent {key!r} in pair {pair!r}")
        return _intent(row)

    # --- runs ---------------------------------------------------------------------------

    def start_run(self, pair: str, kind: str) -> int:
        """Record a run started by this process (``host:pid`` in its holder, so status can
        tell a live run from one whose process died)."""
        check_value(kind, RUN_KINDS, "run kind")
        with self._tx(write=True) as s:
            row = RunRow(pair=pair, kind=kind, started_at=self._now(), counts={},
                         holder=process_label())
            s.add(row)
            s.flush()
            return row_id(row.id)

    def finish_run(self, run_id: int, counts: dict[str, int], error: str | None) -> None:
        # Not fenced: a pass that lost its pair still closes its own run row, which no
        # other holder ever touches.
        with self._tx(write=True, fenced=False) as s:
            row = self._first(s, select(RunRow).where(RunRow.id == run_id))
            if row is None:
                raise KeyError(f"no run {run_id}")
            row.finished_at = self._now()
            row.counts = {str(k): int(v) for k, v in counts.items()}
            row.error = trim(error, ERROR_LIMIT) if error else None
            s.add(row)
            s.flush()

    # The pair's own passes. A webhook's targeted pass polls no feed, so it says nothing
    # about whether the pair keeps up: `status` and /readyz look at the others.
    _PASSES = ("poll", "backfill")

    def last_run(self, pair: str) -> RunRecord | None:
        """The latest run, finished or not."""
        with self._tx(write=False) as s:
            row = self._first(s, select(RunRow).where(
                RunRow.pair == pair, col(RunRow.kind).in_(self._PASSES))
                .order_by(col(RunRow.id).desc()))
            return _run(row) if row else None

    def last_ok_run(self, pair: str) -> RunRecord | None:
        """The latest run that finished without an error: how fresh the pair's sync is."""
        with self._tx(write=False) as s:
            row = self._first(s, select(RunRow).where(
                RunRow.pair == pair, col(RunRow.kind).in_(self._PASSES),
                col(RunRow.finished_at).is_not(None),
                col(RunRow.error).is_(None)).order_by(col(RunRow.id).desc()))
            return _run(row) if row else None

    def last_error_run(self, pair: str) -> RunRecord | None:
        with self._tx(write=False) as s:
            row = self._first(s, select(RunRow).where(
                RunRow.pair == pair, col(RunRow.kind).in_(self._PASSES),
                col(RunRow.error).is_not(None)).order_by(col(RunRow.id).desc()))
            return _run(row) if row else None

    def prune_runs(self, pair: str, keep: int, *, limit: int | None = None) -> int:
        """Delete a pair's runs beyond its ``keep`` latest (a daemon polling every minute
        would otherwise add half a million rows a year), at most ``limit`` of them; returns
        how many went. Its last successful and last failed run stay whatever their age:
        `status`, `/readyz` and the metrics read them. Run by the pair's holder only: a
        run older than the ``keep`` latest that is still open belongs to a dead process."""
        if keep < 1:
            raise ValueError("keep at least one run")
        runs = sql.runs
        with self._tx(write=True) as s:
            db = s.connection()
            oldest_kept = db.execute(sa_select(runs.c.id).where(runs.c.pair == pair)
                                     .order_by(runs.c.id.desc()).offset(keep - 1).limit(1)
                                     ).scalar()
            if oldest_kept is None:
                return 0
            last_ok, last_error = self.last_ok_run(pair), self.last_error_run(pair)
            spared = [r.id for r in (last_ok, last_error) if r is not None]
            doomed = (sa_select(runs.c.id).where(runs.c.pair == pair, runs.c.id < oldest_kept,
                                                 runs.c.id.not_in(spared))
                      .order_by(runs.c.id))
            if limit is not None:
                doomed = doomed.limit(limit)
            # Through a subquery: SQLite has no DELETE ... LIMIT.
            gone = db.execute(delete(runs).where(runs.c.id.in_(doomed.scalar_subquery())))
            return self._rowcount(gone)

    def prune_done_intents(self, pair: str, older_than: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` of a pair's completed intents last touched before
        ``older_than``; returns how many went.

        A done intent is read by nobody once its transaction committed: that transaction
        also recorded what the write produced (the link's issue, the comment links), and
        when those are lost the markers on the remote sides are what re-adoption goes by.
        Pending and failed intents stay: recovery, `status`, `explain` and the metrics
        read them. Only the pair's holder prunes, so no pass of the pair is between
        beginning a known key again and completing it."""
        t = sql.intents
        doomed = (sa_select(t.c.id).where(t.c.pair == pair, t.c.status == "done",
                                          t.c.updated_at < older_than)
                  .order_by(t.c.id).limit(limit))
        with self._tx(write=True) as s:
            gone = s.connection().execute(delete(t).where(t.c.id.in_(doomed.scalar_subquery())))
            return self._rowcount(gone)

    # --- leaks: copies of internal content that are public and could not be removed ----

    def record_leak(self, pair: str, conversation_id: str, side: Side, ticket_id: str,
                    comment_id: str, detail: str) -> None:
        """Remember a public copy of internal content that is still out there; the pair
        sends nothing internal until it is resolved. Recording it again reopens it."""
        now = self._now()
        message = trim(detail, ERROR_LIMIT)
        with self._tx(write=True) as s:
            s.execute(self._insert(LeakRow).values(
                pair=pair, conversation_id=conversation_id, side=Side(side).value,
                ticket_id=ticket_id, comment_id=comment_id, detail=message, detected_at=now,
                resolved_at=None,
            ).on_conflict_do_update(
                index_elements=["pair", "side", "ticket_id", "comment_id"],
                set_={"detail": message, "resolved_at": None}))

    def open_leaks(self, pair: str) -> list[LeakRecord]:
        with self._tx(write=False) as s:
            rows = self._all(s, select(LeakRow).where(
                LeakRow.pair == pair, col(LeakRow.resolved_at).is_(None))
                .order_by(col(LeakRow.id)))
            return [LeakRecord.model_validate(r.model_dump(exclude={"id"})) for r in rows]

    def resolve_leak(self, pair: str, side: Side, ticket_id: str, comment_id: str) -> None:
        with self._tx(write=True) as s:
            s.execute(update(LeakRow).where(
                col(LeakRow.pair) == pair, col(LeakRow.side) == Side(side).value,
                col(LeakRow.ticket_id) == ticket_id, col(LeakRow.comment_id) == comment_id,
            ).values(resolved_at=self._now()))

    # --- failures (dead letter) ---------------------------------------------------------

    def record_failure(self, pair: str, side: Side, object_id: str, error: str, *,
                       attempt: bool = True) -> int:
        """Count one more failure of this object; returns the attempts so far.
        ``attempt=False`` records why the object waits without counting a failed attempt
        (its writes are held while recovery looks for an earlier one)."""
        side = Side(side)
        message = trim(error, ERROR_LIMIT)
        now = self._now()
        step = 1 if attempt else 0
        with self._tx(write=True) as s:
            s.execute(self._insert(FailureRow).values(
                pair=pair, side=side.value, object_id=object_id, error=message, attempts=step,
                first_seen=now, last_seen=now, skipped=False,
            ).on_conflict_do_update(
                index_elements=["pair", "side", "object_id"],
                set_={"attempts": col(FailureRow.attempts) + step, "error": message,
                      "last_seen": now}))
            return int(self._require_failure(s, pair, side, object_id).attempts)

    def clear_failure(self, pair: str, side: Side, object_id: str) -> None:
        """Forget an object's failures once it synced. An entry an operator skipped stays:
        a pass that was already running when the skip was made must not erase it; only
        `retry` (``reset_failure``) takes a skip back."""
        with self._tx(write=True) as s:
            s.execute(delete(FailureRow).where(
                col(FailureRow.pair) == pair, col(FailureRow.side) == Side(side).value,
                col(FailureRow.object_id) == object_id, col(FailureRow.skipped).is_(False)))

    def list_failures(self, pair: str | None = None) -> list[FailureRecord]:
        """Most recently failing first."""
        with self._tx(write=False) as s:
            stmt = select(FailureRow)
            if pair is not None:
                stmt = stmt.where(FailureRow.pair == pair)
            rows = self._all(s, stmt.order_by(col(FailureRow.last_seen).desc(),
                                              col(FailureRow.id).desc()))
            return [_failure(r) for r in rows]

    def set_failure_skipped(self, pair: str, side: Side, object_id: str,
                            skipped: bool) -> None:
        """An operator may skip an object before it ever failed; that creates the entry."""
        side = Side(side)
        now = self._now()
        with self._tx(write=True) as s:
            s.execute(self._insert(FailureRow).values(
                pair=pair, side=side.value, object_id=object_id,
                error="skipped by operator", attempts=0, first_seen=now, last_seen=now,
                skipped=skipped,
            ).on_conflict_do_update(index_elements=["pair", "side", "object_id"],
                                    set_={"skipped": skipped}))

    def reset_failure(self, pair: str, side: Side, object_id: str) -> FailureRecord | None:
        """An operator's `retry`: the entry stays (the next pass retries what the dead
        letter lists) but with its attempts back at 0 and not skipped, so it is due again
        even past the automatic retry limit. Returns the entry as it was, None if none."""
        side = Side(side)
        with self._tx(write=True) as s:
            row = self._failure_row(s, pair, side, object_id)
            if row is None:
                return None
            before = _failure_from_row(row)
            s.execute(update(FailureRow).where(
                col(FailureRow.pair) == pair, col(FailureRow.side) == side.value,
                col(FailureRow.object_id) == object_id,
            ).values(attempts=0, skipped=False))
            return before

    def is_skipped(self, pair: str, side: Side, object_id: str) -> bool:
        with self._tx(write=False) as s:
            row = self._failure_row(s, pair, Side(side), object_id)
            return bool(row and row.skipped)

    @staticmethod
    def _failure_row(s: Session, pair: str, side: Side, object_id: str) -> Row[Any] | None:
        return s.connection().execute(sql.FAILURE, {"pair": pair, "side": side.value,
                                                    "object_id": object_id}).first()

    def _require_failure(self, s: Session, pair: str, side: Side,
                         object_id: str) -> Row[Any]:
        row = self._failure_row(s, pair, side, object_id)
        if row is None:
            raise KeyError(f"no failure for {side.value} object {object_id} in {pair!r}")
        return row


def _refuse_secrets(value: Any, path: str = "payload") -> None:
    """The journal is plain data an operator may dump; a credential must never land in it."""
    if isinstance(value, dict):
        for key, item in value.items():
            if SECRET_KEY_RE.search(str(key)):
                raise ValueError(f"refusing to journal {path}.{key}: looks like a credential")
            _refuse_secrets(item, f"{path}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _refuse_secrets(item, f"{path}[{n}]")


def _intent(row: Row[Any]) -> Intent:
    return Intent.model_validate(dict(row._mapping))


def _run(row: RunRow) -> RunRecord:
    return RunRecord.model_validate(row.model_dump())


def _failure_from_row(row: Row[Any]) -> FailureRecord:
    return FailureRecord.model_validate(
        {k: v for k, v in row._mapping.items() if k != "id"})


def _failure(row: FailureRow) -> FailureRecord:
    return FailureRecord.model_validate(row.model_dump(exclude={"id"}))
