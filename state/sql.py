"""The statements the engine runs for every object, built once.

Building a SQLAlchemy statement and its cache key costs more than running it on SQLite
(about 0.3 ms against 0.07 ms on the two-core benchmark machine), and the sync engine runs
a dozen per conversation; these are built at import with bound parameters instead.
Rarely used queries (status, pruning, the CLI) stay written where they are used.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, Table, bindparam, case, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from state.tables import (
    CommentLink,
    CursorRow,
    FailureRow,
    IntentRow,
    Link,
    RunRow,
    SnapshotRow,
)


def table(model: Any) -> Table:
    t: Table = model.__table__
    return t


links = table(Link)
comment_links = table(CommentLink)
snapshots = table(SnapshotRow)
cursors = table(CursorRow)
intents = table(IntentRow)
failures = table(FailureRow)
runs = table(RunRow)

LINK_BY_CONVERSATION = select(links).where(links.c.pair == bindparam("pair"),
                                           links.c.conversation_id == bindparam("cid"))
LINK_BY_ISSUE = select(links).where(links.c.pair == bindparam("pair"),
                                    links.c.issue_id == bindparam("issue"))
ISSUE_HOLDER = select(links).where(links.c.pair == bindparam("pair"),
                                   links.c.issue_id == bindparam("issue"),
                                   links.c.conversation_id != bindparam("cid"))
COMMENT_LINKS_OF = (select(comment_links)
                    .where(comment_links.c.pair == bindparam("pair"),
                           comment_links.c.conversation_id.in_(bindparam("ids", expanding=True)))
                    .order_by(comment_links.c.id))
COMMENT_TARGETS = select(comment_links.c.source_side, comment_links.c.source_id,
                         comment_links.c.target_id).where(
    comment_links.c.pair == bindparam("pair"),
    comment_links.c.conversation_id == bindparam("cid"),
    comment_links.c.source_id.in_(bindparam("sources", expanding=True)))
SNAPSHOTS_OF = select(snapshots.c.conversation_id, snapshots.c.data).where(
    snapshots.c.pair == bindparam("pair"),
    snapshots.c.conversation_id.in_(bindparam("ids", expanding=True)))
CURSOR = select(cursors.c.data).where(cursors.c.pair == bindparam("pair"),
                                      cursors.c.side == bindparam("side"))
INTENT_KEYS = select(intents.c.key).where(intents.c.pair == bindparam("pair"),
                                          intents.c.key.in_(bindparam("keys", expanding=True)))
INTENT_BY_KEY = select(intents).where(intents.c.pair == bindparam("pair"),
                                      intents.c.key == bindparam("key"))
FAILURE = select(failures).where(failures.c.pair == bindparam("pair"),
                                 failures.c.side == bindparam("side"),
                                 failures.c.object_id == bindparam("object_id"))
# Update statements may not name a bound parameter after a column they set.
INTENT_DONE = update(intents).where(
    intents.c.pair == bindparam("b_pair"), intents.c.key == bindparam("b_key")).values(
    status="done", result_id=bindparam("b_result"), error=None, updated_at=bindparam("b_now"))
INTENT_FAILED = update(intents).where(
    intents.c.pair == bindparam("b_pair"), intents.c.key.in_(bindparam("b_keys", expanding=True))
).values(status="failed", error=bindparam("b_error"), updated_at=bindparam("b_now"))
LINK_INSERT = insert(links)
LINK_RESET = update(links).where(links.c.id == bindparam("b_id")).values(
    issue_id=bindparam("b_issue"), origin=bindparam("b_origin"), status="active",
    created_at=bindparam("b_now"), updated_at=bindparam("b_now"))
LINK_SET_ISSUE = update(links).where(links.c.id == bindparam("b_id")).values(
    issue_id=bindparam("b_issue"), updated_at=bindparam("b_now"))
LINK_SET_STATUS = update(links).where(links.c.id == bindparam("b_id")).values(
    status=bindparam("b_status"), updated_at=bindparam("b_now"))


@dataclass(frozen=True)
class Upserts:
    """INSERT ... ON CONFLICT, which each dialect builds with its own ``insert``."""

    comment_link: Insert
    intent: Insert
    snapshot: Insert
    cursor: Insert


@functools.cache
def upserts(dialect: str) -> Upserts:
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
    snap = ins(snapshots)
    cur = ins(cursors)
    return Upserts(
        comment_link=ins(comment_links).on_conflict_do_nothing(
            index_elements=["pair", "conversation_id", "source_side", "source_id"]),
        intent=_intent_upsert(ins(intents)),
        snapshot=snap.on_conflict_do_update(
            index_elements=["pair", "conversation_id"],
            set_={"data": snap.excluded.data, "updated_at": snap.excluded.updated_at}),
        cursor=cur.on_conflict_do_update(
            index_elements=["pair", "side"],
            set_={"data": cur.excluded.data, "updated_at": cur.excluded.updated_at}),
    )


def _intent_upsert(stmt: sqlite.Insert | postgresql.Insert) -> Insert:
    """Begin an intent in one statement: a new key is inserted as attempt 1; a known key
    that is not done counts one more attempt and goes back to pending, and a failed one
    takes this attempt's payload (it is known not to have landed, so the new payload is
    what recovery must go by). A done intent is left exactly as it is."""
    row, new = intents.c, stmt.excluded
    done = row.status == "done"
    return stmt.on_conflict_do_update(index_elements=["pair", "key"], set_={
        "attempts": case((done, row.attempts), else_=row.attempts + 1),
        "status": case((done, row.status), else_="pending"),
        "payload": case((row.status == "failed", new.payload), else_=row.payload),
        "updated_at": case((done, row.updated_at), else_=new.updated_at),
        # A new send starts a new wait: lookups count from it.
        "lookups": case((done, row.lookups), else_=0),
        "last_lookup_at": case((done, row.last_lookup_at), else_=None),
    })
