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

from datetime import timedelta
from typing import Any

from bench.harness import VirtualClock, following
from bench.scenarios.tracker_backfill import run_tracker_backfill
from connectors.github.sim import GitHubSimulator
from connectors.github.sim.state import SimClock

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


def _github(clock: VirtualClock) -> tuple[GitHubSimulator, str]:
    gh = GitHubSimulator(clock=GitHubSimClock(clock), sleep=clock.sleep)
    bot = gh.add_user("sync-bot", kind="Bot")
    gh.grant(gh.add_repo(REPO), bot.login, "write")
    return gh, bot.token


def run_backfill_github(n: int, messages: int = 5, *, idle_repeats: int = 3
                        ) -> dict[str, Any]:
    done, gh = run_tracker_backfill(
        n, messages, idle_repeats, tracker=_github, token_env="GITHUB_TOKEN",
        table={"kind": "github", "repo": REPO},  # default budgets
        classify=classify_github)
    assert isinstance(gh, GitHubSimulator)
    calls = done.calls
    writes = n + n * messages
    writes_per_minute = 8.0
    return {
        "conversations": n, "messages_per_conversation": messages,
        "issues_created": len(gh.state.issues), "counts": done.counts,
        "calls_by_kind": dict(sorted(calls.items())),
        "github_writes": calls["gh_issue_create"] + calls["gh_comment_create"],
        "minimum_github_writes": writes,
        "github_calls": sum(v for k, v in calls.items() if k.startswith("gh_")),
        "rate_limited_answers": sum(1 for s in done.statuses if s in (403, 429)),
        "virtual_seconds": round(done.seconds, 1),
        "write_budget_floor_seconds": round((writes - 1) * 60 / (writes_per_minute * 0.99), 1),
        "idle_calls_by_kind": dict(sorted(done.idle.items())),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run_backfill_github(20), indent=2))
