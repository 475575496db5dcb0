"""Several instances: three `reamaze-sync run` daemons, real processes of the installed
command, on one PostgreSQL state and one config with several pairs, against the
simulators served on loopback. One is killed (SIGKILL) in the middle of a pass.

What must hold, counted from the state's run history and both simulators, never timed:
every pair is synced; no two passes of a pair overlap; each pair stays with the instance
that took it (no taking turns) until that instance dies, and then one survivor takes it
over; nothing is written twice (one issue per conversation, each note once, one link
note each); the create the killed pass left unanswered is recovered, not repeated; and
the survivors give their pairs up when they stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from listener_support import wait_until
from sqlalchemy import text
from state_support import *  # noqa: F403  (pytest fixtures)

from connectors.loopback import LoopbackServer
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.redmine.sim.simulator import RedmineSimulator
from state import StateStore
from state.locks import Holder
from syncer.sandbox import MARKER_KEY

pytestmark = pytest.mark.postgres

TOKEN = "instances-reamaze-token-0123"
LOGIN = "sync-bot@acme.example"
STAFF = "jane@acme.example"
EXE = Path(sys.executable).with_name("reamaze-sync")
PAIRS = 4
CONVERSATIONS = 2  # per pair
NOTES_PER_ISSUE = 2  # the customer's message and Jane's internal note
INSTANCES = 3
LEASE_SECONDS = 2
INTERVAL = 5  # the smallest interval the config allows


@dataclass(frozen=True)
class Run:
    pair: str
    holder: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    counts: dict[str, int]


class Gate:
    """The first issue create waits at the server until the test opens the gate; the pair
    it belongs to is recorded."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.opened = threading.Event()
        self.project = ""

    def block(self, request: httpx.Request) -> None:
        self.project = json.loads(request.content)["issue"]["project_id"]
        self.reached.set()
        self.opened.wait(60)


class Cluster:
    def __init__(self, tmp_path: Path, state_url: str) -> None:
        self.tmp_path = tmp_path
        self.reamaze = ReamazeSimulator(brand="acme", login_email=LOGIN, token=TOKEN)
        self.reamaze.add_staff(STAFF, "Jane Support")
        self.redmine = RedmineSimulator()
        self.projects = {f"p{n}": self.redmine.add_project(f"p{n}").id for n in range(PAIRS)}
        self.subjects: dict[str, list[str]] = {}
        self.slugs: list[str] = []
        for n in range(PAIRS):
            self.subjects[f"pair{n}"] = []
            for c in range(CONVERSATIONS):
                subject = f"Crash {n}.{c}"
                slug = self.reamaze.add_conversation(subject, f"It crashed ({n}.{c}).",
                                                     f"c{n}{c}@customer.example",
                                                     tags=[f"bug{n}"])
                self.reamaze.add_staff_message(slug, f"Reproduced {n}.{c}.", email=STAFF,
                                               visibility=1)
                self.subjects[f"pair{n}"].append(subject)
                self.slugs.append(slug)
        self.servers = [LoopbackServer(self.reamaze.handle).start(),
                        LoopbackServer(self.redmine.handle).start()]
        self.state_url = state_url
        self.config = tmp_path / "reamaze-sync.toml"
        fast = "[{}.http]\nrequests_per_minute = 100000\nburst = 1000\n"
        # Killed mid-pass, the instance may leave other passes with a write journalled but
        # never sent; the server applies whatever reached it at once, so a single lookup
        # by the next holder is proof enough (the default waits ten minutes).
        parts = [f'[state]\nurl = "{state_url}"\nlease_seconds = {LEASE_SECONDS}\n',
                 "[sync]\nunknown_write_lookups = 1\nunknown_write_window_seconds = 0\n",
                 f'[reamaze]\nbrand = "acme"\nlogin_email = "{LOGIN}"\n'
                 f'base_url = "{self.servers[0].url}/api/v1"\n', fast.format("reamaze")]
        for n in range(PAIRS):
            parts += [f'[trackers.t{n}]\nkind = "redmine"\nbase_url = "{self.servers[1].url}"\n'
                      f'project = "p{n}"\n', fast.format(f"trackers.t{n}")]
        for n in range(PAIRS):
            parts.append(f'[[pairs]]\nname = "pair{n}"\ntracker = "t{n}"\n'
                         f'interval_seconds = {INTERVAL}\n[pairs.match]\ntags = ["bug{n}"]\n')
        self.config.write_text("\n".join(parts))
        self.env = {**os.environ, "REAMAZE_API_TOKEN": TOKEN,
                    "REDMINE_API_KEY": self.redmine.admin_key,
                    "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.store = StateStore(state_url)

    def start(self) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        # Files, not pipes: a daemon blocked on a full pipe would stop syncing.
        with open(self.tmp_path / f"out{n}.log", "wb") as out, \
                open(self.tmp_path / f"err{n}.log", "wb") as err:
            proc = subprocess.Popen([str(EXE), "--config", str(self.config), "--log-format",
                                     "json", "run"], env=self.env, stdout=out, stderr=err)
        self.procs.append(proc)
        return proc

    def stderr(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.tmp_path / f"err{self.procs.index(proc)}.log").read_text()

    def close(self) -> None:
        for proc in self.procs:  # left running by a failed test
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.store.close()
        for server in self.servers:
            server.stop()

    def runs(self) -> list[Run]:
        with self.store.engine.begin() as conn:
            rows = conn.execute(text("SELECT pair, holder, started_at, finished_at, error, "
                                     "counts FROM runs ORDER BY id")).all()
        return [Run(r.pair, r.holder, r.started_at, r.finished_at, r.error, r.counts)
                for r in rows]

    def pair_of(self, project: str) -> str:
        return f"pair{project.removeprefix('p')}"

    def assert_synced_once(self) -> None:
        """Per pair one issue per conversation in its project, each note once, and one
        link note per conversation."""
        for n in range(PAIRS):
            issues = [i for i in self.redmine.state.issues.values()
                      if i.project_id == self.projects[f"p{n}"]]
            subjects = Counter(i.subject for i in issues)
            assert sorted(subjects) == sorted(self.subjects[f"pair{n}"]), subjects
            assert set(subjects.values()) == {1}, subjects
            for issue in issues:
                notes = [j.notes for j in self.redmine.state.journals.values()
                         if j.issue_id == issue.id and j.notes]
                assert len(notes) == NOTES_PER_ISSUE and len(set(notes)) == len(notes), notes
        for slug in self.slugs:
            links = [m for m in self.reamaze.conversations[slug].messages
                     if "Linked to Redmine issue" in m.body]
            assert len(links) == 1, (slug, [m.body for m in links])


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, postgres_url)
    yield c
    c.close()


