"""No credential reaches the operator's screen, the logs or the state database, even when
a server's error body echoes back the credentials it received."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from click.testing import Result
from e2e_support import Handler, sandbox
from leaks import basic, dump_sqlite, found, fragments
from test_cli import LOGIN, Served, invoke

from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.redmine.sim.simulator import RedmineSimulator
from connectors.simfaults import FaultRule
from syncer.app import run_all_once
from syncer.logs import configure_logging

# Chosen so that its Basic form has "+", "/" and "=" padding: the characters that JSON,
# URL and form encodings rewrite.
TOKEN = "rz-echo-io~ctiq71hget7?m"
CREDENTIAL_HEADERS = ("authorization", "x-redmine-api-key")


def echo_credentials(request: httpx.Request) -> bytes:
    """What a careless server or proxy answers: the credential headers it received as JSON
    (slashes escaped, as PHP does), the same as a form, each credential alone (no header
    name before it to give it away), and the Basic password decoded."""
    creds = {k: v for k, v in request.headers.items() if k.lower() in CREDENTIAL_HEADERS}
    lines = [json.dumps({"error": "denied", "headers": creds}).replace("/", "\\/"),
             urlencode(creds)]
    lines += [f"unknown credential {v.split()[-1]}" for v in creds.values()]
    auth = request.headers.get("authorization", "")
    if auth.startswith("Basic "):
        login, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        lines.append(f"invalid token {password} for {login}")
    return "\n".join(lines).encode()


def echo_fault(sim: ReamazeSimulator | RedmineSimulator, status: int,
               **match: object) -> FaultRule:
    rule = sim.faults.add(status, body=b"", times=None, **match)

    def fill(request: httpx.Request) -> None:
        rule.body = echo_credentials(request)

    rule.action = fill
    return rule


def cli(served: Served, *args: str) -> Result:
    """The command with every log line, down to debug, as JSON on stderr."""
    return invoke("--config", str(served.path), "--log-level", "debug", "--log-format", "json",
                  *args, env=served.env)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path, token=TOKEN)
    yield s
    s.close()


def test_echoed_credentials_never_reach_output_logs_or_state(served: Served) -> None:
    """A refused issue create (object failure), a refused feed (pass failure) and a refused
    `check`, each answered with the request's credentials echoed in several encodings:
    neither the token, its Basic form nor the Redmine key is in `run --once`, `status` or
    `check` output, in the JSON log lines, or in any column of any table."""
    secrets = fragments(TOKEN, basic(LOGIN, TOKEN), served.redmine.admin_key)
    slug = served.reamaze.add_conversation("Crash on save", "Saving crashes the app.",
                                           "carol@customer.example", tags=["bug"])

    create = echo_fault(served.redmine, 422, method="POST", path_prefix="/issues.json")
    first = cli(served, "run", "--once")
    assert create.hits == 1 and first.exit_code == 1, first.output  # a failed object
    assert f"failed {slug}: RejectedError: request rejected" in first.stdout
    assert '"event": "operation_failed"' in first.stderr
    served.redmine.faults.clear()

    feed = echo_fault(served.reamaze, 403, path_prefix="/api/v1/conversations")
    second = cli(served, "run", "--once")
    assert feed.hits >= 1 and second.exit_code == 1
    assert "[bugs] ERROR: Re:amaze refused login" in second.stdout
    assert '"event": "pass_failed"' in second.stderr

    status = cli(served, "status")
    assert "last error" in status.stdout and "failing objects: 1" in status.stdout

    served.reamaze.faults.clear()
    echo_fault(served.reamaze, 403)
    echo_fault(served.redmine, 401)
    check = cli(served, "check")
    assert check.exit_code == 1 and check.stdout.count(" FAIL ") == 2, check.output

    for name, result in [("run 1", first), ("run 2", second), ("status", status),
                         ("check", check)]:
        leaked = found(result.stdout + result.stderr, secrets)
        assert not leaked, f"{name} shows {leaked}:\n{result.stdout}\n{result.stderr}"
    dump = dump_sqlite(served.db)
    assert not found(dump, secrets), dump
    # What the servers said is still there to read, only the credentials are masked.
    assert "status=422 body=" in first.stdout and "***" in first.stdout
    assert "status=422" in dump and "Re:amaze refused login" in dump


def test_an_internal_error_quoting_credentials_is_masked(tmp_path: Path) -> None:
    """An unexpected exception (not a SyncError) whose text holds the request's headers:
    the pass result, the log line and the stored run show the error, not the key."""
    sb = sandbox(tmp_path)
    sb.reamaze.add_conversation("Crash on save", "Saving crashes the app.",
                                "carol@customer.example", tags=["bug"])

    def explode(name: str, handler: Handler) -> Handler:
        def handle(request: httpx.Request) -> httpx.Response:
            if name == "redmine" and request.method == "POST":
                raise RuntimeError(f"proxy choked on {dict(request.headers)}")
            return handler(request)
        return handle

    sb.wrap = explode
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    engine = sb.engine()
    try:
        [result] = run_all_once(engine)
    finally:
        engine.close()
    secrets = fragments(sb.redmine.admin_key)
    assert result.error is not None and "internal error: RuntimeError" in result.error
    assert '"event": "pass_crashed"' in stream.getvalue()
    assert not found(result.error, secrets), result.error
    assert not found(stream.getvalue(), secrets), stream.getvalue()
    assert not found(dump_sqlite(tmp_path / "state.db"), secrets)
