"""Secrets from files: every secret variable NAME may instead be given as NAME_FILE (a path
to a file holding it) or as a systemd credential ($CREDENTIALS_DIRECTORY/NAME).

Precedence: NAME, then NAME_FILE (both set is an error: which one is meant cannot be told),
then the credential, which the service manager provides and an explicit setting overrides.
A file that cannot be used is a configuration error naming the variable and the path,
never what the file holds.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import Served
from test_config_secrets import ENV, TWO_PAIRS, problems
from test_e2e_secrets import echo_fault

from syncer.config import parse_config, read_secret
from syncer.errors import ConfigError

EXE = Path(sys.executable).with_name("reamaze-sync")
KEY = "rm-key-from-a-file-0123"


def secret_file(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        read_secret("REDMINE_API_KEY", "trackers.main", "api_key_env", env)
    return info.value.message


# -- where a secret comes from ----------------------------------------------------------------

def test_a_file_named_by_name_file_holds_the_secret(tmp_path: Path) -> None:
    """NAME_FILE names a file whose content, without the trailing newline, is the secret."""
    path = secret_file(tmp_path, "key", KEY + "\n")
    secret = read_secret("REDMINE_API_KEY", "trackers.main", "api_key_env",
                         {"REDMINE_API_KEY_FILE": str(path)})
    assert secret.get_secret_value() == KEY


def test_a_systemd_credential_holds_the_secret(tmp_path: Path) -> None:
    """With neither NAME nor NAME_FILE set, $CREDENTIALS_DIRECTORY/NAME is read."""
    secret_file(tmp_path, "REDMINE_API_KEY", KEY + "\n")
    secret = read_secret("REDMINE_API_KEY", "trackers.main", "api_key_env",
                         {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert secret.get_secret_value() == KEY


def test_an_explicit_setting_overrides_the_credential(tmp_path: Path) -> None:
    """NAME, or else NAME_FILE, wins over a credential the service manager provides."""
    creds = tmp_path / "creds"
    creds.mkdir()
    secret_file(creds, "REDMINE_API_KEY", "from-the-credential")
    path = secret_file(tmp_path, "key", "from-the-file")
    base = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert read_secret("REDMINE_API_KEY", "s", "k", {**base, "REDMINE_API_KEY": "from-env"}
                       ).get_secret_value() == "from-env"
    assert read_secret("REDMINE_API_KEY", "s", "k", {**base, "REDMINE_API_KEY_FILE": str(path)}
                       ).get_secret_value() == "from-the-file"


def test_name_and_name_file_together_are_a_config_error(tmp_path: Path) -> None:
    """Two explicit sources for one secret: refused, naming both, showing neither value."""
    path = secret_file(tmp_path, "key", KEY)
    message = error({"REDMINE_API_KEY": "from-env-0123", "REDMINE_API_KEY_FILE": str(path)})
    assert message == ("[trackers.main] api_key_env: both REDMINE_API_KEY and "
                       "REDMINE_API_KEY_FILE are set; set only one")


def test_a_blank_variable_leaves_the_file_in_charge(tmp_path: Path) -> None:
    """A blank NAME counts as unset (as it always did), so NAME_FILE is used."""
    path = secret_file(tmp_path, "key", KEY)
    assert read_secret("REDMINE_API_KEY", "s", "k", {"REDMINE_API_KEY": " ",
                                                     "REDMINE_API_KEY_FILE": str(path)}
                       ).get_secret_value() == KEY


# -- files that cannot be used ----------------------------------------------------------------

def test_a_missing_file_names_the_variable_and_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    assert error({"REDMINE_API_KEY_FILE": str(path)}) == (
        f"[trackers.main] api_key_env: REDMINE_API_KEY_FILE: {path} does not exist")


def test_a_directory_or_a_path_through_a_file_cannot_be_read(tmp_path: Path) -> None:
    """What the OS refuses to read is reported with its reason (root reads any file, so
    a directory and a path through a file stand for the unreadable ones)."""
    assert error({"REDMINE_API_KEY_FILE": str(tmp_path)}) == (
        f"[trackers.main] api_key_env: REDMINE_API_KEY_FILE: {tmp_path} is a directory")
    through = secret_file(tmp_path, "plain", "x") / "key"
    assert error({"REDMINE_API_KEY_FILE": str(through)}) == (
        f"[trackers.main] api_key_env: REDMINE_API_KEY_FILE: {through} cannot be read "
        "(Not a directory)")


@pytest.mark.parametrize("content", ["", "\n", "  \n\t"])
def test_an_empty_file_is_a_config_error(tmp_path: Path, content: str) -> None:
    path = secret_file(tmp_path, "key", content)
    assert error({"REDMINE_API_KEY_FILE": str(path)}) == (
        f"[trackers.main] api_key_env: REDMINE_API_KEY_FILE: {path} is empty")


def test_an_empty_credential_is_a_config_error(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "REDMINE_API_KEY", "")
    assert error({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == (
        f"[trackers.main] api_key_env: credential REDMINE_API_KEY: {path} is empty")


def test_a_missing_credential_says_where_it_was_looked_for(tmp_path: Path) -> None:
    """Under systemd, a LoadCredential= name that does not match shows up as such."""
    assert error({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == (
        "[trackers.main] api_key_env: environment variable REDMINE_API_KEY is not set, nor "
        f"REDMINE_API_KEY_FILE, and there is no credential {tmp_path / 'REDMINE_API_KEY'}")


def test_what_a_bad_file_holds_never_shows(tmp_path: Path) -> None:
    """A file too large to be a secret (a wrong path, say a log) or not UTF-8 is refused
    without quoting it."""
    big = secret_file(tmp_path, "big", "hunter2-" * 10_000)
    message = error({"REDMINE_API_KEY_FILE": str(big)})
    assert message == (f"[trackers.main] api_key_env: REDMINE_API_KEY_FILE: {big} is larger "
                       "than 64 KiB: not a secret")
    binary = secret_file(tmp_path, "bin", b"hunter2\xff\xfe")
    message = error({"REDMINE_API_KEY_FILE": str(binary)})
    assert message.endswith(f"{binary} is not UTF-8 text") and "hunter2" not in message


# -- every command benefits -------------------------------------------------------------------

def test_secret_problems_report_file_errors_with_the_others(tmp_path: Path) -> None:
    """The config check reports an unusable file like a missing variable, all at once, with
    the pair that needs it; secrets from files and credentials satisfy it."""
    empty = secret_file(tmp_path, "empty", "")
    env = {k: v for k, v in ENV.items() if k not in ("REDMINE_API_KEY", "REAMAZE_API_TOKEN")}
    env["REDMINE_API_KEY_FILE"] = str(empty)
    assert problems(TWO_PAIRS, need_secrets=True, environ=env) == [
        "[reamaze] api_token_env: environment variable REAMAZE_API_TOKEN is not set",
        f"[trackers.main] api_key_env: REDMINE_API_KEY_FILE: {empty} is empty "
        "(used by pair 'web')"]
    creds = tmp_path / "creds"
    creds.mkdir()
    secret_file(creds, "REAMAZE_API_TOKEN", "rz-token\n")
    env.update(REDMINE_API_KEY_FILE=str(secret_file(tmp_path, "key", KEY + "\n")),
               CREDENTIALS_DIRECTORY=str(creds))
    parse_config(copy.deepcopy(TWO_PAIRS), need_secrets=True, environ=env)


def test_a_short_marker_key_from_a_file_is_refused(tmp_path: Path) -> None:
    """The marker key's length is checked whatever it was read from."""
    env = {k: v for k, v in ENV.items() if k != "REAMAZE_SYNC_MARKER_KEY"}
    env["REAMAZE_SYNC_MARKER_KEY_FILE"] = str(secret_file(tmp_path, "mk", "short\n"))
    [line] = problems(TWO_PAIRS, need_secrets=True, environ=env)
    assert line.startswith("[sync] marker_key_env: REAMAZE_SYNC_MARKER_KEY must hold at least "
                           "16 characters")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def _child(served: Served, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in served.env and not k.endswith("_FILE") and k != "CREDENTIALS_DIRECTORY"}
    return subprocess.run([str(EXE), "--config", str(served.path), "--log-level", "warning",
                           *args], env={**base, **env}, capture_output=True, text=True,
                          timeout=120)


