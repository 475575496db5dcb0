"""GitHub webhooks on the daemon's listener, over real HTTP: a signed delivery makes the
daemon sync that issue at once (no poll is due: the interval is an hour); forged,
replayed and duplicate deliveries sync nothing; polling stays the source of truth."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from github_support import REPO, World
from listener_support import *  # noqa: F403  (pytest fixtures)
from listener_support import Scraper, free_port, wait_until

from connectors.github.webhook import signature
from syncer.app import Engine, run_all_once

SECRET = "whsec-test-0123456789"


def delivery(number: int, *, changed: datetime, secret: str = SECRET,
             delivery_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"action": "created", "repository": {"full_name": REPO},
                       "issue": {"number": number, "updated_at": changed.isoformat()},
                       "comment": {"id": 1, "updated_at": changed.isoformat()}}).encode()
    return body, {"X-Hub-Signature-256": signature(secret.encode(), body),
                  "X-GitHub-Event": "issue_comment",
                  "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
                  "Content-Type": "application/json"}


def test_a_signed_delivery_syncs_its_issue_at_once_and_nothing_else_does(
        tmp_path: Path, daemon_thread: Callable[[Engine], threading.Event]) -> None:
    port = free_port()
    w = World(f"sqlite:///{tmp_path / 'state.db'}", interval_seconds=3600,
              tracker={"webhook_secret_env": "GITHUB_WEBHOOK_SECRET"},
              server={"listen": f"127.0.0.1:{port}"})
    w.environ["GITHUB_WEBHOOK_SECRET"] = SECRET
    slug = w.reamaze.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                      tags=["bug"])
    engine = w.engine()
    [first] = run_all_once(engine)
    assert first.ok and len(w.issues()) == 1
    daemon_thread(engine)
    scrape = Scraper(port)
    wait_until(lambda: scrape.value("reamaze_sync_passes_total", pair="bugs", outcome="ok") >= 1,
               "the daemon's first pass")
    hook = httpx.Client(base_url=f"http://127.0.0.1:{port}")

    def copies(text: str) -> int:
        return sum(text in m.body for m in w.reamaze.conversations[slug].messages)

    def runs(kind: str) -> int:
        with sqlite3.connect(tmp_path / "state.db") as db:
            return int(db.execute("SELECT count(*) FROM runs WHERE pair = 'bugs' AND kind = ?",
                                  (kind,)).fetchone()[0])

    # A forged delivery, and a replay of an old signed one: refused, nothing synced.
    w.gh.sim.clock.advance(5)
    w.gh.person().post(f"/repos/{REPO}/issues/1/comments", json={"body": "Fix is coming."})
    body, headers = delivery(1, changed=datetime.now(UTC), secret="guessed-secret")
    assert hook.post("/webhooks/gh", content=body, headers=headers).status_code == 401
    body, headers = delivery(1, changed=datetime.now(UTC) - timedelta(hours=1))
    assert hook.post("/webhooks/gh", content=body, headers=headers).status_code == 401
    assert hook.post("/webhooks/nope", content=body, headers=headers).status_code == 404
    time.sleep(1.0)  # room for a wrongly started sync to show
    assert copies("Fix is coming") == 0 and runs("webhook") == 0

    # The real delivery: the comment reaches Re:amaze without a poll.
    body, headers = delivery(1, changed=datetime.now(UTC))
    sent = time.monotonic()
    answer = hook.post("/webhooks/gh", content=body, headers=headers)
    assert answer.status_code == 202
    wait_until(lambda: copies("Fix is coming") == 1, "the comment copied to Re:amaze")
    latency = time.monotonic() - sent
    print(f"\nwebhook to Re:amaze copy: {latency:.2f} s")
    assert runs("webhook") == 1

    # The same delivery again (GitHub redelivers with the same id): 200, no second pass.
    again = hook.post("/webhooks/gh", content=body, headers=headers)
    assert again.status_code == 200 and "duplicate" in again.text
    time.sleep(1.0)
    assert runs("webhook") == 1 and copies("Fix is coming") == 1
    hook.close()
