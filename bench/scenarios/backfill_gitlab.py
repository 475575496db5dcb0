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

from datetime import timedelta
from typing import Any

from bench.harness import VirtualClock, following
from bench.scenarios.tracker_backfill import run_tracker_backfill
from connectors.gitlab.sim import GitLabSimulator
from connectors.gitlab.sim.state import REPORTER, SimClock

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


def _gitlab(clock: VirtualClock) -> tuple[GitLabSimulator, str]:
    gl = GitLabSimulator(clock=GitLabSimClock(clock), sleep=clock.sleep)
    bot = gl.add_user("sync-bot", bot=True)
    gl.grant(gl.add_project(PROJECT), bot.username, REPORTER)
    return gl, bot.token


def run_backfill_gitlab(n: int, messages: int = 5, *, idle_repeats: int = 3) -> dict[str, Any]:
    done, gl = run_tracker_backfill(
        n, messages, idle_repeats, tracker=_gitlab, token_env="GITLAB_TOKEN",
        table={"kind": "gitlab", "project": PROJECT},  # default budgets
        classify=classify_gitlab)
    assert isinstance(gl, GitLabSimulator)
    calls = done.calls
    writes = n + n * messages
    return {
        "conversations": n, "messages_per_conversation": messages,
        "issues_created": len(gl.state.issues), "counts": done.counts,
        "calls_by_kind": dict(sorted(calls.items())),
        "gitlab_writes": calls["gl_issue_create"] + calls["gl_note_create"],
        "minimum_gitlab_writes": writes,
        "throttled_429": done.statuses.count(429),
        "virtual_seconds": round(done.seconds, 1),
        "write_budget_floor_seconds": round((writes - 1) * 60 / (60 * 0.99), 1),
        "idle_calls_by_kind": dict(sorted(done.idle.items())),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run_backfill_gitlab(20), indent=2))