def test_three_instances_share_the_pairs_and_take_over_a_killed_ones(
        cluster: Cluster) -> None:
    """Three daemons on one config: the instance working a pass that has an issue create
    on the wire is killed with SIGKILL; its pairs are taken over, each by one survivor,
    and synced once; no pair ever had two passes at once or changed hands otherwise."""
    gate = Gate()
    cluster.redmine.faults.add(method="POST", path=r"^/issues\.json$", action=gate.block)
    for _ in range(INSTANCES):
        cluster.start()
    assert gate.reached.wait(60), "no issue create reached the server"
    gated = cluster.pair_of(gate.project)
    holder = cluster.store.pair_holder(gated)
    assert holder is not None
    [doomed] = [p for p in cluster.procs if p.pid == holder.pid]
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    killed_at = datetime.now(UTC)
    gate.opened.set()  # the server applies the create whose answer nobody will read
    doomed_label = holder.label
    survivors = [p for p in cluster.procs if p is not doomed]

    def after_kill(pair: str) -> list[Run]:
        return [r for r in cluster.runs() if r.pair == pair and r.started_at > killed_at]

    def settled() -> bool:
        return all(sum(1 for r in after_kill(f"pair{n}") if r.finished_at and not r.error)
                   >= 2 for n in range(PAIRS))

    wait_until(settled, "two successful passes of every pair after the kill")
    for proc in survivors:
        proc.send_signal(signal.SIGTERM)
    for proc in survivors:
        assert proc.wait(60) == 0, cluster.stderr(proc)
        assert "Traceback" not in cluster.stderr(proc)

    runs = cluster.runs()
    labels = {Holder.parse(r.holder, None).pid for r in runs}
    assert labels <= {p.pid for p in cluster.procs}
    before = {r.pair: r.holder for r in runs if r.started_at < killed_at}
    assert before[gated] == doomed_label
    taken_over = {pair for pair, label in before.items() if label == doomed_label}
    for n in range(PAIRS):
        pair = f"pair{n}"
        mine = [r for r in runs if r.pair == pair]
        # Never two passes of a pair at once: each ended before the next began, and only
        # the killed instance left passes unfinished, none of them after the kill.
        for first, second in pairwise(mine):
            end = first.finished_at
            if end is None:
                assert first.holder == doomed_label and first.started_at < killed_at
                end = killed_at
            assert end <= second.started_at, (pair, first, second)
        # One instance per pair until it died, then one survivor.
        hands = [mine[0].holder] + [b.holder for a, b in pairwise(mine) if a.holder != b.holder]
        if pair in taken_over:
            assert len(hands) == 2 and hands[0] == doomed_label, (pair, hands)
        else:
            assert len(hands) == 1 and hands[0] != doomed_label, (pair, hands)
        assert all(r.holder != doomed_label for r in after_kill(pair))
    recovered = [r for r in runs if r.pair == gated and r.counts.get("intents_recovered")]
    assert [r.counts["intents_recovered"] for r in recovered] == [1]
    creates = [r for r in cluster.redmine.requests
               if r.method == "POST" and r.path == "/issues.json"]
    assert len(creates) == PAIRS * CONVERSATIONS
    cluster.assert_synced_once()
    with cluster.store.engine.begin() as conn:  # the survivors gave everything up
        held = conn.execute(text("SELECT pair, holder FROM leases "
                                 "WHERE expires_at > now()")).all()
    assert held == []
