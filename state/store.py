"""Links, comment links, snapshots and cursors: what the engine reads to plan a sync.

``StateStore`` is the one repository class the engine talks to. It returns plan and
record values, never ORM rows; see ``state.core`` for the transaction rules and
``state.journal`` for intents, runs and failures.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import BaseModel
from sqlalchemy import Connection, Row, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from state import sql
from state.budgets import RequestBudgetStore
from state.core import check_value, row_id
from state.journal import JournalStore
from state.rates import LearnedRateStore
from state.tables import LINK_STATUSES, VISIBILITIES, SweepRow
from syncer.models import Cursor, SweepPosition, Visibility
from syncer.plan import CommentLinkView, LinkView, Side, Snapshot

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class NewCommentLink:
    source_side: Side
    source_id: str
    target_id: str
    visibility: str
    fingerprint: str


class LinkConflict(ValueError):
    """The conversation or the issue is already linked: usually another process (or a
    `link` command) linked it after the caller read the link. Nothing was changed."""


class StateStore(JournalStore, LearnedRateStore, RequestBudgetStore):
    # --- links --------------------------------------------------------------------------

    def get_link(self, pair: str, conversation_id: str) -> LinkView | None:
        with self._tx(write=False) as s:
            row = self._link_row(s, pair, conversation_id)
            return self._views(s, pair, [row])[0] if row else None

    def get_link_by_issue(self, pair: str, issue_id: str) -> LinkView | None:
        with self._tx(write=False) as s:
            row = _db(s).execute(sql.LINK_BY_ISSUE, {"pair": pair, "issue": issue_id}).first()
            return self._views(s, pair, [row])[0] if row else None

    def iter_links(self, pair: str, status: str | None = "active", *,
                   batch_size: int = 500) -> Iterator[LinkView]:
        """Links in creation order, read in keyset batches.

        Each batch is its own short read, and nothing stays open while the caller handles
        a link: the caller writes to the store between items, and a cursor held across
        those writes would pin a read transaction (and, on in-memory SQLite, share the
        one connection the writes need).
        """
        if status is not None:
            check_value(status, LINK_STATUSES, "link status")
        links = sql.links
        after = 0
        while True:
            with self._tx(write=False) as s:
                stmt = select(links).where(links.c.pair == pair, links.c.id > after)
                if status is not None:
                    stmt = stmt.where(links.c.status == status)
                rows = list(_db(s).execute(stmt.order_by(links.c.id).limit(batch_size)))
                views = self._views(s, pair, rows)
            yield from views
            if len(rows) < batch_size:
                return
            after = row_id(rows[-1].id)

    def count_links(self, pair: str, status: str | None = None) -> int:
        links = sql.links
        with self._tx(write=False) as s:
            stmt = select(func.count()).select_from(links).where(links.c.pair == pair)
            if status is not None:
                stmt = stmt.where(links.c.status == status)
            return int(_db(s).execute(stmt).scalar_one())

    def create_link(self, pair: str, conversation_id: str, issue_id: str | None,
                    origin: Side, *, pending_ok: bool = False) -> None:
        """Record a link; a previously *unlinked* row for the same conversation or issue
        gives way (its comment links are kept only if it pointed at the same issue).
        ``pending_ok``: a live link still waiting for its issue is left as it is."""
        origin = Side(origin)
        now = self._now()
        with self._tx(write=True) as s:
            mine = self._link_row(s, pair, conversation_id)
            if pending_ok and issue_id is None and mine is not None and \
                    mine.issue_id is None and mine.status == "active":
                return
            if mine is not None and mine.status != "unlinked":
                raise LinkConflict(f"conversation {conversation_id} is already linked in pair "
                                   f"{pair!r} (issue {mine.issue_id}, {mine.status})")
            try:
                with s.begin_nested():
                    self._claim_issue(s, pair, issue_id, conversation_id)
                    if mine is None:
                        _db(s).execute(sql.LINK_INSERT, {
                            "pair": pair, "conversation_id": conversation_id,
                            "issue_id": issue_id, "origin": origin.value, "status": "active",
                            "created_at": now, "updated_at": now})
                    else:
                        if mine.issue_id != issue_id or issue_id is None:
                            self._delete_children(s, pair, conversation_id)
                        _db(s).execute(sql.LINK_RESET, {"b_id": mine.id, "b_issue": issue_id,
                                                        "b_origin": origin.value, "b_now": now})
            except IntegrityError:  # another process linked it between our check and insert
                raise LinkConflict(f"conversation {conversation_id} or issue {issue_id} was "
                                   f"linked concurrently in pair {pair!r}") from None

    def set_link_issue(self, pair: str, conversation_id: str, issue_id: str) -> None:
        """Fill in the issue of a link whose create was pending."""
        with self._tx(write=True) as s:
            link = self._require_link(s, pair, conversation_id)
            if link.issue_id == issue_id:
                return
            if link.issue_id is not None:
                raise LinkConflict(f"conversation {conversation_id} is linked to issue "
                                   f"{link.issue_id}, not re-pointing it to {issue_id}")
            self._claim_issue(s, pair, issue_id, conversation_id)
            _db(s).execute(sql.LINK_SET_ISSUE, {"b_id": link.id, "b_issue": issue_id,
                                                "b_now": self._now()})

    def set_link_status(self, pair: str, conversation_id: str, status: str) -> None:
        check_value(status, LINK_STATUSES, "link status")
        with self._tx(write=True) as s:
            link = self._require_link(s, pair, conversation_id)
            _db(s).execute(sql.LINK_SET_STATUS, {"b_id": link.id, "b_status": status,
                                                 "b_now": self._now()})

    def delete_link(self, pair: str, conversation_id: str) -> None:
        """Forget a link with its comment links and snapshot; a no-op if there is none."""
        with self._tx(write=True) as s:
            self._delete_link_rows(s, pair, conversation_id)

    # --- comment links, snapshots, cursors ----------------------------------------------

    def add_comment_link(self, pair: str, conversation_id: str, source_side: Side,
                         source_id: str, target_id: str, visibility: str,
                         fingerprint: str) -> None:
        """Idempotent: a second call for the same source comment keeps the first target."""
        self.add_comment_links(pair, conversation_id, [NewCommentLink(
            source_side=source_side, source_id=source_id, target_id=target_id,
            visibility=visibility, fingerprint=fingerprint)])

    def add_comment_links(self, pair: str, conversation_id: str,
                          links: Sequence[NewCommentLink]) -> None:
        """``add_comment_link`` for several comments of one conversation, in three
        statements whatever their number."""
        if not links:
            return
        for c in links:
            check_value(str(c.visibility), VISIBILITIES, "visibility")
        now = self._now()
        with self._tx(write=True) as s:
            self._require_link(s, pair, conversation_id)
            existing = {(side, sid): target for side, sid, target in _db(s).execute(
                sql.COMMENT_TARGETS, {"pair": pair, "cid": conversation_id,
                                      "sources": [c.source_id for c in links]})}
            rows = []
            for c in links:
                side = Side(c.source_side).value
                kept = existing.get((side, c.source_id))
                if kept is not None:
                    if kept != c.target_id:
                        log.warning("comment_link_conflict", pair=pair,
                                    conversation_id=conversation_id, source_id=c.source_id,
                                    kept_target=kept, ignored_target=c.target_id)
                    continue
                existing[(side, c.source_id)] = c.target_id
                rows.append({"pair": pair, "conversation_id": conversation_id,
                             "source_side": side, "source_id": c.source_id,
                             "target_id": c.target_id, "visibility": str(c.visibility),
                             "fingerprint": c.fingerprint, "created_at": now})
            if rows:
                _db(s).execute(sql.upserts(self._dialect).comment_link, rows)

    def set_copy_fingerprint(self, pair: str, conversation_id: str, source_side: Side,
                             source_id: str, fingerprint: str) -> None:
        """A copied comment's source changed (or went, ``plan.GONE``) and the other side
        was told: the link keeps the new fingerprint, so the change is not told again."""
        t = sql.comment_links
        with self._tx(write=True) as s:
            _db(s).execute(update(t).where(
                t.c.pair == pair, t.c.conversation_id == conversation_id,
                t.c.source_side == Side(source_side).value, t.c.source_id == source_id,
            ).values(fingerprint=fingerprint))

    def forget_copy(self, pair: str, conversation_id: str, target_id: str) -> None:
        """Drop the comment links to a copy that was removed, so its source is copied again
        (when policy allows) instead of counting as copied forever."""
        t = sql.comment_links
        with self._tx(write=True) as s:
            _db(s).execute(delete(t).where(t.c.pair == pair,
                                           t.c.conversation_id == conversation_id,
                                           t.c.target_id == target_id))

    def save_snapshot(self, pair: str, conversation_id: str, snapshot: Snapshot) -> None:
        now = self._now()
        data = snapshot.model_dump(mode="json")
        with self._tx(write=True) as s:
            self._require_link(s, pair, conversation_id)
            _db(s).execute(sql.upserts(self._dialect).snapshot, {
                "pair": pair, "conversation_id": conversation_id, "data": data,
                "updated_at": now})

    def get_cursor(self, pair: str, side: Side) -> Cursor | None:
        with self._tx(write=False) as s:
            data = _db(s).execute(sql.CURSOR, {"pair": pair,
                                               "side": Side(side).value}).scalar()
            return Cursor.model_validate(known_fields(Cursor, data)) if data else None

    def save_cursor(self, pair: str, side: Side, cursor: Cursor) -> None:
        now = self._now()
        data = cursor.model_dump(mode="json")
        with self._tx(write=True) as s:
            _db(s).execute(sql.upserts(self._dialect).cursor, {
                "pair": pair, "side": Side(side).value, "data": data, "updated_at": now})

    # --- the sweep ----------------------------------------------------------------------

    def links_after(self, pair: str, after: int, limit: int) -> list[tuple[int, LinkView]]:
        """Active links with an id above ``after``, in id order, with their ids: the
        sweep's keyset walk (new links join the round when their id comes up)."""
        links = sql.links
        with self._tx(write=False) as s:
            rows = list(_db(s).execute(
                select(links).where(links.c.pair == pair, links.c.id > after,
                                    links.c.status == "active")
                .order_by(links.c.id).limit(limit)))
            return list(zip((row_id(r.id) for r in rows), self._views(s, pair, rows),
                            strict=True))

    def get_sweep(self, pair: str) -> SweepPosition | None:
        table = sql.table(SweepRow)
        with self._tx(write=False) as s:
            data = _db(s).execute(select(table.c.data).where(table.c.pair == pair)).scalar()
            return SweepPosition.model_validate(known_fields(SweepPosition, data)) \
                if data else None

    def save_sweep(self, pair: str, position: SweepPosition) -> None:
        table = sql.table(SweepRow)
        ins = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        stmt = ins(table).values(pair=pair, data=position.model_dump(mode="json"),
                                 updated_at=self._now())
        with self._tx(write=True) as s:
            _db(s).execute(stmt.on_conflict_do_update(
                index_elements=["pair"],
                set_={"data": stmt.excluded.data, "updated_at": stmt.excluded.updated_at}))

    # --- helpers ------------------------------------------------------------------------

    @staticmethod
    def _link_row(s: Session, pair: str, conversation_id: str) -> Row[Any] | None:
        return _db(s).execute(sql.LINK_BY_CONVERSATION,
                              {"pair": pair, "cid": conversation_id}).first()

    def _claim_issue(self, s: Session, pair: str, issue_id: str | None,
                     conversation_id: str) -> None:
        """Make ``issue_id`` free for this conversation: refuse if another live link holds
        it; a stale ``unlinked`` row holding it gives way."""
        if issue_id is None:
            return
        other = _db(s).execute(sql.ISSUE_HOLDER, {"pair": pair, "issue": issue_id,
                                                  "cid": conversation_id}).first()
        if other is None:
            return
        if other.status != "unlinked":
            raise LinkConflict(f"issue {issue_id} is already linked in pair {pair!r} "
                               f"(conversation {other.conversation_id}, {other.status})")
        self._delete_link_rows(s, pair, other.conversation_id)

    def _require_link(self, s: Session, pair: str, conversation_id: str) -> Row[Any]:
        link = self._link_row(s, pair, conversation_id)
        if link is None:
            raise KeyError(f"no link for conversation {conversation_id} in pair {pair!r}")
        return link

    @staticmethod
    def _delete_children(s: Session, pair: str, conversation_id: str) -> None:
        for t in (sql.comment_links, sql.snapshots):
            _db(s).execute(delete(t).where(t.c.pair == pair,
                                           t.c.conversation_id == conversation_id))

    def _delete_link_rows(self, s: Session, pair: str, conversation_id: str) -> None:
        # Explicit rather than relying on ON DELETE CASCADE, which SQLite only honours
        # on connections that enabled foreign keys.
        self._delete_children(s, pair, conversation_id)
        _db(s).execute(delete(sql.links).where(sql.links.c.pair == pair,
                                               sql.links.c.conversation_id == conversation_id))

    @staticmethod
    def _views(s: Session, pair: str, rows: Sequence[Row[Any]]) -> list[LinkView]:
        if not rows:
            return []
        ids = [r.conversation_id for r in rows]
        comments: dict[str, list[CommentLinkView]] = {}
        for c in _db(s).execute(sql.COMMENT_LINKS_OF, {"pair": pair, "ids": ids}):
            comments.setdefault(c.conversation_id, []).append(CommentLinkView(
                source_side=Side(c.source_side), source_id=c.source_id,
                target_id=c.target_id, fingerprint=c.fingerprint,
                visibility=Visibility(c.visibility)))
        snapshots = {
            cid: Snapshot.model_validate(known_fields(Snapshot, data))
            for cid, data in _db(s).execute(sql.SNAPSHOTS_OF, {"pair": pair, "ids": ids})
        }
        return [LinkView(conversation_id=r.conversation_id, issue_id=r.issue_id,
                         status=r.status, origin=Side(r.origin),
                         comment_links=tuple(comments.get(r.conversation_id, ())),
                         snapshot=snapshots.get(r.conversation_id))
                for r in rows]


def _db(s: Session) -> Connection:
    """The session's connection: Core statements run there without the ORM's per-call
    bookkeeping (the store returns plain values, never ORM objects)."""
    return s.connection()


def known_fields(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """Drop keys a newer or older release stored that the model no longer has: the models
    forbid extra fields, and one removed field must not make every stored link unreadable.
    A changed field type still fails loudly (that needs a migration)."""
    return {k: v for k, v in data.items() if k in model.model_fields}
