"""The metrics' pieces: every count a pass can report has its place, a busy pass counts as
busy and nothing else, each daemon has its own registry, and a budget's use over the last
minute is counted on the limiter's own clock."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from fakes import FakeClock

from connectors.http import RateLimiter
from state import StateStore
from syncer.metrics import NOT_OPERATIONS, OPERATIONS, DaemonMetrics
from syncer.plan import Side
from syncer.runner import PassResult

ROOT = Path(__file__).resolve().parent.parent
ENGINE_CODE = ["syncer/runner.py", "syncer/apply.py", "syncer/recovery.py"]


def counts_the_engine_reports() -> set[str]:
    """Every key the engine adds to a pass's counts, read from its source (an f-string key
    such as ``{target.value}_updated`` once per side)."""
    found: set[str] = set()
    for name in ENGINE_CODE:
        for key in re.findall(r'counts\[f?"([^"]+)"\]', (ROOT / name).read_text()):
            found |= ({re.sub(r"\{[^}]*\}", side.value, key) for side in Side}
                      if "{" in key else {key})
    return found


def test_every_count_of_a_pass_is_an_operation_or_deliberately_not() -> None:
    """A count added to the engine must be placed in OPERATIONS or NOT_OPERATIONS, so the
    README's table of kinds and outcomes stays complete."""
    reported = counts_the_engine_reports()
    assert {"issues_created", "comments_to_tracker", "helpdesk_updated"} <= reported
    assert reported - set(OPERATIONS) - NOT_OPERATIONS == set()
    readme = (ROOT / "README.md").read_text()
    for kind, outcome in OPERATIONS.values():
        assert f"`{kind}`" in readme and f"`{outcome}`" in readme, (kind, outcome)


def test_a_busy_pass_is_counted_as_busy_only() -> None:
    """A pass skipped because another process had the pair adds no duration and no
    operation; a pass that ran adds its counts by kind and outcome."""
    metrics = DaemonMetrics(StateStore.in_memory(), [], {}, lambda _pair: False)
    metrics.record_pass(PassResult(pair="bugs", error="pair 'bugs' is busy", busy=True), 0.1)
    metrics.record_pass(PassResult(pair="bugs", counts=Counter(
        {"issues_created": 2, "conversations_seen": 5, "writes_held": 1})), 2.0)
    sample = metrics.registry.get_sample_value
    assert sample("reamaze_sync_passes_total", {"pair": "bugs", "outcome": "busy"}) == 1
    assert sample("reamaze_sync_passes_total", {"pair": "bugs", "outcome": "ok"}) == 1
    assert sample("reamaze_sync_pass_duration_seconds_count", {"pair": "bugs"}) == 1
    assert sample("reamaze_sync_pass_duration_seconds_sum", {"pair": "bugs"}) == 2.0
    ops = {(s.labels["kind"], s.labels["outcome"]): s.value
           for family in metrics.registry.collect() for s in family.samples
           if s.name == "reamaze_sync_operations_total"}
    assert ops == {("issue", "created"): 2, ("write", "held"): 1}


def test_metrics_of_two_daemons_in_one_process_are_their_own() -> None:
    """Each daemon has its own registry: a second one starts with its counters at zero."""
    first = DaemonMetrics(StateStore.in_memory(), [], {}, lambda _pair: False)
    second = DaemonMetrics(StateStore.in_memory(), [], {}, lambda _pair: False)
    first.record_pass(PassResult(pair="bugs", counts=Counter({"issues_created": 1})), 1.0)
    labels = {"pair": "bugs", "kind": "issue", "outcome": "created"}
    assert first.registry.get_sample_value("reamaze_sync_operations_total", labels) == 1
    assert second.registry.get_sample_value("reamaze_sync_operations_total", labels) is None


def test_budget_use_counts_the_tokens_of_the_last_minute() -> None:
    """Tokens taken within the last 60 s of the limiter's clock, waits included."""
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    for _ in range(5):  # two at 1000, then at 1001, 1002, 1003
        limiter.acquire()
    assert limiter.used_last_minute() == 5 and limiter.per_minute == 60
    clock.now += 57.5  # 1060.5: the tokens of 1000 are past the minute, 1001 on are not
    limiter.acquire()
    assert limiter.used_last_minute() == 4
    clock.now += 61
    assert limiter.used_last_minute() == 0
