"""The deployment files in deploy/: the systemd unit and the container file.

Neither systemd nor a container engine runs here, so the files are parsed and checked
against what the package and the example configuration say (the console script, the
secrets' names, the state folder), and `systemd-analyze` (verify, and the offline security
review) runs on the unit when it is installed."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from syncer.config import tracker_models

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "reamaze-sync.service"
CONTAINERFILE = ROOT / "deploy" / "Containerfile"
SCRIPT = next(iter(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]))
EXAMPLE = tomllib.loads((ROOT / "config.example.toml").read_text())
STATE_DIR = "/var/lib/reamaze-sync"
CONFIG_FILE = "/etc/reamaze-sync/reamaze-sync.toml"


def secret_names() -> set[str]:
    """The variables the example configuration names for its secrets."""
    return {EXAMPLE["reamaze"]["api_token_env"], EXAMPLE["sync"]["marker_key_env"],
            *(t[tracker_models()[t["kind"]].secret_key] for t in EXAMPLE["trackers"].values())}


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as systemd reads it: sections of (key, value) in order, keys repeatable,
    `#`/`;` lines ignored, a trailing backslash continuing the line."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("["):
            assert line.endswith("]"), line
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None and "=" in line, f"not key=value in a section: {line!r}"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"{key}: {found}"
    return found[0]


# -- the systemd unit -------------------------------------------------------------------------

def test_unit_runs_the_console_script_as_a_dynamic_user_with_its_state() -> None:
    """ExecStart is the package's console script running `run`; the user is made up by
    systemd; the state lives in the StateDirectory, the config where the unit says."""
    unit = parse_unit(UNIT.read_text())
    assert {"Unit", "Service", "Install"} <= set(unit)
    service = unit["Service"]
    argv = shlex.split(one(service, "ExecStart"))
    assert argv[0].startswith("/") and Path(argv[0]).name == SCRIPT
    assert argv[1:] == ["run"]
    assert one(service, "DynamicUser") == "yes"
    assert one(service, "StateDirectory") == Path(STATE_DIR).name
    assert f"REAMAZE_SYNC_CONFIG={CONFIG_FILE}" in values(service, "Environment")
    assert one(service, "ConfigurationDirectory") == Path(CONFIG_FILE).parent.name
    assert one(unit["Install"], "WantedBy") == "multi-user.target"
    assert "network-online.target" in one(unit["Unit"], "After")


def test_unit_hands_every_secret_of_the_config_as_a_credential() -> None:
    """One LoadCredential= per secret the example config names, under that very name, so
    `read_secret` finds it as $CREDENTIALS_DIRECTORY/NAME; no secret in the environment."""
    service = parse_unit(UNIT.read_text())["Service"]
    creds = dict(v.split(":", 1) for v in values(service, "LoadCredential"))
    assert set(creds) == secret_names()
    assert all(path.startswith("/") for path in creds.values())
    environment = " ".join(values(service, "Environment"))
    assert not any(name in environment for name in secret_names())


def test_unit_restarts_on_failure_but_not_on_a_config_error() -> None:
    """A crash is restarted after a pause; exit 2 (a configuration error) would fail the
    same way every time, so it is not."""
    unit = parse_unit(UNIT.read_text())
    service = unit["Service"]
    assert one(service, "Restart") == "on-failure"
    assert one(service, "RestartSec")
    assert "2" in one(service, "RestartPreventExitStatus").split()
    assert one(unit["Unit"], "StartLimitBurst")


@pytest.mark.parametrize(("key", "value"), [
    ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"), ("ProtectControlGroups", "yes"),
    ("RestrictSUIDSGID", "yes"), ("LockPersonality", "yes"), ("CapabilityBoundingSet", ""),
    ("SystemCallArchitectures", "native"), ("UMask", "0077"),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
])
def test_unit_is_sandboxed(key: str, value: str) -> None:
    assert one(parse_unit(UNIT.read_text())["Service"], key) == value


def _installable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's console script (verify checks that
    the program exists)."""
    exe = Path(sys.executable).with_name(SCRIPT)
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={exe}", UNIT.read_text(), flags=re.M)
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """systemd's own parser accepts every line (no unknown key, no bad value)."""
    result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             str(_installable_unit(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout + result.stderr, result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_security_review_rates_the_unit_ok(tmp_path: Path) -> None:
    """`systemd-analyze security` rates the unit's exposure at most 2.0 ("OK" starts
    below 3; a default service is about 9.6)."""
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20",
                             str(_installable_unit(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the container file -----------------------------------------------------------------------

def parse_containerfile(text: str) -> list[list[tuple[str, str]]]:
    """The build stages, each a list of (INSTRUCTION, arguments), continuations joined."""
    stages: list[list[tuple[str, str]]] = []
    pending = ""
    for raw in text.splitlines():
        line = (pending + " " + raw.strip()).strip() if pending else raw.strip()
        pending = ""
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        assert stages, "an instruction before FROM"
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def test_container_runs_reamaze_sync_run_as_a_user_other_than_root() -> None:
    """The final stage: a slim Python base, the package installed, a numeric non-root USER,
    and `reamaze-sync run` as what the container does."""
    final = parse_containerfile(CONTAINERFILE.read_text())[-1]
    base = final[0][1]
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base), base
    runs = " ".join(a for i, a in final if i == "RUN")
    assert re.search(r"pip install .*reamaze-sync", runs)
    [user] = [a for i, a in final if i == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert [i for i, _ in final].index("USER") > max(
        n for n, (i, _) in enumerate(final) if i == "RUN")
    entry = json.loads(next(a for i, a in final if i == "ENTRYPOINT"))
    cmd = json.loads(next(a for i, a in final if i == "CMD"))
    assert entry + cmd == [SCRIPT, "run"]


def test_container_keeps_config_and_state_in_volumes() -> None:
    """State and config are volumes, the config found through REAMAZE_SYNC_CONFIG, and no
    secret is baked into the image (they come as NAME_FILE at run time)."""
    final = parse_containerfile(CONTAINERFILE.read_text())[-1]
    volumes = {v for i, a in final if i == "VOLUME" for v in json.loads(a)}
    assert {STATE_DIR, str(Path(CONFIG_FILE).parent)} <= volumes
    env = " ".join(a for i, a in final if i == "ENV")
    assert f"REAMAZE_SYNC_CONFIG={CONFIG_FILE}" in env
    assert not any(name in CONTAINERFILE.read_text() for name in secret_names())


def test_container_copies_only_what_exists() -> None:
    """Every COPY from the build context (the repository root) names a file that exists,
    and the package is built from what it copied."""
    stages = parse_containerfile(CONTAINERFILE.read_text())
    for stage in stages:
        for instruction, args in stage:
            if instruction != "COPY" or "--from=" in args:
                continue
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source


def test_readme_explains_running_it_as_a_service() -> None:
    """The README section names both files and the absolute state URL they need."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running it as a service", 1)[1].split("\n## ", 1)[0]
    assert "deploy/reamaze-sync.service" in section and "deploy/Containerfile" in section
    assert f'url = "sqlite:///{STATE_DIR}/reamaze-sync.db"' in section
    assert "LoadCredential" in section and "_FILE" in section
