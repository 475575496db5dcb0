"""Numbered schema migrations: the only way the state schema is created or changed.

``MIGRATIONS[n - 1]`` brings a database from version ``n - 1`` to ``n``; the version lives
in the single-row ``schema_version`` table. Each migration writes its own frozen DDL (never
the current ``state.tables`` classes), so an old database replays exactly the steps a new
one went through. To change the schema: append a function here, then update
``state.tables`` to match (a test compares the two).

All pending migrations run in the caller's single transaction (both SQLite and PostgreSQL
have transactional DDL): a failed step leaves the database at its old version, untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    text,
    update,
)

from syncer.errors import ConfigError

Migration = Callable[[Connection], None]

# Serialises concurrent openers of one PostgreSQL database (daemon and CLI starting at
# once); SQLite gets the same from the caller's BEGIN IMMEDIATE. Any constant will do.
_PG_LOCK_KEY = 0x5EA3A2E


def _schema_version_table(metadata: MetaData) -> Table:
    return Table(
        "schema_version", metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("version", Integer, nullable=False),
        CheckConstraint("id = 1", name="ck_schema_version_single_row"),
    )


_VERSION = _schema_version_table(MetaData())


def _v1_baseline(conn: Connection) -> None:
    """The first released schema (links, comment links, snapshots, cursors, intents, runs,
    failures)."""
    md = MetaData()
    sides = ("helpdesk", "tracker")

    def ts(name: str, nullable: bool = False) -> Column[object]:
        return Column(name, DateTime(timezone=True), nullable=nullable)

    def link_fk() -> ForeignKeyConstraint:
        return ForeignKeyConstraint(["pair", "conversation_id"],
                                    ["links.pair", "links.conversation_id"],
                                    ondelete="CASCADE")

    def check(name: str, column: str, values: tuple[str, ...]) -> CheckConstraint:
        quoted = ", ".join(f"'{v}'" for v in values)
        return CheckConstraint(f"{column} IN ({quoted})", name=name)

    Table(
        "links", md,
        Column("id", Integer, primary_key=True),
        Column("pair", String, nullable=False),
        Column("conversation_id", String, nullable=False),
        Column("issue_id", String, nullable=True),
        Column("origin", String, nullable=False),
        Column("status", String, nullable=False),
        ts("created_at"), ts("updated_at"),
        UniqueConstraint("pair", "conversation_id", name="uq_links_conversation"),
        UniqueConstraint("pair", "issue_id", name="uq_links_issue"),
        check("ck_links_status", "status", ("active", "orphaned", "unlinked")),
        check("ck_links_origin", "origin", sides),
        Index("ix_links_pair_status", "pair", "status", "id"),
    )
    Table(
        "comment_links", md,
        Column("id", Integer, primary_key=True),
        Column("pair", String, nullable=False),
        Column("conversation_id", String, nullable=False),
        Column("source_side", String, nullable=False),
        Column("source_id", String, nullable=False),
        Column("target_id", String, nullable=False),
        Column("visibility", String, nullable=False),
        Column("fingerprint", String, nullable=False),
        ts("created_at"),
        UniqueConstraint("pair", "conversation_id", "source_side", "source_id",
                         name="uq_comment_links_source"),
        check("ck_comment_links_side", "source_side", sides),
        check("ck_comment_links_visibility", "visibility", ("public", "internal")),
        link_fk(),
    )
    Table(
        "snapshots", md,
        Column("pair", String, primary_key=True),
        Column("conversation_id", String, primary_key=True),
        Column("data", JSON, nullable=False),
        ts("updated_at"),
        link_fk(),
    )
    Table(
        "cursors", md,
        Column("pair", String, primary_key=True),
        Column("side", String, primary_key=True),
        Column("data", JSON, nullable=False),
        ts("updated_at"),
        check("ck_cursors_side", "side", sides),
    )
    Table(
        "intents", md,
        Column("id", Integer, primary_key=True),
        Column("pair", String, nullable=False),
        Column("key", String, nullable=False),
        Column("kind", String, nullable=False),
        Column("conversation_id", String, nullable=False),
        Column("target", String, nullable=False),
        Column("payload", JSON, nullable=False),
        Column("status", String, nullable=False),
        Column("result_id", String, nullable=True),
        Column("error", Text, nullable=True),
        Column("attempts", Integer, nullable=False),
        ts("created_at"), ts("updated_at"),
        UniqueConstraint("pair", "key", name="uq_intents_key"),
        check("ck_intents_kind", "kind", ("create_issue", "add_comment", "update_ticket")),
        check("ck_intents_status", "status", ("pending", "done", "failed")),
        check("ck_intents_target", "target", sides),
        Index("ix_intents_pair_status", "pair", "status"),
    )
    Table(
        "runs", md,
        Column("id", Integer, primary_key=True),
        Column("pair", String, nullable=False),
        Column("kind", String, nullable=False),
        ts("started_at"), ts("finished_at", nullable=True),
        Column("counts", JSON, nullable=False),
        Column("error", Text, nullable=True),
        Index("ix_runs_pair", "pair", "id"),
    )
    Table(
        "failures", md,
        Column("id", Integer, primary_key=True),
        Column("pair", String, nullable=False),
        Column("side", String, nullable=False),
        Column("object_id", String, nullable=False),
        Column("error", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        ts("first_seen"), ts("last_seen"),
        Column("skipped", Boolean, nullable=False),
        UniqueConstraint("pair", "side", "object_id", name="uq_failures_object"),
        check("ck_failures_side", "side", sides),
    )
    md.create_all(conn)


def _v2_trust(conn: Connection) -> None:
    """Trust hardening: per-pair leases (one process works a pair at a time), lookups of
    writes whose outcome is unknown, the holder of each run, and copies that leaked."""
    md = MetaData()
    stamp = DateTime(timezone=True).compile(dialect=conn.dialect)
    for ddl in ("ALTER TABLE intents ADD COLUMN lookups INTEGER NOT NULL DEFAULT 0",
                f"ALTER TABLE intents ADD COLUMN last_lookup_at {stamp}",
                "ALTER TABLE runs ADD COLUMN holder VARCHAR"):
        conn.execute(text(ddl))
    Table(
        "leases", md,
        Column("pair", String, primary_key=True),
        Column("holder", String, nullable=False),
        Column("acquired_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "leaks", md,
        Column("id", Integer, primary_key=True),
        Column("pair", String, nullable=False),
        Column("conversation_id", String, nullable=False),
        Column("side", String, nullable=False),
        Column("ticket_id", String, nullable=False),
        Column("comment_id", String, nullable=False),
        Column("detail", Text, nullable=False),
        Column("detected_at", DateTime(timezone=True), nullable=False),
        Column("resolved_at", DateTime(timezone=True), nullable=True),
        UniqueConstraint("pair", "side", "ticket_id", "comment_id", name="uq_leaks_comment"),
        CheckConstraint("side IN ('helpdesk', 'tracker')", name="ck_leaks_side"),
    )
    md.create_all(conn)


def _v3_learned_rates(conn: Connection) -> None:
    """Request rates learned from 429s, per service and credential, so the next process
    (or the CLI next to the daemon) starts from what the last one learned."""
    md = MetaData()
    Table(
        "learned_rates", md,
        Column("key", String, primary_key=True),
        Column("service", String, nullable=False),
        Column("per_minute", Float, nullable=False),
        Column("refused_at_per_minute", Float, nullable=True),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    md.create_all(conn)


def _v4_sweep(conn: Connection) -> None:
    """The anti-entropy sweep's position per pair, so a restart continues where it stopped."""
    md = MetaData()
    Table(
        "sweeps", md,
        Column("pair", String, primary_key=True),
        Column("data", JSON, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    md.create_all(conn)


def _v5_shared_budgets(conn: Connection) -> None:
    """One request budget per credential, shared by every process using it: when the next
    request may go (the "theoretical arrival time" of a GCRA bucket, seconds on the
    processes' common clock)."""
    md = MetaData()
    Table(
        "request_budgets", md,
        Column("key", String, primary_key=True),
        Column("next_slot", Float, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    md.create_all(conn)


MIGRATIONS: tuple[Migration, ...] = (_v1_baseline, _v2_trust, _v3_learned_rates, _v4_sweep,
                                     _v5_shared_budgets)
CURRENT_VERSION = len(MIGRATIONS)


def read_version(conn: Connection) -> int:
    """0 for a database that has never been migrated."""
    _VERSION.create(conn, checkfirst=True)
    found = conn.execute(select(_VERSION.c.version).where(_VERSION.c.id == 1)).scalar()
    return int(found) if found is not None else 0


def migrate(conn: Connection, migrations: Sequence[Migration] = MIGRATIONS) -> tuple[int, int]:
    """Apply the pending ``migrations`` inside the caller's transaction.

    Returns ``(version_before, version_after)``. Refuses a database written by a newer
    release: guessing at a schema we do not know could corrupt the links.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    before = read_version(conn)
    target = len(migrations)
    if before > target:
        raise ConfigError(
            f"state database schema is version {before}, newer than version {target} "
            "that this reamaze-sync supports; upgrade reamaze-sync or use another database")
    for number in range(before + 1, target + 1):
        migrations[number - 1](conn)
    if before == 0:
        conn.execute(_VERSION.insert().values(id=1, version=target))
    elif target != before:
        conn.execute(update(_VERSION).where(_VERSION.c.id == 1).values(version=target))
    return before, target
