"""Opening the state read-only, for the commands that only look: nothing is created,
migrated or written, and what is wrong with the database is said plainly."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError
from state_support import *  # noqa: F403  (pytest fixtures)

from state import CURRENT_VERSION, StateMissing, StateOutdated, StateStore
from syncer.errors import ConfigError
from syncer.plan import Side


def _set_version(url: str, version: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": version})
    engine.dispose()


def test_missing_sqlite_file_is_reported_and_not_created(tmp_path: Path) -> None:
    """A read-only open of a file that does not exist raises StateMissing naming the file,
    and the file (and its folder) stay absent."""
    db = tmp_path / "sub" / "state.db"
    with pytest.raises(StateMissing) as info:
        StateStore(f"sqlite:///{db}", read_only=True)
    assert info.value.location == str(db)
    assert not db.parent.exists()
    (tmp_path / "sub").mkdir()
    with pytest.raises(StateMissing):
        StateStore(f"sqlite:///{db}", read_only=True)
    assert list((tmp_path / "sub").iterdir()) == []


def test_relative_sqlite_path_is_named_in_full(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The missing file is named by its absolute path, so the operator sees which folder
    a relative path pointed into."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StateMissing) as info:
        StateStore("sqlite:///rel.db", read_only=True)
    assert info.value.location == str(tmp_path / "rel.db")


def test_in_memory_state_has_nothing_to_read() -> None:
    """An in-memory URL keeps nothing between runs: there is never a state to read."""
    with pytest.raises(StateMissing):
        StateStore("sqlite://", read_only=True)


def test_empty_database_counts_as_missing(db_url: str) -> None:
    """A database without our tables (created by hand, say) is "no state yet", and stays
    without tables."""
    if db_url.startswith("sqlite"):
        Path(db_url.removeprefix("sqlite:///")).touch()
    with pytest.raises(StateMissing):
        StateStore(db_url, read_only=True)
    engine = create_engine(db_url)
    try:
        assert "schema_version" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_current_database_reads_and_refuses_writes(db_url: str) -> None:
    """A read-only store sees the data and cannot change it."""
    writer = StateStore(db_url)
    writer.create_link("p", "conv-1", "1", Side.HELPDESK)
    writer.close()
    reader = StateStore(db_url, read_only=True)
    try:
        assert reader.schema_version == CURRENT_VERSION
        assert reader.get_link("p", "conv-1") is not None
        with pytest.raises(DBAPIError):
            reader.create_link("p", "conv-2", "2", Side.HELPDESK)
    finally:
        reader.close()
    check = StateStore(db_url)
    try:
        assert check.get_link("p", "conv-2") is None
    finally:
        check.close()


def test_older_schema_is_not_migrated(db_url: str) -> None:
    """An older schema raises StateOutdated with both versions and is left as it was."""
    StateStore(db_url).close()
    _set_version(db_url, CURRENT_VERSION - 1)
    with pytest.raises(StateOutdated) as info:
        StateStore(db_url, read_only=True)
    assert (info.value.version, info.value.current) == (CURRENT_VERSION - 1, CURRENT_VERSION)
    assert "run `reamaze-sync run` to upgrade it" in str(info.value)
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM schema_version")).scalar_one() == \
            CURRENT_VERSION - 1
    engine.dispose()


def test_newer_schema_is_refused_read_only_too(db_url: str) -> None:
    """A database of a newer release is refused like the writing open refuses it."""
    StateStore(db_url).close()
    _set_version(db_url, CURRENT_VERSION + 1)
    with pytest.raises(ConfigError, match="upgrade reamaze-sync"):
        StateStore(db_url, read_only=True)


def test_sqlite_read_leaves_no_files_behind(tmp_path: Path) -> None:
    """Reading a WAL database leaves the folder as it found it (no -wal/-shm left over)."""
    db = tmp_path / "state.db"
    StateStore(f"sqlite:///{db}").close()
    before = sorted(p.name for p in tmp_path.iterdir())
    reader = StateStore(f"sqlite:///{db}", read_only=True)
    reader.count_links("p")
    reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
