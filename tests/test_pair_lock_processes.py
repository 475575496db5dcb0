"""Two engines on one state database, as real processes of the installed `reamaze-sync`
command against the simulators served on loopback: one pair is worked by one process at
a time, so nothing is written twice, and a busy or dead holder is handled."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from state_support import *  # noqa: F403  (pytest fixtures)

from connectors.loopback import LoopbackServer
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.redmine.sim.simulator import RedmineSimulator
from state import StateStore
from syncer.config import load_config
from syncer.sandbox import MARKER_KEY
from syncer.status import render_status

TOKEN = "lock-reamaze-token-0123"
LOGIN = "sync-bot@acme.example"
STAFF = "jane@acme.example"
EXE = Path(sys.executable).with_name("reamaze-sync")
HOST = socket.gethostname()
CONVERSATIONS = 4
NOTES_PER_ISSUE = 2  # the customer's message and Jane's internal note


class Served:
    """Both simulators on loopback, bug conversations waiting, and a config file."""

    def __init__(self, tmp_path: Path, state_url: str) -> None:
        self.reamaze = ReamazeSimulator(brand="acme", login_email=LOGIN, token=TOKEN)
        self.reamaze.add_staff(STAFF, "Jane Support")
        self.redmine = RedmineSimulator()
        self.redmine.add_project("support")
        self.slugs = []
        for n in range(CONVERSATIONS):
            slug = self.reamaze.add_conversation(f"Crash number {n}", f"It crashed ({n}).",
                                                 f"c{n}@customer.example", tags=["bug"])
            self.reamaze.add_staff_message(slug, f"Reproduced {n}.", email=STAFF, visibility=1)
            self.slugs.append(slug)
        self.servers = [LoopbackServer(self.reamaze.handle).start(),
                        LoopbackServer(self.redmine.handle).start()]
        self.state_url = state_url
        self.path = tmp_path / "reamaze-sync.toml"
        self.path.write_text(f"""
[state]
url = "{state_url}"
lease_seconds = 2  # PostgreSQL: a killed holder's lease is gone soon

[reamaze]
brand = "acme"
login_email = "{LOGIN}"
base_url = "{self.servers[0].url}/api/v1"

[reamaze.http]
requests_per_minute = 100000
burst = 1000

[trackers.redmine]
kind = "redmine"
base_url = "{self.servers[1].url}"
project = "support"

[trackers.redmine.http]
requests_per_minute = 100000
burst = 1000

