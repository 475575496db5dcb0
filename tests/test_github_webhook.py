"""GitHub webhook deliveries: signature, replay window, what they concern."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from connectors.github.webhook import WebhookRefused, signature, verify

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=5)
SECRET = b"It's a Secret to Everybody"


def test_signature_matches_githubs_documented_test_vector() -> None:
    assert signature(SECRET, b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")


def delivery(event: str = "issue_comment", *, changed: datetime = NOW, number: int = 7,
             pull_request: bool = False) -> bytes:
    issue: dict[str, object] = {"number": number, "updated_at": changed.isoformat()}
    if pull_request:
        issue["pull_request"] = {"url": "x"}
    payload: dict[str, object] = {"action": "created", "issue": issue,
                                  "repository": {"full_name": "acme/app"}}
    if event == "issue_comment":
        payload["comment"] = {"id": 1, "updated_at": changed.isoformat()}
    return json.dumps(payload).encode()


def headers(body: bytes, event: str = "issue_comment", secret: bytes = SECRET,
            delivery_id: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958") -> dict[str, str]:
    return {"x-hub-signature-256": signature(secret, body), "x-github-event": event,
            "x-github-delivery": delivery_id}


def test_a_valid_delivery_names_its_issue() -> None:
    body = delivery()
    got = verify(headers(body), body, SECRET, now=NOW, window=WINDOW)
    assert (got.issue_id, got.event, got.repo) == ("7", "issue_comment", "acme/app")


def test_a_forged_or_altered_delivery_is_refused() -> None:
    body = delivery()
    with pytest.raises(WebhookRefused) as forged:
        verify(headers(body, secret=b"guess"), body, SECRET, now=NOW, window=WINDOW)
    assert forged.value.status == 401
    with pytest.raises(WebhookRefused):
        verify(headers(body), body.replace(b'"number": 7', b'"number": 8'), SECRET, now=NOW,
               window=WINDOW)
    with pytest.raises(WebhookRefused):
        verify({}, body, SECRET, now=NOW, window=WINDOW)


def test_a_replay_outside_the_window_is_refused() -> None:
    body = delivery(changed=NOW - timedelta(minutes=6))
    with pytest.raises(WebhookRefused, match="outside") as old:
        verify(headers(body), body, SECRET, now=NOW, window=WINDOW)
    assert old.value.status == 401
    inside = delivery(changed=NOW - timedelta(minutes=4))
    assert verify(headers(inside), inside, SECRET, now=NOW, window=WINDOW).issue_id == "7"


def test_pings_and_pull_requests_concern_no_issue() -> None:
    ping = json.dumps({"zen": "Keep it logically awesome."}).encode()
    assert verify(headers(ping, "ping"), ping, SECRET, now=NOW, window=WINDOW).issue_id is None
    pr = delivery(pull_request=True)
    assert verify(headers(pr), pr, SECRET, now=NOW, window=WINDOW).issue_id is None
