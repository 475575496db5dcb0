"""Backfill against GitLab at GitLab.com's default budgets, then the idle poll.

``n`` bug-tagged conversations of ``messages`` customer messages each (seeded as in the
Redmine backfill) are linked by one ``backfill`` pass against the GitLab simulator, with
the connection's default budgets (2,000 requests and 60 writes a minute: GitLab.com's
API and note-creation limits) and the simulator enforcing those same limits. Reported:
the requests by kind against the least any engine could send

    list pages (both feeds, once) + 1 message list per conversation + 1 issue create
    + 1 search for an existing issue per conversation (no idempotent creates)
    + 1 note per message + 1 link note per conversation (on Re:amaze)
    + 1 read of the API user (to tell its notes and issues from people's)

the virtual time the backfill took (the write budget is what bounds it), the 429s the
simulator answered (none expected: the budget stays under its limit), and the requests
of an idle poll afterwards.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    STAFF,
    VirtualClock,
    classify_reamaze,
    following,
    quiet_production_logging,
    seed_conversations,
)
from connectors.gitlab.sim import GitLabSimulator
from connectors.gitlab.sim.state import REPORTER, SimClock
from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.app import Engine, build_engine, run_all_once
from syncer.config import parse_config
from syncer.runner import PassResult
from syncer.sandbox import BRAND, LOGIN, MARKER_KEY, REAMAZE_TOKEN, Sandbox

PROJECT = "acme/app"


def GitLabSimClock(clock: VirtualClock) -> SimClock:
    return following(SimClock, clock, timedelta(milliseconds=1))


def classify_gitlab(method: str, path: str, query: dict[str, str]) -> str:
    if path.endswith("/user"):
        return "gl_user"
    if path.endswith("/issues") and method == "POST":
        return "gl_issue_create"
    if path.endswith("/issues") and ("search" in query or "author_id" in query):
        return "gl_duplicate_check"
    if path.endswith("/issues"):
        return "gl_list_issues"
    if path.endswith("/notes") and method == "POST":
        return "gl_note_create"
    if path.endswith("/notes"):
        return "gl_list_notes"
    return f"gl_other {method} {path.rsplit('/', 2)[-2]}"


def _one_pass(engine: Engine, **kw: Any) -> PassResult:
    [result] = run_all_once(engine, **kw)
    if not result.ok or result.failed:
        raise RuntimeError(f"pass failed: {result.error} {result.failed}")
    return result


def run_backfill_gitlab(n: int, messages: int = 5, *, idle_repeats: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-gitlab-") as tmp, \
            quiet_production_logging():
        clock = VirtualClock()
        rz = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN,
                              login_name="Sync Bot", clock=clock.now, sleep=clock.sleep)
        rz.add_staff(STAFF, "Jane Support")
        gl = GitLabSimulator(clock=GitLabSimClock(clock), sleep=clock.sleep)
        bot = gl.add_user("sync-bot", bot=True)
        gl.grant(gl.add_project(PROJECT), bot.username, REPORTER)
        config = parse_config({
            "state": {"url": f"sqlite:///{Path(tmp) / 'state.db'}"},
            "reamaze": {"brand": BRAND, "login_email": LOGIN,
                        "base_url": f"https://{BRAND}.reamaze.io/api/v1",
                        "http": {"requests_per_minute": 100_000, "burst": 1000}},
            "trackers": {"gl": {"kind": "gitlab", "project": PROJECT}},  # default budgets
            "pairs": [{"name": "bugs", "tracker": "gl", "interval_seconds": 60}]})
        # seed_conversations only needs the sandbox's Re:amaze side.
        sb = Sandbox(reamaze=rz, redmine=None, config=config,  # type: ignore[arg-type]
                     environ={})
        seed_conversations(sb, clock, n, messages=messages)
        clock.advance(3600)
        engine = build_engine(config, clock=clock, environ={
            "REAMAZE_API_TOKEN": REAMAZE_TOKEN, "GITLAB_TOKEN": bot.token,
            "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY},
            transports={"reamaze": httpx.MockTransport(rz.handle), "gl": gl.transport()})
        try:
            gl_mark, rz_mark = len(gl.requests), len(rz.requests)
            started = clock.monotonic()
            backfill = _one_pass(engine, kind="backfill", full=True)
            took = clock.monotonic() - started
            calls = Counter(classify_gitlab(r.method, r.path, r.query)
                            for r in gl.requests[gl_mark:])
            calls.update(classify_reamaze(r.method, r.path) for r in rz.requests[rz_mark:])
            throttled = sum(1 for r in gl.requests[gl_mark:] if r.status == 429)
            issues = len(gl.state.issues)
            for _ in range(2):  # settle: the backfill's own writes come back once
                _one_pass(engine)
            clock.advance(3600)
            idle: list[Counter[str]] = []
            for _ in range(idle_repeats):
                gl_mark, rz_mark = len(gl.requests), len(rz.requests)
                _one_pass(engine)
                idle.append(Counter(
                    [classify_gitlab(r.method, r.path, r.query) for r in gl.requests[gl_mark:]]
                    + [classify_reamaze(r.method, r.path) for r in rz.requests[rz_mark:]]))
                clock.advance(60)
        finally:
            engine.close()
    writes = n + n * messages
    return {
        "conversations": n, "messages_per_conversation": messages,
        "issues_created": issues, "counts": dict(sorted(backfill.counts.items())),
        "calls_by_kind": dict(sorted(calls.items())),
        "gitlab_writes": calls["gl_issue_create"] + calls["gl_note_create"],
        "minimum_gitlab_writes": writes,
        "throttled_429": throttled,
        "virtual_seconds": round(took, 1),
        "write_budget_floor_seconds": round((writes - 1) * 60 / (60 * 0.99), 1),
        "idle_calls_by_kind": dict(sorted(idle[-1].items())),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run_backfill_gitlab(20), indent=2))