[[pairs]]
name = "bugs"
tracker = "redmine"
""")
        self.env = {**os.environ, "REAMAZE_API_TOKEN": TOKEN,
                    "REDMINE_API_KEY": self.redmine.admin_key,
                    "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY}
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([str(EXE), "--config", str(self.path), "--log-format", "json",
                                 *args], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.started.append(proc)
        return proc

    def slow_writes(self, seconds: float) -> None:
        """Every write answers late: two unguarded passes would overlap for certain."""
        for method in ("POST", "PUT"):
            self.redmine.faults.add(delay_s=seconds, method=method, times=None)
            self.reamaze.faults.add(delay_s=seconds, method=method, times=None)

    def hold_first_issue_create(self) -> Gate:
        """The first issue create waits at the server until the test opens the gate: its
        process holds the pair mid-pass for as long as the test needs."""
        gate = Gate()
        self.redmine.faults.add(method="POST", path=r"^/issues\.json$", action=gate.block)
        return gate

    def close(self) -> None:
        for proc in self.started:  # left running by a failed test
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for server in self.servers:
            server.stop()

    # -- what both sides hold ----------------------------------------------------------------
    def assert_synced_once(self) -> None:
        """One issue per conversation, each note once, one link note per conversation."""
        subjects = Counter(i.subject for i in self.redmine.state.issues.values())
        assert sorted(subjects) == sorted(f"Crash number {n}" for n in range(CONVERSATIONS))
        assert set(subjects.values()) == {1}, subjects
        for issue_id in self.redmine.state.issues:
            notes = [j.notes for j in self.redmine.state.journals.values()
                     if j.issue_id == issue_id and j.notes]
            assert len(notes) == NOTES_PER_ISSUE and len(set(notes)) == len(notes), notes
        for slug in self.slugs:
            links = [m for m in self.reamaze.conversations[slug].messages
                     if "Linked to Redmine issue" in m.body]
            assert len(links) == 1, (slug, [m.body for m in links])


class Gate:
    def __init__(self) -> None:
        self.reached = threading.Event()
        self.opened = threading.Event()

    def block(self, _request: httpx.Request) -> None:
        self.reached.set()
        self.opened.wait(60)

    def wait_reached(self, proc: subprocess.Popen[str]) -> None:
        while not self.reached.wait(0.05):
            assert proc.poll() is None, proc.communicate()


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def status_of(served: Served) -> str:
    store = StateStore(served.state_url)
    try:
        return render_status(load_config(served.path), store, datetime.now(UTC))
    finally:
        store.close()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30  # a bound against hanging, not a measurement
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path, db_url)
    yield s
    s.close()


COMMANDS = {"run": ("run", "--once"), "backfill": ("backfill",)}


@pytest.mark.parametrize(("db_url", "second"), [
    ("sqlite", "run"), pytest.param("postgres", "backfill", marks=pytest.mark.postgres)],
    indirect=["db_url"])
def test_two_processes_on_one_pair_write_everything_once(served: Served, second: str) -> None:
    """`run --once` and a second `run --once` or a `backfill` started together on one
    state database: one waits for the other, both succeed, and every issue, note and link
    note exists exactly once."""
    served.slow_writes(0.05)
    first_proc = served.start(*COMMANDS["run"])
    second_proc = served.start(*COMMANDS[second])
    results = [finish(first_proc), finish(second_proc)]
    creates = [r for r in served.redmine.requests
               if r.method == "POST" and r.path == "/issues.json"]
    assert len(creates) == CONVERSATIONS
    served.assert_synced_once()
    for code, out, err in results:
        assert code == 0, (out, err)
        assert "Traceback" not in err


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_busy_pair_makes_the_other_command_exit_naming_the_holder(served: Served) -> None:
    """While one process works the pair, `run --once --wait 0` and `backfill --wait 0` exit
    1 naming the pair and its holder (host, pid, since when) and status shows the pass
    running; the holder then finishes its pass alone."""
    gate = served.hold_first_issue_create()
    holder = served.start("run", "--once")
    try:
        gate.wait_reached(holder)
        probes = [served.start(*command) for command in (
            ("run", "--once", "--wait", "0"), ("backfill", "--wait", "0"))]
        for code, out, err in [finish(p) for p in probes]:
            assert code == 1, (out, err)
            assert (f"[bugs] ERROR: pair 'bugs' is busy: worked by {HOST} pid {holder.pid} "
                    "since 20") in out
            assert "gave up after waiting 0 s" in out
        status = status_of(served)
        assert f"worked by {HOST} pid {holder.pid}" in status
        assert "last run: poll " in status and " running;" in status
    finally:
        gate.opened.set()
    code, out, err = finish(holder)
    assert code == 0, (out, err)
    served.assert_synced_once()


def test_a_killed_holder_gives_the_pair_up(served: Served) -> None:
    """A holder killed with SIGKILL mid-pass (its issue create applied, the answer never
    read) holds nothing: on SQLite the next process gets the pair at once, on PostgreSQL
    once the dead holder's lease has expired (and SQLite's status calls the dead pass
    interrupted at once). The next pass recovers the orphaned create instead of
    repeating it."""
    gate = served.hold_first_issue_create()
    doomed = served.start("run", "--once")
    gate.wait_reached(doomed)
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate()
    gate.opened.set()  # the server applies the create its client will never hear about
    wait_until(lambda: any(r.method == "POST" and r.path == "/issues.json"
                           for r in served.redmine.requests), "the orphaned create landed")
    store = StateStore(served.state_url)
    try:
        run = store.last_run("bugs")
        assert run is not None and not run.finished and run.holder == f"{HOST}:{doomed.pid}"
        held = store.pair_holder("bugs")
    finally:
        store.close()
    postgres = served.state_url.startswith("postgresql")
    if postgres:  # the lease outlives its holder until it expires
        assert held is not None and held.label == f"{HOST}:{doomed.pid}"
    else:
        assert held is None
        assert " interrupted;" in status_of(served)
    wait = "60" if postgres else "0"
    code, out, err = finish(served.start("run", "--once", "--wait", wait))
    assert code == 0, (out, err)
    assert "intents_recovered=1" in out
    served.assert_synced_once()
