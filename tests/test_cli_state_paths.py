"""Where the state lives: relative paths in the config follow the config file, and the
commands that only look (`status`, `plan`, `check`) never create or upgrade a database.

The commands run from a working directory other than the config's folder, against the
simulators on loopback: in-process through click's runner, and once as the installed
console script in a child process, exactly as an operator starts it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from test_cli import LOGIN, Served

from state import StateStore
from syncer.cli import main

EXE = Path(sys.executable).with_name("reamaze-sync")


class Layout:
    """The simulators, a config folder with a config file, and an unrelated working folder."""

    def __init__(self, tmp_path: Path, state: str | None) -> None:
        self.served = Served(tmp_path)
        self.conf = tmp_path / "etc" / "reamaze-sync"
        self.conf.mkdir(parents=True)
        self.cwd = tmp_path / "elsewhere"
        self.cwd.mkdir()
        self.config = self.conf / "sync.toml"
        state_table = f'[state]\nurl = "{state}"\n' if state is not None else ""
        self.config.write_text(f"""{state_table}
[reamaze]
brand = "acme"
login_email = "{LOGIN}"
base_url = "{self.served.rz_server.url}/api/v1"
http = {{ requests_per_minute = 100000, burst = 1000 }}

[trackers.redmine]
kind = "redmine"
base_url = "{self.served.rm_server.url}"
project = "support"
http = {{ requests_per_minute = 100000, burst = 1000 }}

[[pairs]]
name = "bugs"
tracker = "redmine"
""")

    def run(self, *args: str, child: bool = False) -> subprocess.CompletedProcess[str]:
        argv = ["--config", str(self.config), "--log-level", "warning", *args]
        if child:
            return subprocess.run([str(EXE), *argv], cwd=self.cwd,
                                  env={**os.environ, **self.served.env},
                                  capture_output=True, text=True, timeout=120)
        saved_logging, saved_cwd = structlog.get_config(), Path.cwd()
        os.chdir(self.cwd)
        try:
            result = CliRunner().invoke(main, argv, env=self.served.env,
                                        catch_exceptions=False)
        finally:
            os.chdir(saved_cwd)
            structlog.configure(**saved_logging)  # the CLI pointed it at the runner's stderr
        return subprocess.CompletedProcess(argv, result.exit_code, result.stdout,
                                           result.stderr)

    def files(self) -> set[str]:
        """Every file under the test's folder, so a database created anywhere shows up."""
        root = self.conf.parent.parent
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(params=["sqlite:///reamaze-sync.db", None], ids=["relative-url", "default-url"])
def layout(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Layout]:
    lay = Layout(tmp_path, request.param)
    yield lay
    lay.served.close()


def test_relative_state_path_follows_the_config_file(layout: Layout) -> None:
    """`run --once` from another folder keeps its state next to the config file; a second
    run from yet another folder finds the link and creates no second issue."""
    layout.served.reamaze.add_conversation("Crash on save", "It crashes.",
                                           "carol@customer.example", tags=["bug"])
    first = layout.run("run", "--once", child=True)
    assert first.returncode == 0, first.stderr
    db = layout.conf / "reamaze-sync.db"
    assert db.is_file()
    assert not (layout.cwd / "reamaze-sync.db").exists()
    layout.cwd = layout.conf.parent.parent  # the operator moved again
    second = layout.run("run", "--once", child=True)
    assert second.returncode == 0, second.stderr
    assert len(layout.served.redmine.state.issues) == 1
    store = StateStore(f"sqlite:///{db}")
    try:
        assert store.count_links("bugs", "active") == 1
    finally:
        store.close()


def test_status_without_a_database_says_so_and_creates_nothing(layout: Layout) -> None:
    """`status` before any run exits non-zero naming the resolved database path, and no
    file appears, neither next to the config nor in the working folder."""
    before = layout.files()
    result = layout.run("status")
    assert result.returncode == 1, result.stdout + result.stderr
    resolved = layout.conf / "reamaze-sync.db"
    assert f"no state database at {resolved}" in result.stderr
    assert "Traceback" not in result.stderr
    assert layout.files() == before


