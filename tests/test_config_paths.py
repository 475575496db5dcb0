"""Paths in the config are read relative to the config file's folder, never the working
directory: the same file run from anywhere uses the same state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncer.config import load_config, parse_config

BASE = """
[reamaze]
brand = "acme"
login_email = "bot@acme.example"

[trackers.main]
kind = "redmine"
base_url = "https://redmine.acme.example"
project = "web"

[[pairs]]
name = "web"
tracker = "main"
"""


def _load(tmp_path: Path, state: str | None) -> str:
    folder = tmp_path / "conf"
    folder.mkdir(exist_ok=True)
    path = folder / "sync.toml"
    path.write_text((f'[state]\nurl = "{state}"\n' if state is not None else "") + BASE)
    return load_config(path).state.url


@pytest.mark.parametrize("url", ["sqlite:///state.db", "sqlite:///data/state.db",
                                 "sqlite:///../shared/state.db"])
def test_relative_sqlite_path_is_resolved_against_the_config_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """A relative SQLite path names a file under the config's folder, wherever we run."""
    monkeypatch.chdir(tmp_path)
    expected = os.path.normpath(tmp_path / "conf" / url.removeprefix("sqlite:///"))
    assert _load(tmp_path, url) == f"sqlite:///{expected}"


def test_default_state_url_is_next_to_the_config(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a [state] table the default database sits next to the config file."""
    monkeypatch.chdir(tmp_path)
    assert _load(tmp_path, None) == f"sqlite:///{tmp_path / 'conf' / 'reamaze-sync.db'}"


def test_config_given_by_a_relative_path(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`--config conf/sync.toml` still resolves against conf/, made absolute at load time."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "sync.toml").write_text(BASE)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("conf/sync.toml"))
    assert cfg.state.url == f"sqlite:///{tmp_path / 'conf' / 'reamaze-sync.db'}"


@pytest.mark.parametrize("url", ["sqlite:////var/lib/reamaze/state.db", "sqlite://",
                                 "sqlite:///:memory:",
                                 "postgresql+psycopg://sync@db.internal/reamaze_sync"])
def test_absolute_memory_and_server_urls_are_kept(tmp_path: Path, url: str) -> None:
    """Absolute paths, in-memory databases and server URLs are used as written."""
    assert _load(tmp_path, url) == url


def test_parsed_data_without_a_file_keeps_relative_paths() -> None:
    """A config built from data (no file, no folder) leaves the path as written."""
    data = {"reamaze": {"brand": "acme", "login_email": "bot@acme.example"},
            "trackers": {"main": {"kind": "redmine", "base_url": "https://r.example",
                                  "project": "web"}},
            "pairs": [{"name": "p", "tracker": "main"}]}
    assert parse_config(data).state.url == "sqlite:///reamaze-sync.db"
