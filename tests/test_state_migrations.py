"""Schema versioning: fresh databases, re-opening, refusing newer ones, upgrading older ones."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    TypeDecorator,
    inspect,
    text,
)
from sqlalchemy.schema import CheckConstraint, ForeignKeyConstraint, UniqueConstraint
from state_support import *  # noqa: F403  (pytest fixtures)
from structlog.testing import capture_logs

from state import CURRENT_VERSION, StateStore
from state.engine import BeginMode, build_engine, parse_url
from state.migrations import MIGRATIONS, Migration, migrate, read_version
from state.tables import state_registry
from syncer.errors import ConfigError
from syncer.plan import Side


@pytest.fixture
def raw_engine(db_url: str) -> Iterator[Engine]:
    """An engine on the test database configured like the store's, but with no store."""
    engine = build_engine(parse_url(db_url), BeginMode())
    yield engine
    engine.dispose()


def _version(engine: Engine) -> int:
    with engine.begin() as conn:
        return read_version(conn)


def _add_notes_table(conn: Connection) -> None:
    conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
    conn.execute(text("INSERT INTO notes (id, body) VALUES (1, 'from v2')"))


def test_fresh_database_gets_the_current_version(store: StateStore) -> None:
    """Opening an empty database creates every table and records the current version."""
    assert store.schema_version == CURRENT_VERSION == len(MIGRATIONS)
    assert _version(store.engine) == CURRENT_VERSION
    tables = set(inspect(store.engine).get_table_names())
    assert {"schema_version", "links", "comment_links", "snapshots", "cursors", "intents",
            "runs", "failures"} <= tables


def test_reopening_is_a_no_op(db_url: str) -> None:
    """Re-opening a current database runs no migration and keeps the data."""
    first = StateStore(db_url)
    first.create_link("p", "conv-1", "1", Side.HELPDESK)
    first.close()
    with capture_logs() as logs:
        again = StateStore(db_url)
    try:
        assert [e for e in logs if e["event"] == "state_migrated"] == []
        assert again.schema_version == CURRENT_VERSION
        assert again.get_link("p", "conv-1") is not None
    finally:
        again.close()


def test_first_open_logs_the_migration(db_url: str) -> None:
    """Creating the schema is logged once, with the versions and no credentials."""
    # An earlier test may have configured a level above info (`--log-level warning`):
    # capture_logs replaces the processors, not the level filter, so set that too.
    previous = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            s = StateStore(db_url)
    finally:
        structlog.configure(**previous)
    s.close()
    [event] = [e for e in logs if e["event"] == "state_migrated"]
    assert (event["from_version"], event["to_version"]) == (0, CURRENT_VERSION)


def test_newer_database_is_refused(db_url: str) -> None:
    """A database written by a newer release is refused with both versions named."""
    s = StateStore(db_url)
    s.create_link("p", "conv-1", "1", Side.HELPDESK)
    with s.engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": CURRENT_VERSION + 3})
    s.close()
    with pytest.raises(ConfigError) as info:
        StateStore(db_url)
    message = str(info.value)
    assert f"version {CURRENT_VERSION + 3}" in message
    assert f"version {CURRENT_VERSION} " in message
    assert "upgrade reamaze-sync" in message
    assert parse_url(db_url).database is not None
    assert str(parse_url(db_url).database) in message  # which database, for the operator


def test_newer_database_is_left_untouched(raw_engine: Engine) -> None:
    """Refusing a newer database changes nothing in it."""
    with raw_engine.begin() as conn:
        migrate(conn, [*MIGRATIONS, _add_notes_table])
    with pytest.raises(ConfigError), raw_engine.begin() as conn:
        migrate(conn)
    assert _version(raw_engine) == CURRENT_VERSION + 1
    with raw_engine.begin() as conn:
        assert conn.execute(text("SELECT body FROM notes")).scalar_one() == "from v2"


def test_older_database_is_migrated_and_keeps_its_data(db_url: str, raw_engine: Engine) -> None:
    """A database at the current version is upgraded by a newer migration list, data intact."""
    s = StateStore(db_url)
    s.create_link("p", "conv-1", "1", Side.HELPDESK)
    s.add_comment_link("p", "conv-1", Side.HELPDESK, "m1", "j1", "public", "fp")
    s.close()
    calls: list[str] = []

    def v_next(conn: Connection) -> None:
        calls.append("v_next")
        conn.execute(text("ALTER TABLE links ADD COLUMN note VARCHAR(20)"))
        conn.execute(text("UPDATE links SET note = 'migrated'"))

    with raw_engine.begin() as conn:
        assert migrate(conn, [*MIGRATIONS, v_next]) == (CURRENT_VERSION, CURRENT_VERSION + 1)
    with raw_engine.begin() as conn:
        assert migrate(conn, [*MIGRATIONS, v_next]) == (CURRENT_VERSION + 1,) * 2
        rows = conn.execute(text("SELECT conversation_id, note FROM links")).all()
        assert [tuple(r) for r in rows] == [("conv-1", "migrated")]
        assert conn.execute(text("SELECT target_id FROM comment_links")).scalar_one() == "j1"
    assert calls == ["v_next"]
    assert _version(raw_engine) == CURRENT_VERSION + 1


