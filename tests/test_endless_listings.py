"""A server that announces a huge listing and keeps answering cannot keep a walk going:
every walk is bounded by what its listing announced, and stops when pages bring nothing
new. Counted in requests to the simulators, never in time."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fakes import FakeClock
from pydantic import SecretStr
from redmine_fixtures import SIM_URL, redmine_config

from connectors.reamaze.connector import ReamazeConnector
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.redmine.connector import RedmineConnector
from connectors.redmine.sim.simulator import RedmineSimulator
from connectors.simfaults import FaultRule
from syncer.errors import BadPayloadError

pytest_plugins = ["reamaze_fixtures", "redmine_fixtures"]

CONV = "/api/v1/conversations"
# A walk nobody stops gets an empty page after this many requests: it then ends as a test
# failure instead of running for an hour.
GIVE_UP = 300
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def serve(sim: ReamazeSimulator | RedmineSimulator, path: str,
          page: Callable[[int], dict[str, Any]]) -> FaultRule:
    """Answer every GET of ``path`` (a regex) with ``page(n)`` for the n-th request."""
    rule = sim.faults.add(200, method="GET", path=path, body=b"", times=None,
                          content_type="application/json")

    def fill(_request: object) -> None:
        rule.body = json.dumps(page(rule.hits)).encode()

    rule.action = fill
    return rule


def rotated(n: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same items, in another order for each request."""
    k = n % len(items)
    return items[k:] + items[:k]


def conversation(i: int) -> dict[str, Any]:
    stamp = (T0 - timedelta(minutes=i)).isoformat()
    return {"slug": f"conv-{i}", "subject": f"Conversation {i}", "status": 0,
            "created_at": stamp, "updated_at": stamp}


def issue(i: int, updated: datetime) -> dict[str, Any]:
    stamp = updated.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": i, "project": {"id": 1, "name": "Sync"}, "subject": f"Issue {i}",
            "status": {"id": 1, "name": "New", "is_closed": False},
            "created_on": stamp, "updated_on": stamp}


def reamaze_million_pages(n: int) -> dict[str, Any]:
    items = [conversation(i) for i in range(30)] if n <= GIVE_UP else []
    return {"page_size": 30, "page_count": 1_000_000, "total_count": 30_000_000,
            "conversations": rotated(n, items) if items else []}


@pytest.mark.parametrize("walk", ["change feed", "list"])
def test_reamaze_walks_stop_on_reordered_repeats_under_a_million_pages(
        rz_sim: ReamazeSimulator, rz_conn: ReamazeConnector, walk: str) -> None:
    """Re:amaze announcing a million pages of the same 30 conversations, reordered on each
    request: the change feed and a plain listing stop within a few requests with an error
    naming the listing, the announced count and the page they stopped at."""
    rule = serve(rz_sim, "^" + CONV + "$", reamaze_million_pages)
    with pytest.raises(BadPayloadError) as info:
        if walk == "change feed":
            list(rz_conn.iter_changes(None))
        else:
            list(rz_conn.list_tickets())
    assert rule.hits <= 5
    text = str(info.value)
    assert "GET /conversations" in text and "announced 1000000 pages" in text
    assert f"stopped at page={rule.hits}" in text


def test_redmine_feed_stops_on_reordered_repeats_under_a_huge_total(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """Redmine announcing a million issues and sending the same hundred, reordered, on
    every request: the keyset feed stops within a few requests."""
    same = [issue(i, T0) for i in range(1, 101)]
    rule = serve(redmine_sim, r"^/issues\.json$", lambda n: {
        "issues": rotated(n, same) if n <= GIVE_UP else [], "total_count": 1_000_000,
        "offset": 0, "limit": 100})
    with pytest.raises(BadPayloadError) as info:
        list(redmine_conn.iter_changes(None))
    assert rule.hits <= 5
    text = str(info.value)
    assert "GET /issues.json" in text and "announced 1000000 items" in text
    assert "nothing new" in text


def test_redmine_feed_stops_past_the_announced_total(
        redmine_sim: RedmineSimulator, redmine_conn: RedmineConnector) -> None:
    """Redmine announcing 150 issues, then sending a hundred new ones a second later on
    every request: the feed stops once it has read 150 + 10 % + three pages of issues."""

    def page(n: int) -> dict[str, Any]:
        start = (n - 1) * 100 + 1
        when = T0 + timedelta(seconds=n)
        return {"issues": [issue(i, when) for i in range(start, start + 100)]
                if n <= GIVE_UP else [], "total_count": 150, "offset": 0, "limit": 100}

    rule = serve(redmine_sim, r"^/issues\.json$", page)
    with pytest.raises(BadPayloadError, match="announced 150 items"):
        list(redmine_conn.iter_changes(None))
    assert rule.hits == 5  # 500 issues read > 150 + 15 + 300


def test_redmine_user_listing_stops_on_reordered_repeats(
        redmine_sim: RedmineSimulator) -> None:
    """The admin's user listing, paged by offset, is bounded the same way."""
    users = [{"id": i, "login": f"u{i}", "firstname": "U", "lastname": str(i)}
             for i in range(1, 101)]
    rule = serve(redmine_sim, r"^/users\.json$", lambda n: {
        "users": rotated(n, users) if n <= GIVE_UP else [], "total_count": 1_000_000,
        "offset": 0, "limit": 100})
    conn = RedmineConnector.from_config(
        redmine_config(SIM_URL, "sync"), SecretStr(redmine_sim.admin_key),
        transport=httpx.MockTransport(redmine_sim.handle), clock=FakeClock())
    with pytest.raises(BadPayloadError, match=r"GET /users\.json.*nothing new"):
        conn.list_users()
    assert rule.hits <= 5

