"""The state tables as SQLModel classes, used by the store for queries.

The database schema itself is created by ``state.migrations`` (never by ``create_all``), so
an existing database only ever changes through a numbered migration; a test checks that
the migrated schema matches these classes.

Nothing here is secret: ids, statuses, fingerprints, timestamps and journal payloads
(copied text, never credentials). Keep it that way.

Every row carries ``pair`` so several pairs share one database without seeing each other.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

LINK_STATUSES = ("active", "orphaned", "unlinked")
SIDES = ("helpdesk", "tracker")
VISIBILITIES = ("public", "internal")
INTENT_KINDS = ("create_issue", "add_comment", "update_ticket")
INTENT_STATUSES = ("pending", "done", "failed")
RUN_KINDS = ("poll", "backfill", "webhook", "verify")


def one_of(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out.

    SQLite keeps no offset, so values are normalised to UTC before storing and UTC is
    re-attached on the way out; PostgreSQL's timestamptz round-trips them natively.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state store; use an aware one")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A private registry keeps these tables out of SQLModel's global metadata, which other
# code (or a test) may fill with unrelated tables.
state_registry = registry()


class StateTable(SQLModel, registry=state_registry):
    pass


def _link_fk() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["pair", "conversation_id"],
                                ["links.pair", "links.conversation_id"], ondelete="CASCADE")


class Link(StateTable, table=True):
    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("pair", "conversation_id", name="uq_links_conversation"),
        # NULLs are distinct in both SQLite and PostgreSQL, so any number of links may
        # wait for their issue while each issue id is linked at most once per pair.
        UniqueConstraint("pair", "issue_id", name="uq_links_issue"),
        CheckConstraint(one_of("status", LINK_STATUSES), name="ck_links_status"),
        CheckConstraint(one_of("origin", SIDES), name="ck_links_origin"),
        Index("ix_links_pair_status", "pair", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    pair: str
    conversation_id: str
    issue_id: str | None = None
    origin: str
    status: str = "active"
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class CommentLink(StateTable, table=True):
    # Per-conversation lookups use the leading (pair, conversation_id) columns of the
    # unique index; a separate index on them would only slow every insert.
    __tablename__ = "comment_links"
    __table_args__ = (
        UniqueConstraint("pair", "conversation_id", "source_side", "source_id",
                         name="uq_comment_links_source"),
        CheckConstraint(one_of("source_side", SIDES), name="ck_comment_links_side"),
        CheckConstraint(one_of("visibility", VISIBILITIES), name="ck_comment_links_visibility"),
        _link_fk(),
    )

    id: int | None = Field(default=None, primary_key=True)
    pair: str
    conversation_id: str
    source_side: str
    source_id: str
    target_id: str
    visibility: str
    fingerprint: str
    created_at: datetime = Field(sa_type=UtcDateTime)


class SnapshotRow(StateTable, table=True):
    __tablename__ = "snapshots"
    __table_args__ = (_link_fk(),)

    pair: str = Field(primary_key=True)
    conversation_id: str = Field(primary_key=True)
    data: dict[str, Any] = Field(sa_type=JSON)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class CursorRow(StateTable, table=True):
    __tablename__ = "cursors"
    __table_args__ = (CheckConstraint(one_of("side", SIDES), name="ck_cursors_side"),)

    pair: str = Field(primary_key=True)
    side: str = Field(primary_key=True)
    data: dict[str, Any] = Field(sa_type=JSON)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class SweepRow(StateTable, table=True):
    """Where the anti-entropy sweep of a pair stands (``syncer.sweep``)."""

    __tablename__ = "sweeps"

    pair: str = Field(primary_key=True)
    data: dict[str, Any] = Field(sa_type=JSON)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class IntentRow(StateTable, table=True):
    __tablename__ = "intents"
    __table_args__ = (
        UniqueConstraint("pair", "key", name="uq_intents_key"),
        CheckConstraint(one_of("kind", INTENT_KINDS), name="ck_intents_kind"),
        CheckConstraint(one_of("status", INTENT_STATUSES), name="ck_intents_status"),
        CheckConstraint(one_of("target", SIDES), name="ck_intents_target"),
        Index("ix_intents_pair_status", "pair", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    pair: str
    key: str
    kind: str
    conversation_id: str
    target: str
    payload: dict[str, Any] = Field(sa_type=JSON)
    status: str = "pending"
    result_id: str | None = None
    error: str | None = Field(default=None, sa_type=Text)
    attempts: int = 0
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)
    # How often recovery looked for the key since the last send, and when it last did:
    # a write whose answer never came is only given up after lookups spread over time.
    lookups: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    last_lookup_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class RunRow(StateTable, table=True):
    # kind is checked by the store, not the schema: a new run kind should not need a
    # table rebuild on SQLite.
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_pair", "pair", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    pair: str
    kind: str
    started_at: datetime = Field(sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    counts: dict[str, int] = Field(default_factory=dict, sa_type=JSON)
    error: str | None = Field(default=None, sa_type=Text)
    holder: str | None = None  # host:pid of the process that ran it


class FailureRow(StateTable, table=True):
    __tablename__ = "failures"
    __table_args__ = (
        UniqueConstraint("pair", "side", "object_id", name="uq_failures_object"),
        CheckConstraint(one_of("side", SIDES), name="ck_failures_side"),
    )

    id: int | None = Field(default=None, primary_key=True)
    pair: str
    side: str
    object_id: str
    error: str = Field(sa_type=Text)
    attempts: int = 0
    first_seen: datetime = Field(sa_type=UtcDateTime)
    last_seen: datetime = Field(sa_type=UtcDateTime)
    skipped: bool = False


class LeaseRow(StateTable, table=True):
    """Who works a pair now (PostgreSQL, where processes may be on several hosts): a
    holder that stops renewing loses the pair when ``expires_at`` passes."""

    __tablename__ = "leases"

    pair: str = Field(primary_key=True)
    holder: str
    acquired_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)


class LeakRow(StateTable, table=True):
    """An internal note whose copy came back public and could not be removed: the pair
    sends no internal content until every such copy is gone or private again."""

    __tablename__ = "leaks"
    __table_args__ = (
        UniqueConstraint("pair", "side", "ticket_id", "comment_id", name="uq_leaks_comment"),
        CheckConstraint(one_of("side", SIDES), name="ck_leaks_side"),
    )

    id: int | None = Field(default=None, primary_key=True)
    pair: str
    conversation_id: str
    side: str
    ticket_id: str
    comment_id: str
    detail: str = Field(sa_type=Text)
    detected_at: datetime = Field(sa_type=UtcDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class LearnedRateRow(StateTable, table=True):
    """The request rate a connection learned from 429s (``connectors.learned_rate``),
    keyed by service and credential identity (never the credential itself)."""

    __tablename__ = "learned_rates"

    key: str = Field(primary_key=True)
    service: str
    per_minute: float
    refused_at_per_minute: float | None = None
    updated_at: datetime = Field(sa_type=UtcDateTime)


class RequestBudgetRow(StateTable, table=True):
    """When the next request on a credential may go (``state.budgets``), shared by every
    process using it; keyed by service and credential identity, never the credential."""

    __tablename__ = "request_budgets"

    key: str = Field(primary_key=True)
    next_slot: float
    updated_at: datetime = Field(sa_type=UtcDateTime)
