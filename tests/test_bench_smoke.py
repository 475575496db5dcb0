"""Smoke test of the benchmarks: the smallest scenarios run, and their request counts (never
their timings) are what the engine's design promises."""

from __future__ import annotations

from typing import Any

import pytest

from bench.scenarios.backfill import run_backfill
from bench.scenarios.ratelimit import run_rate_limit
from bench.scenarios.statesize import run_state_size

N, MESSAGES = 6, 2


@pytest.fixture(scope="module")
def backfill() -> dict[str, Any]:
    return run_backfill(N, MESSAGES, idle_repeats=2)


def test_idle_poll_is_one_list_request_per_side(backfill: dict[str, Any]) -> None:
    """Once the backfill has settled, an idle poll sends one list request to each side."""
    assert backfill["idle"]["calls_by_kind"] == {"rm_list_issues": 1,
                                                 "rz_list_conversations": 1}


def test_backfill_sends_the_minimum_and_what_learning_the_count_costs(
        backfill: dict[str, Any]) -> None:
    """A backfill sends the writes, one read-back per issue for the ids of its notes
    (Redmine answers a note with 204 and no id), and reads the messages a page of 30 at a
    time across conversations; beyond that only the first conversation's own read and
    the read after its link note that shows ``message_count`` counts internal notes."""
    assert backfill["minimum"]["message_lists"] == 1
    assert backfill["calls"] == {"list_pages": 2, "message_lists": 1 + 1 + 1,
                                 "issue_creates": N, "comment_writes": N * MESSAGES,
                                 "link_notes": N, "issue_readbacks": N, "duplicate_checks": N,
                                 "identity": 1, "other": 1}
    assert backfill["calls_by_kind"]["rz_list_brand_messages"] == 1
    assert backfill["counts"]["issues_created"] == N


def test_transcript_backfill_sends_no_notes_at_all() -> None:
    """With history = "transcript" the public messages ride in the issue create: the
    backfill sends no note writes or read-backs."""
    result = run_backfill(N, MESSAGES, idle_repeats=1, mode="transcript")
    assert result["calls"] == {"list_pages": 2, "message_lists": 1 + 1 + 1,
                               "issue_creates": N, "comment_writes": 0, "link_notes": N,
                               "issue_readbacks": 0, "duplicate_checks": N, "identity": 0,
                               "other": 1}
    assert result["minimum"]["comment_writes"] == 0
    assert result["counts"]["messages_in_description"] == N * MESSAGES


def test_rate_limited_backfill_stays_under_the_limit() -> None:
    """With burst 1 the engine never provokes a 429 and fails nothing under a strict limit."""
    result = run_rate_limit(3, limit=20, burst=1, messages=MESSAGES)
    assert result["responses_429"] == 0
    assert result["failed_operations"] == 0
    assert result["counts"]["issues_created"] == 3
    assert result["redmine_writes"] == 3 + 3 * MESSAGES


def test_write_limited_backfill_paces_writes_with_the_write_budget() -> None:
    """Against a limit on writes only, the engine's write budget keeps it free of 429s."""
    result = run_rate_limit(3, limit=20, writes_only=True, overall=60, messages=MESSAGES)
    assert result["engine_writes_per_minute"] == 20
    assert result["engine_requests_per_minute"] == 60
    assert result["responses_429"] == 0
    assert result["failed_operations"] == 0
    assert result["redmine_writes"] == 3 + 3 * MESSAGES


def test_a_budget_above_the_limit_is_learned_in_the_benchmark() -> None:
    """The engine told 50 % more than Re:amaze admits draws a 429, then runs within 10 %
    under the real limit and fails nothing."""
    result = run_rate_limit(30, limit=20, engine_budget=30, reamaze_only=True,
                            messages=MESSAGES)
    assert result["responses_429"] >= 1 and result["failed_operations"] == 0
    assert 18 <= result["learned_per_minute"]["reamaze"] <= 20
    assert result["learned_per_minute"]["redmine"] == 300


