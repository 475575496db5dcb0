"""GitLab deliveries: the secret token compared in constant time, Issue and Note Hooks
(and their confidential twins) reduced to the issue, everything else concerning none."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from connectors.gitlab.webhook import verify
from connectors.webhook_delivery import WebhookRefused

SECRET = b"gl-hook-secret-0123"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=5)


def headers(event: str, token: bytes = SECRET, **extra: str) -> dict[str, str]:
    return {"x-gitlab-token": token.decode(), "x-gitlab-event": event,
            "idempotency-key": "f1e2d3", **extra}


def note_body(noteable: str = "Issue", updated: str = "2026-05-01T11:59:58.123Z") -> bytes:
    return json.dumps({"object_kind": "note", "project": {"path_with_namespace": "acme/app"},
                       "object_attributes": {"id": 9, "noteable_type": noteable,
                                             "action": "create", "updated_at": updated},
                       "issue": {"iid": 7, "updated_at": updated}}).encode()


@pytest.mark.parametrize("event", ["Note Hook", "Confidential Note Hook"])
def test_a_note_on_an_issue_names_the_issue(event: str) -> None:
    d = verify(headers(event), note_body(), SECRET, now=NOW, window=WINDOW)
    assert (d.issue_id, d.delivery_id, d.repo, d.action) == ("7", "f1e2d3", "acme/app", "create")


def test_an_issue_hook_in_the_old_time_format_names_the_issue() -> None:
    body = json.dumps({"object_kind": "issue", "object_attributes": {
        "iid": 3, "action": "close", "updated_at": "2026-05-01 11:58:00 UTC"}}).encode()
    d = verify(headers("Issue Hook", **{"idempotency-key": ""},
                       **{"x-gitlab-event-uuid": "u-1"}), body, SECRET, now=NOW, window=WINDOW)
    assert (d.issue_id, d.delivery_id) == ("3", "u-1")


def test_a_wrong_token_a_replay_and_a_delivery_without_id_are_refused() -> None:
    with pytest.raises(WebhookRefused) as wrong:
        verify(headers("Note Hook", token=b"guess"), note_body(), SECRET, now=NOW,
               window=WINDOW)
    assert wrong.value.status == 401
    with pytest.raises(WebhookRefused) as replay:
        verify(headers("Note Hook"), note_body(updated="2026-05-01T10:00:00Z"), SECRET,
               now=NOW, window=WINDOW)
    assert replay.value.status == 401
    with pytest.raises(WebhookRefused) as anonymous:
        verify({"x-gitlab-token": SECRET.decode(), "x-gitlab-event": "Note Hook"},
               note_body(), SECRET, now=NOW, window=WINDOW)
    assert anonymous.value.status == 400


@pytest.mark.parametrize(("event", "noteable"), [("Note Hook", "MergeRequest"),
                                                 ("Push Hook", "Issue")])
def test_other_events_concern_no_issue(event: str, noteable: str) -> None:
    d = verify(headers(event), note_body(noteable), SECRET, now=NOW, window=WINDOW)
    assert d.issue_id is None
