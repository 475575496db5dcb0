"""Latency with GitHub webhooks: a comment on a GitHub issue until its copy exists in the
Re:amaze conversation, through the real daemon (``run_daemon``) and its HTTP listener.

The daemon polls once an hour, so every copy measured here was made by the targeted pass
a signed delivery triggered. Deliveries are POSTed over loopback HTTP right after each
comment, as GitHub sends them (HMAC-signed, one delivery id each). Wall time, not the
virtual clock: the path is HTTP, a thread hand-off and the pass itself. The baseline is
what polling alone gives (``latency.py``: on average half a poll interval).
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.harness import median, percentile, quiet_production_logging
from connectors.github.sim import GitHubSimulator
from connectors.github.webhook import signature
from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.app import build_engine, run_all_once
from syncer.config import parse_config
from syncer.daemon import run_daemon
from syncer.sandbox import BRAND, LOGIN, MARKER_KEY, REAMAZE_TOKEN

REPO = "acme/app"
SECRET = "bench-webhook-secret-0001"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_webhook_latency(links: int, changes: int) -> dict[str, Any]:
    # GitHub's secondary limit (80 writes a minute) would pace the setup's backfill; this
    # scenario measures the webhook path, so the simulator lets the writes through.
    gh = GitHubSimulator(secondary_per_minute=1_000_000)
    bot, dev = gh.add_user("sync-bot"), gh.add_user("dev-dana")
    repo = gh.add_repo(REPO)
    gh.grant(repo, bot.login, "write")
    gh.grant(repo, dev.login, "write")
    reamaze = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN,
                               login_name="Sync Bot")
    slugs = [reamaze.add_conversation(f"Bug {n}", "It crashes.", f"c{n}@customer.example",
                                      tags=["bug"]) for n in range(links)]
    port = _free_port()
    fast = {"requests_per_minute": 100_000, "burst": 1000}
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp, \
            quiet_production_logging():
        config = parse_config({
            "state": {"url": f"sqlite:///{Path(tmp) / 'state.db'}"},
            "reamaze": {"brand": BRAND, "login_email": LOGIN, "http": fast,
                        "base_url": f"https://{BRAND}.reamaze.io/api/v1"},
            "trackers": {"gh": {"kind": "github", "repo": REPO, "http": fast,
                                "webhook_secret_env": "GITHUB_WEBHOOK_SECRET"}},
            "pairs": [{"name": "bugs", "tracker": "gh", "interval_seconds": 3600}],
            "server": {"listen": f"127.0.0.1:{port}"}})
        environ = {"REAMAZE_API_TOKEN": REAMAZE_TOKEN, "GITHUB_TOKEN": bot.token,
                   "GITHUB_WEBHOOK_SECRET": SECRET, "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY}
        engine = build_engine(config, environ=environ, transports={
            "reamaze": httpx.MockTransport(reamaze.handle), "gh": gh.transport()})
        [setup] = run_all_once(engine)  # the issues exist before the daemon starts
        if not setup.ok or setup.failed:
            raise RuntimeError(f"setup pass failed: {setup.error or setup.failed}")
        numbers = {slug: int(link.issue_id) for slug in slugs
                   if (link := engine.store.get_link("bugs", slug)) and link.issue_id}
        stop = threading.Event()
        daemon = threading.Thread(target=run_daemon, args=(engine,),
                                  kwargs={"stop_event": stop, "install_signals": False})
        daemon.start()
        hook = httpx.Client(base_url=f"http://127.0.0.1:{port}")
        _wait(lambda: hook.get("/healthz").status_code == 200)
        time.sleep(1.5)  # the daemon's first scheduled pass runs within min(10 s, 360 s)
        latencies: list[float] = []
        try:
            for n in range(changes):
                slug = slugs[n % links]
                token = f"bench-{n}-{uuid.uuid4().hex[:8]}"
                gh.clock.advance(2)  # people do not act in the second the sync read
                gh.add_comment(repo, dev.login, numbers[slug], f"{token} dev note")
                body = json.dumps({
                    "action": "created", "repository": {"full_name": REPO},
                    "issue": {"number": numbers[slug],
                              "updated_at": datetime.now(UTC).isoformat()},
                    "comment": {"id": n, "updated_at": datetime.now(UTC).isoformat()}}).encode()
                sent = time.perf_counter()
                answer = hook.post("/webhooks/gh", content=body, headers={
                    "X-Hub-Signature-256": signature(SECRET.encode(), body),
                    "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": str(uuid.uuid4()),
                    "Content-Type": "application/json"})
                assert answer.status_code == 202, answer.text
                _wait(lambda slug=slug, token=token: any(  # type: ignore[misc]
                    token in m.body for m in reamaze.conversations[slug].messages))
                latencies.append(time.perf_counter() - sent)
        finally:
            hook.close()
            stop.set()
            daemon.join(60)
            engine.close()
    return {"links": links, "changes": changes, "target_s": 2.0,
            "latency_s": {"p50": median(latencies), "p95": percentile(latencies, 95),
                          "max": max(latencies)},
            "polling_mean_s_at_60s": 30.0}


def _wait(condition: Any, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the webhook's change never arrived")
        time.sleep(0.005)

