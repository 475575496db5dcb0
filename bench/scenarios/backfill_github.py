"""Backfill against GitHub at the connection's default budgets, under GitHub's limits.

``n`` bug-tagged conversations of ``messages`` customer messages each are linked by one
``backfill`` pass against the GitHub simulator, which enforces GitHub's primary limit
(5,000 requests an hour) and its secondary limit on content creation (80 a minute; GitHub
also documents 500 an hour, which the default write budget of 8 a minute keeps under).
Reported: GitHub requests by kind against the least any engine could send (one issue
create and one comment per message for each conversation, plus the duplicate check a
create without idempotency keys needs), the 403/429 rate-limit answers (none expected),
the virtual time the backfill took against the write budget's floor, and the requests of
an idle poll afterwards (the issue listing and the comment listing).
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
from bench.scenarios.backfill_gitlab import _one_pass
from connectors.github.sim import GitHubSimulator
from connectors.github.sim.state import SimClock
from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.app import build_engine
from syncer.config import parse_config
from syncer.sandbox import BRAND, LOGIN, MARKER_KEY, REAMAZE_TOKEN, Sandbox

REPO = "acme/app"


def GitHubSimClock(clock: VirtualClock) -> SimClock:
    return following(SimClock, clock, timedelta(milliseconds=1))


def classify_github(method: str, path: str, params: dict[str, str]) -> str:
    if path == "/user":
        return "gh_user"
    if path.endswith("/issues") and method == "POST":
        return "gh_issue_create"
    if (path.endswith("/issues") and "creator" in params) or path.startswith("/search"):
        return "gh_duplicate_check"
    if path.endswith("/issues"):
        return "gh_list_issues"
    if path.endswith("/issues/comments"):
        return "gh_list_repo_comments"
    if path.endswith("/comments") and method == "POST":
        return "gh_comment_create"
    if path.endswith("/comments"):
        return "gh_list_comments"
    return f"gh_other {method} {path.rsplit('/', 1)[-1]}"


def run_backfill_github(n: int, messages: int = 5, *, idle_repeats: int = 3
                        ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-github-") as tmp, \
            quiet_production_logging():
        clock = VirtualClock()
        rz = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN,
                              login_name="Sync Bot", clock=clock.now, sleep=clock.sleep)
        rz.add_staff(STAFF, "Jane Support")
        gh = GitHubSimulator(clock=GitHubSimClock(clock), sleep=clock.sleep)
        bot = gh.add_user("sync-bot", kind="Bot")
        gh.grant(gh.add_repo(REPO), bot.login, "write")
        config = parse_config({
            "state": {"url": f"sqlite:///{Path(tmp) / 'state.db'}"},
            "reamaze": {"brand": BRAND, "login_email": LOGIN,
                        "base_url": f"https://{BRAND}.reamaze.io/api/v1",
                        "http": {"requests_per_minute": 100_000, "burst": 1000}},
            "trackers": {"gh": {"kind": "github", "repo": REPO}},  # default budgets
            "pairs": [{"name": "bugs", "tracker": "gh", "interval_seconds": 60}]})
        sb = Sandbox(reamaze=rz, redmine=None, config=config,  # type: ignore[arg-type]
                     environ={})
        seed_conversations(sb, clock, n, messages=messages)
        clock.advance(3600)
        engine = build_engine(config, clock=clock, environ={
            "REAMAZE_API_TOKEN": REAMAZE_TOKEN, "GITHUB_TOKEN": bot.token,
            "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY},
            transports={"reamaze": httpx.MockTransport(rz.handle), "gh": gh.transport()})
        try:
            gh_mark, rz_mark = len(gh.requests), len(rz.requests)
            started = clock.monotonic()
            backfill = _one_pass(engine, kind="backfill", full=True)
            took = clock.monotonic() - started
            calls = Counter(classify_github(r.method, r.path, r.query)
                            for r in gh.requests[gh_mark:])
            calls.update(classify_reamaze(r.method, r.path) for r in rz.requests[rz_mark:])
            limited = sum(1 for r in gh.requests[gh_mark:] if r.status in (403, 429))
            issues = len(gh.state.issues)
            for _ in range(2):  # settle: the backfill's own writes come back once
                _one_pass(engine)
            clock.advance(3600)
            idle: Counter[str] = Counter()
            for _ in range(idle_repeats):
                gh_mark, rz_mark = len(gh.requests), len(rz.requests)
                _one_pass(engine)
                idle = Counter(
                    [classify_github(r.method, r.path, r.query) for r in gh.requests[gh_mark:]]
                    + [classify_reamaze(r.method, r.path) for r in rz.requests[rz_mark:]])
                clock.advance(60)
        finally:
            engine.close()
    writes = n + n * messages
    made = calls["gh_issue_create"] + calls["gh_comment_create"]
    writes_per_minute = 8.0
    return {
        "conversations": n, "messages_per_conversation": messages,
        "issues_created": issues, "counts": dict(sorted(backfill.counts.items())),
        "calls_by_kind": dict(sorted(calls.items())),
        "github_writes": made, "minimum_github_writes": writes,
        "github_calls": sum(v for k, v in calls.items() if k.startswith("gh_")),
        "rate_limited_answers": limited,
        "virtual_seconds": round(took, 1),
        "write_budget_floor_seconds": round((writes - 1) * 60 / (writes_per_minute * 0.99), 1),
        "idle_calls_by_kind": dict(sorted(idle.items())),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run_backfill_github(20), indent=2))
