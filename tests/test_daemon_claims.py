"""Two daemons on one state database: the first to run a pair keeps it between its passes
while the other leaves it alone (no taking turns, which doubled the API requests), and
gives it up when it stops, so the other takes it over at its next interval. Counted from
each daemon's own /metrics, over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from e2e_support import sandbox
from listener_support import *  # noqa: F403  (pytest fixtures)
from listener_support import Scraper, free_port, wait_until

from state import StateStore
from syncer.app import Engine
from syncer.config import parse_config
from syncer.sandbox import Sandbox, sandbox_config

PASSES = "reamaze_sync_passes_total"


def instance(tmp_path: Path, port: int, shared: Sandbox | None = None) -> Sandbox:
    """A daemon's config on the shared state file and simulators, listening on ``port``."""
    data = sandbox_config(f"sqlite:///{tmp_path / 'state.db'}")
    data["server"] = {"listen": f"127.0.0.1:{port}"}
    if shared is None:
        return sandbox(tmp_path, config=data)
    return Sandbox(reamaze=shared.reamaze, redmine=shared.redmine, config=parse_config(data),
                   environ=shared.environ)


def test_a_second_daemon_leaves_a_held_pair_alone_until_the_first_stops(
        tmp_path: Path, daemon_thread: Callable[[Engine], threading.Event]) -> None:
    """While daemon A lives, daemon B's scheduled passes of A's pair do nothing
    (held_elsewhere) and A does every pass; once A stops, B runs the pair."""
    ports = free_port(), free_port()
    first = instance(tmp_path, ports[0])
    second = instance(tmp_path, ports[1], shared=first)
    first.reamaze.add_conversation("Crash", "It crashes.", "c@customer.example", tags=["bug"])
    a, b = Scraper(ports[0]), Scraper(ports[1])

    stop_a = daemon_thread(first.engine())
    wait_until(lambda: a.value(PASSES, pair="bugs", outcome="ok") >= 1, "A's first pass")
    daemon_thread(second.engine())

    def tries(scraper: Scraper) -> float:
        return sum(scraper.value(PASSES, pair="bugs", outcome=o)
                   for o in ("ok", "failed", "busy", "held_elsewhere"))

    # B's job has come round twice, so it had its chance between two of A's passes.
    wait_until(lambda: tries(b) >= 2, "B's job twice")
    wait_until(lambda: a.value(PASSES, pair="bugs", outcome="ok") >= 2, "A's second pass")
    assert b.value(PASSES, pair="bugs", outcome="held_elsewhere") == tries(b)
    assert a.value("reamaze_sync_pair_held", pair="bugs") == 1
    assert b.value("reamaze_sync_pair_held", pair="bugs") == 0
    assert a.value(PASSES, pair="bugs", outcome="failed") == 0
    assert len(first.redmine.state.issues) == 1

    a_passes = a.value(PASSES, pair="bugs", outcome="ok")
    stop_a.set()  # A gives the pair up as it stops...
    wait_until(lambda: b.value(PASSES, pair="bugs", outcome="ok") >= 1, "B taking over")
    assert b.value("reamaze_sync_pair_held", pair="bugs") == 1
    store = StateStore(first.config.state.url)
    try:
        run = store.last_run("bugs")
        assert run is not None and run.error is None and run.finished
    finally:
        store.close()
    assert a_passes >= 2 and len(first.redmine.state.issues) == 1
