"""`reamaze-sync init`: the commented example configuration, written for a new user, and the
steps that follow.

The example ships inside the package (``syncer/config.example.toml``, a copy of the
repository's top-level file that a test keeps equal), so an installed command can write it
without a source checkout.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from importlib import resources
from pathlib import Path

from syncer.config import tracker_models

MARKER_KEY_COMMAND = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"


def example_config() -> str:
    return resources.files("syncer").joinpath("config.example.toml").read_text("utf-8")


def write_example(path: Path, *, force: bool) -> None:
    """Write the example to ``path`` (its folder created if needed). Without ``force`` an
    existing file is kept and ``FileExistsError`` raised; with it the file is replaced in
    one step, so an interrupted write never leaves half a config."""
    text = example_config()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not force:
        with path.open("x", encoding="utf-8") as f:  # "x": never clobbers, even racing
            f.write(text)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the file holds no secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def next_steps(config_option: str) -> list[str]:
    """What to do after ``init``; ``config_option`` is what the commands need to find the
    file (``--config PATH ``, or nothing when they find it by default)."""
    data = tomllib.loads(example_config())
    token = data["reamaze"]["api_token_env"]
    marker = data["sync"]["marker_key_env"]
    models = tracker_models()
    keys = sorted({t[models[t["kind"]].secret_key] for t in data["trackers"].values()})
    cmd = f"reamaze-sync {config_option}"
    exports = [(f"export {token}=...", "the Re:amaze API token of login_email"),
               *((f"export {key}=...", "the tracker user's API key or token") for key in keys)]
    width = max(len(line) for line, _ in exports)
    return [
        "next steps:",
        "  1. edit it: [reamaze] brand and login_email, [trackers.main] base_url and project,",
        "     the pair's [pairs.match] rules, and [state] url (an absolute path for a service)",
        "  2. give it the secrets it names (or NAME_FILE=path of a file holding one, or a",
        "     systemd credential NAME; see the README):",
        *(f"       {line.ljust(width)}  # {what}" for line, what in exports),
        f"       export {marker}={MARKER_KEY_COMMAND}",
        "     make the marker key once and keep it with your other secrets: every host uses",
        "     the same one, and it must outlive the state database",
        "  3. check the config, the credentials and every API:",
        f"       {cmd}check",
        "  4. see what the first sync would do, do it, then keep syncing:",
        f"       {cmd}backfill --dry-run",
        f"       {cmd}backfill",
        f"       {cmd}run",
    ]
