"""A learned request rate outlives its process: saved after the pass, shown by `status`
(text and JSON), and the next process starts from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import Served
from test_cli_status import status_json

from connectors.http import ApiClient
from syncer.app import build_engine
from syncer.config import load_config


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def test_a_rate_learned_from_a_429_is_saved_shown_and_started_from(served: Served) -> None:
    """One 429 from Re:amaze during `run --once`: `status --json` reports the rate it
    taught under the configured budget (Redmine, never refused, has learned nothing), the
    text says so, and an engine built afterwards runs at the saved rate."""
    served.reamaze.add_conversation("Crash", "It crashes.", "c@customer.example", tags=["bug"])
    served.reamaze.faults.add(status=429, retry_after="1", times=1)
    assert served.cli("run", "--once").exit_code == 0
    code, doc = status_json(served)
    assert code == 0, doc
    budgets = {b["service"]: b for b in doc["api_budgets"]}
    reamaze, redmine = budgets["reamaze"], budgets["redmine"]
    assert reamaze["configured_per_minute"] == 100_000
    assert 10_000 <= reamaze["learned_per_minute"] < 100_000
    assert reamaze["refused_at_per_minute"] is not None and reamaze["learned_at"]
    assert redmine["learned_per_minute"] is None and redmine["configured_per_minute"] == 100_000
    text = served.cli("status").output
    assert f"api budget reamaze: 100000 requests/min configured, running at " \
           f"{reamaze['learned_per_minute']:g} learned from 429s" in text
    assert "api budget redmine: 100000 requests/min configured, no limit learned" in text

    engine = build_engine(load_config(served.path), environ=served.env)
    try:
        api = getattr(engine.helpdesk, "api", None)
        assert isinstance(api, ApiClient) and api.rate_limiter is not None
        assert api.rate_limiter.learned_per_minute == pytest.approx(
            reamaze["learned_per_minute"], abs=0.01)
    finally:
        engine.close()
