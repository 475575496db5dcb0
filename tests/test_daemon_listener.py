"""The daemon's HTTP listener, scraped over real HTTP while the real daemon syncs against
the simulators: /healthz, /readyz (503 naming the pair while its passes fail, 200 again
once one succeeds) and /metrics moved by the engine's own passes and connections."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from e2e_support import STAFF, Engineer, issue_for, sandbox
from listener_support import *  # noqa: F403  (pytest fixtures)
from listener_support import Scraper, free_port, wait_until

from state import StateStore
from syncer.app import Engine, run_all_once
from syncer.cli import main
from syncer.config import parse_config
from syncer.daemon import run_daemon
from syncer.errors import ConfigError
from syncer.health import readiness
from syncer.listener import Listener, health_app
from syncer.metrics import DaemonMetrics
from syncer.sandbox import Sandbox, sandbox_config

STALE_AFTER = 1.5  # intervals (5 s): a failing pair turns /readyz 503 within 7.5 s


def served_sandbox(tmp_path: Path, port: int) -> Sandbox:
    config = sandbox_config(f"sqlite:///{tmp_path / 'state.db'}")
    config["server"] = {"listen": f"127.0.0.1:{port}", "stale_after_intervals": STALE_AFTER}
    config["reamaze"]["http"]["max_attempts"] = 2  # a 503 fails the pass in about a second
    return sandbox(tmp_path, config=config)


def test_metrics_and_readiness_follow_the_real_passes(
        tmp_path: Path, daemon_thread: Callable[[Engine], threading.Event]) -> None:
    """A linked conversation changes on both sides (and Re:amaze answers one 429): the
    daemon's pass copies both changes and /metrics counts the comments by side, the API
    calls and the 429. Re:amaze then answers 503: passes fail, /readyz turns 503 naming the
    pair, the failed pass and why; once the API is back the next pass copies what changed
    meanwhile, the counters move on and /readyz is 200 again."""
    port = free_port()
    sb = served_sandbox(tmp_path, port)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                       tags=["bug"])
    engine = sb.engine()
    [first] = run_all_once(engine)  # before the daemon: the issue and its first notes
    assert first.ok and first.counts["issues_created"] == 1
    issue = issue_for(engine, slug)
    dev = Engineer(sb)
    sb.reamaze.add_staff_message(slug, "INTERNAL reproduced", email=STAFF, visibility=1)
    dev.note(issue, "Fix is on its way")
    sb.reamaze.faults.add(status=429, retry_after="0", times=1,
                          path_prefix="/api/v1/conversations")

    stop = daemon_thread(engine)
    scrape = Scraper(port)
    wait_until(lambda: scrape.value("reamaze_sync_passes_total", pair="bugs", outcome="ok") >= 1,
               "the daemon's first pass")
    assert scrape.http.get("/healthz").status_code == 200
    seen = scrape.samples()

    def at(name: str, **labels: str) -> float:
        return seen.get((name, frozenset(labels.items())), 0.0)

    ops = "reamaze_sync_operations_total"
    assert at(ops, pair="bugs", kind="comment_to_tracker", outcome="written") == 1
    assert at(ops, pair="bugs", kind="comment_to_helpdesk", outcome="written") == 1
    assert at(ops, pair="bugs", kind="issue", outcome="created") == 0  # made before the daemon
    assert at("reamaze_sync_api_rate_limited_total", service="reamaze") == 1
    assert at("reamaze_sync_api_rate_limited_total", service="redmine") == 0
    requests_before = at("reamaze_sync_api_requests_total", service="reamaze")
    assert requests_before == len(sb.reamaze.requests)  # every request, the 429 too
    assert at("reamaze_sync_api_requests_total", service="redmine") == len(
        sb.redmine.requests) - 1  # all but the engineer's note
    assert at("reamaze_sync_api_budget_per_minute", service="reamaze", budget="requests") \
        == 100_000
    assert at("reamaze_sync_api_budget_used_last_minute", service="reamaze",
              budget="requests") == requests_before
    # The 429 taught a lower rate (down to the floor, a tenth: few requests had gone out).
    learned = "reamaze_sync_api_budget_learned_per_minute"
    assert 10_000 <= at(learned, service="reamaze") < 100_000
    assert at(learned, service="redmine") == 100_000
    assert at("reamaze_sync_pair_held", pair="bugs") == 1
    assert at("reamaze_sync_state_store_up") == 1
    assert at("reamaze_sync_pending_intents", pair="bugs", status="pending") == 0
    assert at("reamaze_sync_failing_objects", pair="bugs") == 0
    assert at("reamaze_sync_pass_duration_seconds_count", pair="bugs") == 1
    for side in ("helpdesk", "tracker"):
        assert ("reamaze_sync_cursor_lag_seconds",
                frozenset({"pair": "bugs", "side": side}.items())) in seen
    status, body = scrape.ready()
    assert status == 200 and body["ready"] is True and body["pairs"]["bugs"]["ready"] is True

    sb.reamaze.faults.add(status=503, times=None)  # Re:amaze is down from now on
    sb.reamaze.add_customer_message(slug, "Any news?")
    dev.note(issue, "Deployed to staging")
    wait_until(lambda: scrape.ready()[0] == 503, "/readyz turning 503")
    status, body = scrape.ready()
    bugs = body["pairs"]["bugs"]
    assert body["ready"] is False and body["state_store"] == {"ok": True}
    assert bugs["ready"] is False and "more than 1.5 times its 5 s interval" in bugs["reason"]
    assert "503" in bugs["last_error"] and "the last pass failed" in bugs["reason"]
    assert scrape.value("reamaze_sync_passes_total", pair="bugs", outcome="failed") >= 1
    assert scrape.http.get("/healthz").status_code == 200  # the process itself is fine

    sb.reamaze.faults.clear()
    wait_until(lambda: scrape.ready()[0] == 200, "/readyz back to 200")
    seen = scrape.samples()
    assert at(ops, pair="bugs", kind="comment_to_tracker", outcome="written") == 2
    assert at(ops, pair="bugs", kind="comment_to_helpdesk", outcome="written") == 2
    assert at("reamaze_sync_api_requests_total", service="reamaze") > requests_before
    stop.set()


def test_readyz_and_metrics_when_the_state_database_is_gone(tmp_path: Path) -> None:
    """With the state database unreachable /readyz is 503 saying so, /metrics still
    answers (state_store_up 0) and /healthz stays 200."""
    folder = tmp_path / "state"
    folder.mkdir()
    data = sandbox_config(f"sqlite:///{folder / 'state.db'}")
    config = parse_config(data)
    store = StateStore(config.state.url)
    metrics = DaemonMetrics(store, config.pairs, {}, lambda _pair: False)
    port = free_port()
    listener = Listener("127.0.0.1", port, health_app(
        metrics.registry, lambda: readiness(store, config.pairs, 3))).start()
    scrape = Scraper(port)
    try:
        status, body = scrape.ready()
        assert status == 503 and body["pairs"]["bugs"]["reason"] == "no successful pass yet"
        shutil.rmtree(folder)
        store.engine.dispose()  # no connection left open on the deleted file
        status, body = scrape.ready()
        assert status == 503 and body["state_store"]["ok"] is False
        assert body["state_store"]["error"].startswith("state database unreachable: ")
        assert scrape.value("reamaze_sync_state_store_up") == 0
        assert scrape.http.get("/healthz").status_code == 200
        assert scrape.http.get("/nothing").status_code == 404
        assert scrape.http.post("/readyz").status_code == 405
    finally:
        listener.stop()
        store.close()


def test_a_listen_address_in_use_stops_the_daemon_before_it_starts(tmp_path: Path) -> None:
    """The daemon refuses to start when it cannot listen: a configuration error naming
    `[server] listen` and the cause, before any pass."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        sb = served_sandbox(tmp_path, taken.getsockname()[1])
        sb.reamaze.add_conversation("Crash", "It crashes.", "c@customer.example", tags=["bug"])
        engine = sb.engine()
        try:
            with pytest.raises(ConfigError, match=r"^\[server\] listen: cannot listen on "
                               r"127\.0\.0\.1:\d+: Address already in use$"):
                run_daemon(engine, stop_event=threading.Event(), install_signals=False)
            assert engine.store.last_run("bugs") is None and not sb.redmine.requests
        finally:
            engine.close()


