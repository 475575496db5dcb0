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
from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from state.core import check_value, row_id
from state.journal import JournalStore
from state.tables import LINK_STATUSES, VISIBILITIES, CommentLink, CursorRow, Link, SnapshotRow
from syncer.models import Cursor
from syncer.plan import CommentLinkView, LinkView, Side, Snapshot

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class NewCommentLink:
    source_side: Side
    source_id: str
    target_id: str
    visibility: str
    fingerprint: str


class StateStore(JournalStore):
    # --- links --------------------------------------------------------------------------

    def get_link(self, pair: str, conversation_id: str) -> LinkView | None:
        with self._tx(write=False) as s:
            row = self._link_row(s, pair, conversation_id)
            return self._views(s, pair, [row])[0] if row else None

    def get_link_by_issue(self, pair: str, issue_id: str) -> LinkView | None:
        with self._tx(write=False) as s:
            row = self._first(s, select(Link).where(Link.pair == pair, Link.issue_id == issue_id))
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
        after = 0
        while True:
            with self._tx(write=False) as s:
                stmt = select(Link).where(Link.pair == pair, col(Link.id) > after)
                if status is not None:
                    stmt = stmt.where(Link.status == status)
                rows = self._all(s, stmt.order_by(col(Link.id)).limit(batch_size))
                views = self._views(s, pair, rows)
            yield from views
            if len(rows) < batch_size:
                return
            after = row_id(rows[-1].id)

    def count_links(self, pair: str, status: str | None = None) -> int:
        with self._tx(write=False) as s:
            stmt = select(func.count()).select_from(Link).where(Link.pair == pair)
            if status is not None:
                stmt = stmt.where(Link.status == status)
            return int(s.exec(stmt).one())

    def create_link(self, pair: str, conversation_id: str, issue_id: str | None,
                    origin: Side) -> None:
        """Record a link; a previously *unlinked* row for the same conversation or issue
        gives way (its comment links are kept only if it pointed at the same issue)."""
        origin = Side(origin)
        now = self._now()
        with self._tx(write=True) as s:
            mine = self._link_row(s, pair, conversation_id)
            if mine is not None and mine.status != "unlinked":
                raise ValueError(f"conversation {conversation_id} is already linked in pair "
                                 f"{pair!r} (issue {mine.issue_id}, {mine.status})")
            try:
                with s.begin_nested():
                    self._claim_issue(s, pair, issue_id, conversation_id)
                    if mine is None:
                        s.add(Link(pair=pair, conversation_id=conversation_id,
                                   issue_id=issue_id, origin=origin.value, status="active",
                                   created_at=now, updated_at=now))
                    else:
                        if mine.issue_id != issue_id or issue_id is None:
                            self._delete_children(s, pair, conversation_id)
                        mine.issue_id, mine.origin, mine.status = issue_id, origin.value, "active"
                        mine.created_at = mine.updated_at = now
                        s.add(mine)
                    s.flush()
            except IntegrityError:  # another process linked it between our check and insert
                raise ValueError(f"conversation {conversation_id} or issue {issue_id} was "
                                 f"linked concurrently in pair {pair!r}") from None

    def set_link_issue(self, pair: str, conversation_id: str, issue_id: str) -> None:
        """Fill in the issue of a link whose create was pending."""
        with self._tx(write=True) as s:
            link = self._require_link(s, pair, conversation_id)
            if link.issue_id == issue_id:
                return
            if link.issue_id is not None:
                raise ValueError(f"conversation {conversation_id} is linked to issue "
                                 f"{link.issue_id}, not re-pointing it to {issue_id}")
            self._claim_issue(s, pair, issue_id, conversation_id)
            link.issue_id, link.updated_at = issue_id, self._now()
            s.add(link)
            s.flush()

    def set_link_status(self, pair: str, conversation_id: str, status: str) -> None:
        check_value(status, LINK_STATUSES, "link status")
        with self._tx(write=True) as s:
            link = self._require_link(s, pair, conversation_id)
            link.status, link.updated_at = status, self._now()
            s.add(link)
            s.flush()

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
        table = CommentLink.__table__  # type: ignore[attr-defined]
        now = self._now()
        with self._tx(write=True) as s:
            self._require_link(s, pair, conversation_id)
            existing = {(side, sid): target for side, sid, target in s.execute(
                select(table.c.source_side, table.c.source_id, table.c.target_id).where(
                    table.c.pair == pair, table.c.conversation_id == conversation_id,
                    table.c.source_id.in_([c.source_id for c in links])))}
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
                s.execute(self._insert(table).on_conflict_do_nothing(index_elements=[
                    "pair", "conversation_id", "source_side", "source_id"]), rows)

    def save_snapshot(self, pair: str, conversation_id: str, snapshot: Snapshot) -> None:
        now = self._now()
        data = snapshot.model_dump(mode="json")
        with self._tx(write=True) as s:
            self._require_link(s, pair, conversation_id)
            s.execute(self._insert(SnapshotRow).values(
                pair=pair, conversation_id=conversation_id, data=data, updated_at=now,
            ).on_conflict_do_update(index_elements=["pair", "conversation_id"],
                                    set_={"data": data, "updated_at": now}))

    def get_cursor(self, pair: str, side: Side) -> Cursor | None:
        with self._tx(write=False) as s:
            row = self._first(s, select(CursorRow).where(
                CursorRow.pair == pair, CursorRow.side == Side(side).value))
            return Cursor.model_validate(known_fields(Cursor, row.data)) if row else None

    def save_cursor(self, pair: str, side: Side, cursor: Cursor) -> None:
        now = self._now()
        data = cursor.model_dump(mode="json")
        with self._tx(write=True) as s:
            s.execute(self._insert(CursorRow).values(
                pair=pair, side=Side(side).value, data=data, updated_at=now,
            ).on_conflict_do_update(index_elements=["pair", "side"],
                                    set_={"data": data, "updated_at": now}))

    # --- helpers ------------------------------------------------------------------------

    def _link_row(self, s: Session, pair: str, conversation_id: str) -> Link | None:
        return self._first(s, select(Link).where(Link.pair == pair,
                                                 Link.conversation_id == conversation_id))

    def _issue_holder(self, s: Session, pair: str, issue_id: str | None,
                      conversation_id: str) -> Link | None:
        """The link of another conversation that holds ``issue_id``, if any."""
        if issue_id is None:
            return None
        return self._first(s, select(Link).where(
            Link.pair == pair, Link.issue_id == issue_id,
            Link.conversation_id != conversation_id))

    def _claim_issue(self, s: Session, pair: str, issue_id: str | None,
                     conversation_id: str) -> None:
        """Make ``issue_id`` free for this conversation: refuse if another live link holds
        it; a stale ``unlinked`` row holding it gives way."""
        other = self._issue_holder(s, pair, issue_id, conversation_id)
        if other is None:
            return
        if other.status != "unlinked":
            raise ValueError(f"issue {issue_id} is already linked in pair {pair!r} "
                             f"(conversation {other.conversation_id}, {other.status})")
        self._delete_link_rows(s, pair, other.conversation_id)

    def _require_link(self, s: Session, pair: str, conversation_id: str) -> Link:
        link = self._link_row(s, pair, conversation_id)
        if link is None:
            raise KeyError(f"no link for conversation {conversation_id} in pair {pair!r}")
        return link

    def _delete_children(self, s: Session, pair: str, conversation_id: str) -> None:
        for table in (CommentLink, SnapshotRow):
            s.execute(delete(table).where(col(table.pair) == pair,
                                          col(table.conversation_id) == conversation_id))

    def _delete_link_rows(self, s: Session, pair: str, conversation_id: str) -> None:
        # Explicit rather than relying on ON DELETE CASCADE, which SQLite only honours
        # on connections that enabled foreign keys.
        self._delete_children(s, pair, conversation_id)
        s.execute(delete(Link).where(col(Link.pair) == pair,
                                     col(Link.conversation_id) == conversation_id))

    def _views(self, s: Session, pair: str, rows: Sequence[Link]) -> list[LinkView]:
        if not rows:
            return []
        ids = [r.conversation_id for r in rows]
        comments: dict[str, list[CommentLinkView]] = {}
        for c in self._all(s, select(CommentLink).where(
                CommentLink.pair == pair, col(CommentLink.conversation_id).in_(ids))
                .order_by(col(CommentLink.id))):
            comments.setdefault(c.conversation_id, []).append(CommentLinkView(
                source_side=Side(c.source_side), source_id=c.source_id,
                target_id=c.target_id, fingerprint=c.fingerprint))
        snapshots = {
            r.conversation_id: Snapshot.model_validate(known_fields(Snapshot, r.data))
            for r in self._all(s, select(SnapshotRow).where(
                SnapshotRow.pair == pair, col(SnapshotRow.conversation_id).in_(ids)))
        }
        return [LinkView(conversation_id=r.conversation_id, issue_id=r.issue_id,
                         status=r.status, origin=Side(r.origin),
                         comment_links=tuple(comments.get(r.conversation_id, ())),
                         snapshot=snapshots.get(r.conversation_id))
                for r in rows]


def known_fields(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """Drop keys a newer or older release stored that the model no longer has: the models
    forbid extra fields, and one removed field must not make every stored link unreadable.
    A changed field type still fails loudly (that needs a migration)."""
    return {k: v for k, v in data.items() if k in model.model_fields}
