"""`status` and `status --json`: the documented document per pair, and an exit code that
names what is wrong (a failed last run, a stale pair, an open leak)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_cli import Served

from state import StateStore
from syncer.plan import Side

EXE = Path(sys.executable).with_name("reamaze-sync")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def status_json(served: Served) -> tuple[int, dict[str, Any]]:
    """`reamaze-sync status --json` as a real process: its exit code and its document."""
    proc = subprocess.run([str(EXE), "--config", str(served.path), "status", "--json"],
                          env={**os.environ, **served.env}, capture_output=True, text=True,
                          timeout=60)
    assert proc.stderr == "", proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def backdate_runs(served: Served, pair: str, *, ok_ago: float | None = None,
                  failed_ago: float | None = None) -> None:
    """Record runs as if they had happened that many seconds ago (the store's own clock)."""
    for ago, error in ((ok_ago, None), (failed_ago, "Redmine rejected the API key")):
        if ago is None:
            continue
        when = datetime.now(UTC) - timedelta(seconds=ago)
        store = StateStore(f"sqlite:///{served.db}", clock=lambda when=when: when)
        try:
            store.finish_run(store.start_run(pair, "poll"), {"conversations_seen": 1}, error)
        finally:
            store.close()


def test_status_json_is_the_documented_document(served: Served) -> None:
    """After a clean pass, `status --json` (the console script) prints one JSON document:
    links, cursors with their age, the holder, the last run with counts and state, pending
    intents, failing objects, leaks and no problems; exit 0."""
    slug = served.reamaze.add_conversation("Crash on save", "It crashes.",
                                           "carol@customer.example", tags=["bug"])
    assert served.cli("run", "--once").exit_code == 0
    store = StateStore(f"sqlite:///{served.db}")
    store.record_failure("bugs", Side.HELPDESK, "poison-1", "BadPayloadError: not JSON")
    store.close()
    code, doc = status_json(served)
    assert code == 0, doc
    assert doc["format"] == 1 and doc["ok"] is True
    assert doc["state_database"] == str(served.db)
    datetime.fromisoformat(doc["generated_at"])
    [pair] = doc["pairs"]
    assert pair["name"] == "bugs" and pair["tracker"] == "redmine" and pair["enabled"] is True
    assert pair["interval_seconds"] == 60 and pair["stale_after_seconds"] == 180
    assert pair["links"] == {"active": 1, "orphaned": 0}
    for side in ("helpdesk", "tracker"):
        cursor = pair["cursors"][side]
        datetime.fromisoformat(cursor["watermark"])
        assert isinstance(cursor["age_seconds"], int) and cursor["age_seconds"] >= 0
    assert pair["holder"] is None
    last = pair["last_run"]
    assert last["kind"] == "poll" and last["state"] == "ok" and last["error"] is None
    assert last["counts"]["issues_created"] == 1 and last["age_seconds"] >= 0
    assert last["holder"] and ":" in last["holder"]
    assert pair["last_ok_run"]["finished_at"] == last["finished_at"]
    assert pair["last_error"] is None
    assert pair["pending_intents"] == {"pending": 0, "failed": 0}
    [failing] = pair["failing_objects"]
    assert failing["object_id"] == "poison-1" and failing["side"] == "helpdesk"
    assert failing["attempts"] == 1 and failing["auto_retry"] is True
    assert failing["skipped"] is False and "not JSON" in failing["error"]
    assert pair["leaks"] == [] and pair["problems"] == []
    assert slug  # the conversation the run linked


def test_a_failed_last_run_exits_1_and_says_so(served: Served) -> None:
    """A pass refused by the tracker: `status` exits 1 with a PROBLEM line quoting the
    error, the JSON lists the problem; the next clean pass clears it (exit 0)."""
    served.reamaze.add_conversation("Crash", "It crashes.", "c@customer.example", tags=["bug"])
    assert served.cli("run", "--once", env={"REDMINE_API_KEY": "f" * 40}).exit_code == 1
    text = served.cli("status")
    assert text.exit_code == 1
    assert "  PROBLEM: last run failed (" in text.stdout
    assert "rejected the API key" in text.stdout and "f" * 40 not in text.stdout
    code, doc = status_json(served)
    assert code == 1 and doc["ok"] is False
    failed, stale = doc["pairs"][0]["problems"]  # and no pass ever succeeded
    assert failed["kind"] == "failed" and "rejected the API key" in failed["message"]
    assert stale["kind"] == "stale"
    assert doc["pairs"][0]["last_run"]["state"] == "failed"
    assert served.cli("run", "--once").exit_code == 0
    fixed = served.cli("status")
    assert fixed.exit_code == 0, fixed.stdout
    assert "PROBLEM" not in fixed.stdout


def test_a_pair_with_no_recent_success_is_stale(served: Served) -> None:
    """With passes every 60 s, a last success 100 s ago is fine; 200 s ago is stale (over 3
    intervals) and exits 1 saying for how long, next to the failure that followed it."""
    backdate_runs(served, "bugs", ok_ago=100)
    fine = served.cli("status")
    assert fine.exit_code == 0, fine.stdout
    served.db.unlink()
    backdate_runs(served, "bugs", ok_ago=200, failed_ago=5)
    stale = served.cli("status")
    assert stale.exit_code == 1
    assert ("  PROBLEM: stale: no pass has succeeded for 3m (runs every 60s, stale after 3m)"
            in stale.stdout)
    assert "  PROBLEM: last run failed (5s ago): Redmine rejected the API key" in stale.stdout
    code, doc = status_json(served)
    assert code == 1
    assert [p["kind"] for p in doc["pairs"][0]["problems"]] == ["failed", "stale"]


def test_stale_threshold_is_configurable_and_a_never_run_pair_is_stale(
        served: Served) -> None:
    """`stale_after_seconds` replaces the three intervals; an enabled pair that never had a
    successful pass is stale too; a disabled pair never is."""
    served.write_config("stale_after_seconds = 1000\n")
    backdate_runs(served, "bugs", ok_ago=900)
    assert served.cli("status").exit_code == 0
    served.db.unlink()
    backdate_runs(served, "bugs", failed_ago=10)
    never = served.cli("status")
    assert never.exit_code == 1
    assert "  PROBLEM: stale: no pass has succeeded yet (runs every 60s, stale after 16m)" \
        in never.stdout
    assert "  PROBLEM: last run failed" in never.stdout
    served.write_config("enabled = false\n")
    assert served.cli("status").exit_code == 0


def test_status_json_without_a_database_is_still_a_document(served: Served) -> None:
    """Before the first run, `status --json` prints a document with ok false and the
    reason, exits 1 and creates nothing."""
    code, doc = status_json(served)
    assert code == 1 and doc["ok"] is False and doc["pairs"] == []
    assert f"no state database at {served.db}" in doc["error"]
    assert not served.db.exists()