def test_the_command_reads_secrets_from_files_and_credentials(served: Served,
                                                               tmp_path: Path) -> None:
    """The console script syncs with the Redmine key in a NAME_FILE and the other two as
    systemd credentials; a key the server echoes back is masked like one from the
    environment; a missing file is a configuration error (exit 2)."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    for name in ("REAMAZE_API_TOKEN", "REAMAZE_SYNC_MARKER_KEY"):
        secret_file(creds, name, served.env[name] + "\n")
    key_file = secret_file(tmp_path, "redmine.key", served.env["REDMINE_API_KEY"] + "\n")
    env = {"CREDENTIALS_DIRECTORY": str(creds), "REDMINE_API_KEY_FILE": str(key_file)}
    served.reamaze.add_conversation("Crash on save", "Saving crashes the app.",
                                    "carol@customer.example", tags=["bug"])
    ran = _child(served, env, "run", "--once")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "issues_created=1" in ran.stdout and len(served.redmine.state.issues) == 1

    echo_fault(served.redmine, 401)
    check = _child(served, env, "check")
    assert check.returncode == 1 and "[trackers.redmine] FAIL" in check.stdout, check.stdout
    assert "***" in check.stdout
    assert served.env["REDMINE_API_KEY"] not in check.stdout + check.stderr

    missing = _child(served, {**env, "REDMINE_API_KEY_FILE": str(tmp_path / "gone")}, "check")
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        "configuration error:",
        f"[trackers.redmine] api_key_env: REDMINE_API_KEY_FILE: {tmp_path / 'gone'} does not "
        "exist (used by pair 'bugs')"]