def test_migrations_run_in_order_from_scratch(raw_engine: Engine) -> None:
    """On an empty database every step runs once, in list order, and the version is stamped."""
    calls: list[int] = []

    def step(n: int) -> Migration:
        def run(conn: Connection) -> None:
            calls.append(n)
        return run

    with raw_engine.begin() as conn:
        assert migrate(conn, [step(1), step(2), step(3)]) == (0, 3)
    assert calls == [1, 2, 3]
    assert _version(raw_engine) == 3


def test_failed_migration_leaves_the_old_version(raw_engine: Engine) -> None:
    """A migration that fails midway is rolled back whole, DDL included."""
    with raw_engine.begin() as conn:
        migrate(conn)

    def broken(conn: Connection) -> None:
        _add_notes_table(conn)
        raise RuntimeError("step failed")

    with pytest.raises(RuntimeError), raw_engine.begin() as conn:
        migrate(conn, [*MIGRATIONS, broken])
    assert _version(raw_engine) == CURRENT_VERSION
    assert "notes" not in inspect(raw_engine).get_table_names()


def test_concurrent_first_opens_agree(db_url: str) -> None:
    """Several processes opening a fresh database at once all succeed on one schema."""
    results: list[Any] = []
    start = threading.Barrier(4)

    def opener() -> None:
        start.wait()
        try:
            s = StateStore(db_url)
            results.append(s.schema_version)
            s.close()
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [CURRENT_VERSION] * 4


def _family(column_type: Any) -> str:
    """Coarse type, comparable between a declared type and what the database reflects."""
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    for family in (Boolean, Integer, Float, DateTime, JSON, String):
        if isinstance(column_type, family):
            return family.__name__
    return type(column_type).__name__


def _describe_model(name: str) -> dict[str, Any]:
    table = state_registry.metadata.tables[name]
    return {
        "columns": {c.name: (_family(c.type), bool(c.nullable) and not c.primary_key)
                    for c in table.columns},
        "primary_key": sorted(c.name for c in table.primary_key.columns),
        "unique": sorted(tuple(c.name for c in u.columns) for u in table.constraints
                         if isinstance(u, UniqueConstraint)),
        "indexes": sorted((i.name, tuple(c.name for c in i.columns)) for i in table.indexes),
        "foreign_keys": sorted(
            (tuple(fk.column_keys), fk.referred_table.name,
             tuple(e.column.name for e in fk.elements))
            for fk in table.constraints if isinstance(fk, ForeignKeyConstraint)),
        "checks": sorted(str(c.name) for c in table.constraints
                         if isinstance(c, CheckConstraint)),
    }


def _describe_database(engine: Engine, name: str) -> dict[str, Any]:
    insp = inspect(engine)
    return {
        "columns": {c["name"]: (_family(c["type"]), bool(c["nullable"]))
                    for c in insp.get_columns(name)},
        "primary_key": sorted(insp.get_pk_constraint(name)["constrained_columns"]),
        "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(name)),
        "indexes": sorted((i["name"], tuple(str(c) for c in i["column_names"]))
                          for i in insp.get_indexes(name) if not i["unique"]),
        "foreign_keys": sorted((tuple(fk["constrained_columns"]), fk["referred_table"],
                                tuple(fk["referred_columns"]))
                               for fk in insp.get_foreign_keys(name)),
        "checks": sorted(str(c["name"]) for c in insp.get_check_constraints(name)),
    }


@pytest.mark.parametrize("table", sorted(state_registry.metadata.tables))
def test_migrated_schema_matches_the_table_classes(store: StateStore, table: str) -> None:
    """The schema the migrations build is the one the SQLModel classes describe."""
    assert _describe_database(store.engine, table) == _describe_model(table)


def test_timestamps_are_timezone_aware_columns_on_postgres(store: StateStore) -> None:
    """On PostgreSQL every timestamp column is timestamptz, so no offset is ever lost."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no timestamp type; the store re-attaches UTC instead")
    insp = inspect(store.engine)
    stamps = [(t, c["name"], getattr(c["type"], "timezone", None))
              for t in state_registry.metadata.tables for c in insp.get_columns(t)
              if c["name"].endswith(("_at", "_seen"))]
    assert len(stamps) >= 10
    assert all(tz is True for _, _, tz in stamps), stamps
