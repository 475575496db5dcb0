"""GitLab webhooks on the daemon's listener, over real HTTP, on the same
``POST /webhooks/NAME`` endpoint as GitHub's: a Note Hook with the right token makes the
daemon sync that issue at once (no poll is due: the interval is an hour); a wrong token,
a replay and a duplicate sync nothing."""

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
from gitlab_support import PROJECT, World
from listener_support import *  # noqa: F403  (pytest fixtures)
from listener_support import Scraper, free_port, wait_until

from syncer.app import Engine, run_all_once

SECRET = "gl-whsec-test-0123456789"


def delivery(iid: int, *, changed: datetime, token: str = SECRET,
             delivery_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    stamp = changed.astimezone(UTC).isoformat().replace("+00:00", "Z")
    body = json.dumps({"object_kind": "note", "event_type": "note",
                       "project": {"path_with_namespace": PROJECT},
                       "object_attributes": {"id": 1, "noteable_type": "Issue",
                                             "action": "create", "updated_at": stamp},
                       "issue": {"iid": iid, "updated_at": stamp}}).encode()
    return body, {"X-Gitlab-Token": token, "X-Gitlab-Event": "Note Hook",
                  "Idempotency-Key": delivery_id or str(uuid.uuid4()),
                  "X-Gitlab-Event-UUID": str(uuid.uuid4()),
                  "Content-Type": "application/json"}


def test_a_delivery_with_the_token_syncs_its_issue_at_once_and_nothing_else_does(
        tmp_path: Path, daemon_thread: Callable[[Engine], threading.Event]) -> None:
    port = free_port()
    w = World(f"sqlite:///{tmp_path / 'state.db'}", interval_seconds=3600,
              tracker={"webhook_secret_env": "GITLAB_WEBHOOK_SECRET"},
              server={"listen": f"127.0.0.1:{port}"})
    w.environ["GITLAB_WEBHOOK_SECRET"] = SECRET
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

    w.gl.sim.clock.advance(5)
    w.gl.sim.add_note(w.gl.project, "dev-dana", 1, "Fix is coming.")
    body, headers = delivery(1, changed=datetime.now(UTC), token="guessed-token")
    assert hook.post("/webhooks/gl", content=body, headers=headers).status_code == 401
    body, headers = delivery(1, changed=datetime.now(UTC) - timedelta(hours=1))
    assert hook.post("/webhooks/gl", content=body, headers=headers).status_code == 401
    time.sleep(1.0)  # room for a wrongly started sync to show
    assert copies("Fix is coming") == 0 and runs("webhook") == 0

    body, headers = delivery(1, changed=datetime.now(UTC))
    sent = time.monotonic()
    answer = hook.post("/webhooks/gl", content=body, headers=headers)
    assert answer.status_code == 202
    wait_until(lambda: copies("Fix is coming") == 1, "the note copied to Re:amaze")
    print(f"\nGitLab webhook to Re:amaze copy: {time.monotonic() - sent:.2f} s")
    assert runs("webhook") == 1

    again = hook.post("/webhooks/gl", content=body, headers=headers)  # GitLab's retry
    assert again.status_code == 200 and "duplicate" in again.text
    time.sleep(1.0)
    assert runs("webhook") == 1 and copies("Fix is coming") == 1
    hook.close()