def test_plan_without_a_database_plans_a_first_run_and_creates_nothing(layout: Layout) -> None:
    """`plan` before any run works from an empty state (everything looks new), says so, and
    leaves no database behind."""
    slug = layout.served.reamaze.add_conversation("Crash on save", "It crashes.",
                                                  "carol@customer.example", tags=["bug"])
    before = layout.files()
    result = layout.run("plan")
    assert result.returncode == 0, result.stderr
    assert f"[bugs] {slug}: create issue 'Crash on save'" in result.stdout
    resolved = layout.conf / "reamaze-sync.db"
    assert f"state database {resolved} does not exist yet" in result.stderr
    assert "everything looks new" in result.stderr
    assert layout.files() == before
    assert layout.served.writes() == []


def test_check_without_a_database_is_fine_and_creates_nothing(layout: Layout) -> None:
    """`check` before any run reports the missing state database as expected for a first
    run (exit 0) and creates no file."""
    before = layout.files()
    result = layout.run("check")
    assert result.returncode == 0, result.stdout + result.stderr
    resolved = layout.conf / "reamaze-sync.db"
    assert (f"[state] ok: {resolved} does not exist yet (fine for a first run: `run` "
            "creates it)") in result.stdout
    assert "[reamaze] ok:" in result.stdout and "[trackers.redmine] ok:" in result.stdout
    assert layout.files() == before


def test_looking_commands_read_the_database_next_to_the_config(layout: Layout) -> None:
    """After a run, `status`, `plan` and `check` from another folder all read the database
    next to the config, and leave the set of files exactly as it was."""
    layout.served.reamaze.add_conversation("Crash on save", "It crashes.",
                                           "carol@customer.example", tags=["bug"])
    assert layout.run("run", "--once").returncode == 0
    before = layout.files()
    status = layout.run("status")
    assert status.returncode == 0, status.stderr
    assert "links=1" in status.stdout
    resolved = layout.conf / "reamaze-sync.db"
    assert f"state database: {resolved}" in status.stdout
    plan = layout.run("plan")
    assert plan.returncode == 0, plan.stderr
    assert "create issue" not in plan.stdout and "does not exist" not in plan.stderr
    check = layout.run("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"[state] ok: {resolved} (schema version " in check.stdout
    assert layout.files() == before


def _downgrade_to_v1(db: Path) -> None:
    """Stand-in for a database written by the previous release: schema version 1."""
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = 1"))
    engine.dispose()


def _version(db: Path) -> int:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        version = int(conn.execute(text("SELECT version FROM schema_version")).scalar_one())
    engine.dispose()
    return version


def test_older_schema_is_reported_not_migrated(tmp_path: Path) -> None:
    """On a database of an older schema, `status` and `plan` ask for `run` to upgrade it and
    `check` notes it; none of them changes the schema version."""
    lay = Layout(tmp_path, "sqlite:///reamaze-sync.db")
    try:
        assert lay.run("run", "--once").returncode == 0
        db = lay.conf / "reamaze-sync.db"
        _downgrade_to_v1(db)
        status = lay.run("status")
        assert status.returncode == 1
        assert "schema version 1" in status.stderr
        assert "run `reamaze-sync run` to upgrade it" in status.stderr
        plan = lay.run("plan")
        assert plan.returncode == 1 and "run `reamaze-sync run` to upgrade it" in plan.stderr
        check = lay.run("check")
        assert check.returncode == 0, check.stdout + check.stderr
        assert f"[state] ok: {db} (schema version 1; the next `run` upgrades it to " \
            in check.stdout
        assert _version(db) == 1
    finally:
        lay.served.close()


def test_unlink_without_a_database_creates_none(layout: Layout) -> None:
    """`unlink` before any run says nothing is synced yet instead of creating a database
    to look in."""
    before = layout.files()
    result = layout.run("unlink", "some-conversation", "--pair", "bugs")
    assert result.returncode == 1
    assert f"no state database at {layout.conf / 'reamaze-sync.db'}" in result.stderr
    assert layout.files() == before