def test_state_size_shrinks_when_pruned() -> None:
    """Pruning deletes the completed intents and keeps every link and comment link."""
    result = run_state_size(4, polls=2, messages=MESSAGES)
    before, after = result["before"]["rows"], result["after"]["rows"]
    assert before["intents"] == 4 * (2 + MESSAGES) and after["intents"] == 0
    assert after["links"] == before["links"] == 4
    assert after["comment_links"] == before["comment_links"]
    assert result["bytes_per_1000_after"] < result["bytes_per_1000_before"]


def test_webhook_latency_scenario_runs_through_the_daemon() -> None:
    from bench.scenarios.webhook import run_webhook_latency

    result = run_webhook_latency(2, 3)
    assert result["changes"] == 3 and set(result["latency_s"]) == {"p50", "p95", "max"}


def test_sweep_verifies_each_link_with_three_reads_and_repairs_nothing() -> None:
    """At the default budgets the sweep verifies every link of a settled backfill once per
    round, with two Re:amaze reads and one Redmine read per link (plus a page of recent
    conversations every five minutes and the API user's id once), and writes nothing."""
    from bench.scenarios.sweep import run_sweep

    sweep = run_sweep(20)
    assert sweep["links_verified"] == 20 and sweep["drift_repaired"] == 0
    kinds = sweep["calls_by_kind"]
    assert kinds["rz_get_conversation"] == kinds["rz_list_messages"] == 20
    assert kinds["rm_get_issue_journals"] == 20
    assert not {k for k in kinds if "create" in k or "add" in k or "update" in k}
    recent_pages = kinds["rz_list_conversations"] - sweep["passes"]  # the rest are polls
    assert 1 <= recent_pages < sweep["passes"]
    assert sweep["sweep_requests"] == {"reamaze": 40 + recent_pages, "redmine": 21}


def test_a_github_backfill_writes_the_minimum_under_githubs_limits() -> None:
    """At the connection's default budgets the backfill writes one issue and one comment
    per message, draws no 403/429 from a GitHub enforcing its primary and secondary
    limits, checks for an existing issue with one listing each (the bot has under a page
    of issues), and an idle poll is the issue and comment listings plus Re:amaze's."""
    from bench.scenarios.backfill_github import run_backfill_github

    result = run_backfill_github(N, MESSAGES, idle_repeats=1)
    calls = result["calls_by_kind"]
    assert (calls["gh_issue_create"], calls["gh_comment_create"]) == (N, N * MESSAGES)
    assert calls["gh_duplicate_check"] == N and calls["gh_user"] == 1
    assert result["rate_limited_answers"] == 0 and result["issues_created"] == N
    assert not [k for k in calls if k.startswith("gh_other")]
    assert result["idle_calls_by_kind"] == {"gh_list_issues": 1, "gh_list_repo_comments": 1,
                                            "rz_list_conversations": 1}


def test_a_gitlab_backfill_writes_the_minimum_without_a_429() -> None:
    """At GitLab.com's default budgets the backfill writes exactly one issue and one note
    per message, draws no 429 from a GitLab enforcing those limits, checks for an
    existing issue with one request each, and an idle poll is one list per side."""
    from bench.scenarios.backfill_gitlab import run_backfill_gitlab

    result = run_backfill_gitlab(N, MESSAGES, idle_repeats=1)
    calls = result["calls_by_kind"]
    assert (calls["gl_issue_create"], calls["gl_note_create"]) == (N, N * MESSAGES)
    assert calls["gl_duplicate_check"] == N and calls["gl_user"] == 1
    assert result["throttled_429"] == 0 and result["issues_created"] == N
    assert not [k for k in calls if k.startswith("gl_other")]
    assert result["idle_calls_by_kind"] == {"gl_list_issues": 1, "rz_list_conversations": 1}
