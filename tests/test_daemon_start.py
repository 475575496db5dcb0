"""The daemon's start check: it refuses to start when no pair can sync (a wrong credential
or setting), starts through an outage, and serves the healthy pairs next to a broken one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from test_cli import Served
from test_e2e_pairs import TwoTrackers, _one_daemon_pass

from syncer.daemon import run_daemon
from syncer.errors import ConfigError

EXE = Path(sys.executable).with_name("reamaze-sync")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def start(served: Served, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(EXE), "--config", str(served.path), "--log-format", "json",
                             "run"], env={**os.environ, **served.env, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    """Wait for the daemon to exit on its own; one still running after ``timeout`` is
    stopped and fails the test."""
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"the daemon kept running: {err[-2000:]}")
    return proc.returncode, err


def events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_a_refused_tracker_key_stops_the_daemon_at_start(served: Served) -> None:
    """`reamaze-sync run` with a Redmine key the server refuses exits 2 at once, naming the
    connection, the cause and the pair; no pass runs and nothing is written."""
    served.reamaze.add_conversation("Crash", "It crashes.", "c@customer.example", tags=["bug"])
    code, err = finish(start(served, REDMINE_API_KEY="e" * 40), timeout=20)
    assert code == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("{")]
    assert lines[0] == "configuration error:"
    assert lines[1].startswith("[trackers.redmine] connection: ")
    assert "rejected the API key" in lines[1]
    assert lines[2].startswith("the daemon cannot start: no pair can sync (bugs)")
    assert "e" * 40 not in err
    assert [e["event"] for e in events(err)].count("daemon_cannot_start") == 1
    assert served.writes() == [] and not served.reamaze.calls("GET", "/api/v1/conversations")


def test_a_refused_reamaze_login_stops_the_daemon_at_start(served: Served) -> None:
    """A Re:amaze token the server refuses: exit 2 naming [reamaze]."""
    code, err = finish(start(served, REAMAZE_API_TOKEN="wrong-token-123456"), timeout=20)
    assert code == 2, err
    assert "\n[reamaze] connection: " in err and "Re:amaze refused login" in err


def test_an_outage_at_start_does_not_stop_the_daemon(served: Served) -> None:
    """Re:amaze answers 503 to the start check and to the first pass: the daemon starts all
    the same (start_check_unavailable), its first pass fails, a later one syncs; SIGTERM
    then stops it with exit 0."""
    served.path.write_text(served.path.read_text().replace(
        "burst = 1000\n", "burst = 1000\nmax_attempts = 1\n", 1))  # [reamaze.http]
    served.path.write_text(served.path.read_text() + "interval_seconds = 5\n")  # the pair
    served.reamaze.faults.add(503, path_prefix="/api/v1/", times=2)
    slug = served.reamaze.add_conversation("Crash", "It crashes.", "c@customer.example",
                                           tags=["bug"])
    proc = start(served)
    try:
        deadline = time.monotonic() + 40
        while not served.redmine.state.issues:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the daemon never synced"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    names = [e["event"] for e in events(err)]
    assert "start_check_unavailable" in names and "daemon_started" in names
    outage = next(e for e in events(err) if e["event"] == "start_check_unavailable")
    assert outage["pair"] == "bugs" and "HTTP 503" in outage["problems"][0]
    assert names.index("start_check_unavailable") < names.index("daemon_started")
    assert "pass_failed" in names  # the first pass met the outage, a later one synced
    assert any("Linked to Redmine" in m.body for m in served.reamaze.conversations[slug].messages)


def _refuse(request: httpx.Request) -> httpx.Response:
    return httpx.Response(401, json={"errors": ["unauthorized"]})


def test_a_broken_pair_is_reported_and_the_others_served(tmp_path: Path) -> None:
    """The "features" tracker refuses its key: the daemon logs pair_broken for it at start
    and syncs "bugs"; "features" keeps failing its passes, recorded for `status`."""
    env = TwoTrackers(tmp_path)
    engine = env.engine(handlers={"product": _refuse})
    with structlog.testing.capture_logs() as logs:
        _, code = _one_daemon_pass(engine)
    assert code == [0]
    [broken] = [e for e in logs if e["event"] == "pair_broken"]
    assert broken["pair"] == "features" and broken["log_level"] == "error"
    assert broken["problems"][0].startswith("[trackers.product] connection: ")
    assert "rejected the API key" in broken["problems"][0]
    assert len(env.bugs.state.issues) == 1
    assert not [e for e in logs if e["event"] == "daemon_cannot_start"]
    engine.close()


def test_no_pair_can_sync_is_a_configuration_error(tmp_path: Path) -> None:
    """Re:amaze refuses the login and every pair needs it: run_daemon raises a
    ConfigError listing the problem once, for both pairs, before scheduling anything."""
    env = TwoTrackers(tmp_path)
    engine = env.engine(handlers={"reamaze": _refuse})
    stop = threading.Event()
    stop.set()  # were it to start, it would stop at once
    with pytest.raises(ConfigError) as raised:
        run_daemon(engine, stop_event=stop, install_signals=False)
    message = raised.value.message
    assert message.count("[reamaze] connection: ") == 1
    assert "no pair can sync (bugs, features)" in message
    assert engine.store.last_run("bugs") is None
    engine.close()