def test_run_exits_2_naming_the_listen_address_it_cannot_use(tmp_path: Path) -> None:
    """`reamaze-sync run` with a listen address already in use prints the configuration
    error and exits 2 without a pass."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "reamaze-sync.toml"
        config.write_text(f"""
[state]
url = "sqlite:///{tmp_path / 'state.db'}"
[server]
listen = "127.0.0.1:{port}"
[reamaze]
brand = "acme"
login_email = "bot@acme.example"
base_url = "http://127.0.0.1:9/api/v1"
[trackers.main]
kind = "redmine"
base_url = "http://127.0.0.1:9"
project = "web"
[[pairs]]
name = "bugs"
tracker = "main"
""")
        env = {"REAMAZE_API_TOKEN": "t" * 20, "REDMINE_API_KEY": "k" * 40,
               "REAMAZE_SYNC_MARKER_KEY": "m" * 32}
        result = CliRunner().invoke(main, ["--config", str(config), "run"], env=env)
    assert result.exit_code == 2, result.output
    assert (f"configuration error:\n[server] listen: cannot listen on 127.0.0.1:{port}: "
            "Address already in use") in result.output
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert store.last_run("bugs") is None
    finally:
        store.close()


def test_the_listener_stops_with_the_daemon(
        tmp_path: Path, daemon_thread: Callable[[Engine], threading.Event]) -> None:
    """Once the daemon has stopped nothing listens on its port any more."""
    port = free_port()
    sb = served_sandbox(tmp_path, port)
    engine = sb.engine()
    stop = daemon_thread(engine)
    scrape = Scraper(port)
    wait_until(lambda: _answers(scrape), "the listener")
    stop.set()
    wait_until(lambda: not _answers(scrape), "the listener gone")


def _answers(scrape: Scraper) -> bool:
    try:
        return scrape.http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_the_listener_serves_on_ipv6_loopback() -> None:
    """`[::1]:PORT` listens over IPv6."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 on this machine")
        port = probe.getsockname()[1]
    store = StateStore.in_memory()
    metrics = DaemonMetrics(store, [], {}, lambda _pair: False)
    listener = Listener("::1", port, health_app(
        metrics.registry, lambda: readiness(store, [], 3))).start()
    try:
        assert httpx.get(f"http://[::1]:{port}/healthz", timeout=5).text == "ok\n"
        assert httpx.get(f"http://[::1]:{port}/readyz", timeout=5).json()["ready"] is True
    finally:
        listener.stop()
        store.close()
