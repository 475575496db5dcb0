"""The first hour of a new user: `--version` and `-h` everywhere, the global options written
before or after the command, the config found through REAMAZE_SYNC_CONFIG, and `init`
writing the commented example configuration with the next steps.

Each feature runs at least once as the installed console script in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import resources
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_cli import Served

from syncer.cli import main
from syncer.config import load_config, tracker_models

EXE = Path(sys.executable).with_name("reamaze-sync")
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"
COMMANDS = sorted(main.commands)
# Each command that reads the config, with the arguments it needs to get that far.
READS_CONFIG = [["run", "--once"], ["backfill"], ["plan"], ["status"], ["check"],
                ["link", "abc", "1", "--pair", "bugs"], ["unlink", "abc", "--pair", "bugs"]]


def child(*args: str, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script, without any REAMAZE_SYNC_CONFIG of the test's own environment."""
    base = {k: v for k, v in os.environ.items() if k != "REAMAZE_SYNC_CONFIG"}
    return subprocess.run([str(EXE), *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False,
                              env={"REAMAZE_SYNC_CONFIG": None, **(env or {})})


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


# -- --version and -h -------------------------------------------------------------------------

def test_version_is_printed_by_the_command() -> None:
    """`reamaze-sync --version` prints the installed package's version and exits 0."""
    result = child("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"reamaze-sync {version('reamaze-sync')}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_version(command: str) -> None:
    """`reamaze-sync CMD --version` answers too, whatever CMD would need."""
    result = invoke(command, "--version")
    assert result.exit_code == 0 and result.stdout == f"reamaze-sync {version('reamaze-sync')}\n"


def test_short_and_long_help_on_the_group() -> None:
    """`-h` and `--help` print the same usage, listing every command."""
    short, long = child("-h"), child("--help")
    assert short.returncode == long.returncode == 0
    assert short.stdout == long.stdout
    assert short.stdout.startswith("Usage: reamaze-sync [OPTIONS] COMMAND [ARGS]...")
    assert all(f"  {name} " in short.stdout for name in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_short_and_long_help_on_every_command(command: str) -> None:
    """`CMD -h` is `CMD --help`: the command's usage, exit 0."""
    short, long = invoke(command, "-h"), invoke(command, "--help")
    assert short.exit_code == long.exit_code == 0, short.output
    assert short.stdout == long.stdout
    assert short.stdout.startswith(f"Usage: main {command} ")


def test_help_of_a_command_from_the_console_script() -> None:
    result = child("run", "-h")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: reamaze-sync run [OPTIONS]")
    assert "--config PATH" in result.stdout and "REAMAZE_SYNC_CONFIG" in result.stdout


# -- global options after the command ---------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_accepts_the_global_options_after_its_name(command: str) -> None:
    """--config, --log-level and --log-format are accepted after every command's name."""
    result = invoke(command, "--config", "x.toml", "--log-level", "error", "--log-format",
                    "json", "--help")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", READS_CONFIG, ids=lambda c: c[0])
def test_config_after_the_command_is_the_one_read(tmp_path: Path, command: list[str]) -> None:
    """`CMD --config PATH` reads PATH, as `--config PATH CMD` does."""
    path = tmp_path / "after.toml"
    result = invoke(*command, "--config", str(path))
    assert result.exit_code == 2
    assert f"[config] file: {path} not found" in result.stderr


def test_the_later_global_option_wins(tmp_path: Path) -> None:
    """Given before and after the command, the one after it counts."""
    before, after = tmp_path / "before.toml", tmp_path / "after.toml"
    result = invoke("--config", str(before), "status", "--config", str(after))
    assert result.exit_code == 2
    assert str(after) in result.stderr and str(before) not in result.stderr


def test_run_once_with_options_after_the_command(served: Served) -> None:
    """`reamaze-sync run --once --log-level debug --log-format json --config PATH` as a
    process: the pass runs on that file, and the debug lines are there."""
    served.reamaze.add_conversation("Crash on save", "Saving crashes the app.",
                                    "carol@customer.example", tags=["bug"])
    result = child("run", "--once", "--log-level", "debug", "--log-format", "json",
                   "--config", str(served.path), env=served.env)
    assert result.returncode == 0, result.stderr
    assert "issues_created=1" in result.stdout
    assert '"level": "debug"' in result.stderr
    quiet = child("run", "--once", "--log-level", "error", "--config", str(served.path),
                  env=served.env)
    assert quiet.returncode == 0 and quiet.stderr == ""


# -- REAMAZE_SYNC_CONFIG ----------------------------------------------------------------------

def test_the_config_path_comes_from_the_environment(served: Served, tmp_path: Path) -> None:
    """Without --config the file REAMAZE_SYNC_CONFIG names is read; --config overrides it;
    without either, ./reamaze-sync.toml."""
    env = {**served.env, "REAMAZE_SYNC_CONFIG": str(served.path)}
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    found = child("check", "--log-level", "error", cwd=cwd, env=env)
    assert found.returncode == 0, found.stderr
    assert "[reamaze] ok:" in found.stdout
    other = tmp_path / "other.toml"
    overridden = child("check", "--config", str(other), cwd=cwd, env=env)
    assert overridden.returncode == 2 and f"[config] file: {other} not found" in overridden.stderr
    default = child("check", cwd=cwd, env={**served.env, "REAMAZE_SYNC_CONFIG": ""})
    assert default.returncode == 2
    assert "[config] file: reamaze-sync.toml not found" in default.stderr
    (cwd / "reamaze-sync.toml").write_text(served.path.read_text())
    local = child("check", "--log-level", "error", cwd=cwd, env=served.env)
    assert local.returncode == 0, local.stderr


def test_a_missing_config_file_says_how_to_get_one(tmp_path: Path) -> None:
    result = invoke("status", "--config", str(tmp_path / "none.toml"))
    assert "REAMAZE_SYNC_CONFIG" in result.stderr and "reamaze-sync init" in result.stderr


# -- init -------------------------------------------------------------------------------------

def test_the_installed_example_is_the_repository_one() -> None:
    """The example `init` writes ships inside the package and is the documented one."""
    shipped = resources.files("syncer").joinpath("config.example.toml").read_text()
    assert shipped == EXAMPLE.read_text()


def test_a_built_wheel_ships_the_example_and_the_license(tmp_path: Path) -> None:
    """The wheel (what `pip install .` installs) holds the example next to the code and
    the license in its metadata."""
    import zipfile

    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "-w", str(tmp_path), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("reamaze_sync-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert zf.read("syncer/config.example.toml").decode() == EXAMPLE.read_text()
        licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert licenses and zf.read(licenses[0]).decode() == (ROOT / "LICENSE").read_text()


def test_init_writes_the_example_and_prints_the_next_steps(tmp_path: Path) -> None:
    """`reamaze-sync init PATH` writes the commented example (a valid configuration) and
    says what to do next: the secrets its env names hold, how to make the marker key,
    `check` on that file."""
    path = tmp_path / "etc" / "sync.toml"
    result = child("init", str(path))
    assert result.returncode == 0, result.stderr
    assert path.read_text() == EXAMPLE.read_text()
    load_config(path)
    out = result.stdout
    assert out.startswith(f"wrote {path}\n")
    data = tomllib.loads(EXAMPLE.read_text())
    names = [data["reamaze"]["api_token_env"], data["sync"]["marker_key_env"],
             *(t[tracker_models()[t["kind"]].secret_key] for t in data["trackers"].values())]
    for name in names:
        assert f"export {name}=" in out
    assert ("export REAMAZE_SYNC_MARKER_KEY=$(python3 -c 'import secrets; "
            "print(secrets.token_hex(32))')") in out
    assert "_FILE" in out
    assert f"       reamaze-sync --config {path} check\n" in out


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    """An existing file is kept (exit 1, naming it) unless `--force` is given."""
    path = tmp_path / "reamaze-sync.toml"
    path.write_text("# mine\n")
    refused = child("init", str(path))
    assert refused.returncode == 1
    assert refused.stderr == (f"error: {path} already exists; pass --force to overwrite "
                              "it\n")
    assert path.read_text() == "# mine\n"
    forced = child("init", "--force", str(path))
    assert forced.returncode == 0, forced.stderr
    assert path.read_text() == EXAMPLE.read_text()


def test_init_without_a_path_writes_where_the_commands_will_read(tmp_path: Path) -> None:
    """No PATH: --config, else REAMAZE_SYNC_CONFIG, else ./reamaze-sync.toml; the next
    steps then need no --config."""
    local = child("init", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    assert (tmp_path / "reamaze-sync.toml").read_text() == EXAMPLE.read_text()
    assert "       reamaze-sync check\n" in local.stdout
    named = tmp_path / "named.toml"
    from_env = child("init", cwd=tmp_path, env={"REAMAZE_SYNC_CONFIG": str(named)})
    assert from_env.returncode == 0 and named.exists()
    assert "       reamaze-sync check\n" in from_env.stdout
    option = tmp_path / "option.toml"
    assert invoke("init", "--config", str(option)).exit_code == 0
    assert option.read_text() == EXAMPLE.read_text()


def test_after_init_check_lists_the_secrets_to_set(tmp_path: Path) -> None:
    """The next command of the first hour: `check` on the new file names every secret."""
    path = tmp_path / "reamaze-sync.toml"
    assert child("init", str(path)).returncode == 0
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REAMAZE_", "REDMINE_")) and k != "CREDENTIALS_DIRECTORY"}
    result = subprocess.run([str(EXE), "check"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "configuration error:",
        "[reamaze] api_token_env: environment variable REAMAZE_API_TOKEN is not set",
        "[sync] marker_key_env: environment variable REAMAZE_SYNC_MARKER_KEY is not set",
        "[trackers.main] api_key_env: environment variable REDMINE_API_KEY is not set "
        "(used by pair 'bugs')"]
