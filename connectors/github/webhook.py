"""GitHub webhook deliveries: verified, dated, reduced to the issue they concern.

* Signature: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>``, compared
  in constant time (GitHub's own instructions; trackers.md §1.7).
* Identity: ``X-GitHub-Delivery`` is a GUID that stays the same on a redelivery, so it is
  the de-duplication key (kept by the caller).
* Age: GitHub signs no timestamp, so a delivery is dated by the change it reports (the
  issue's or the comment's ``updated_at``). A signed delivery replayed later than the
  window reports an old change: it is refused like a forged one. (A redelivery requested by
  hand after the window is refused too; polling syncs the change anyway.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timedelta

from connectors.webhook_delivery import Delivery, WebhookRefused
from connectors.webhook_delivery import parse_time as _time

__all__ = ["Delivery", "WebhookRefused", "signature", "verify"]

EVENTS = frozenset({"issues", "issue_comment"})


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: bytes, *, now: datetime,
           window: timedelta) -> Delivery:
    """The delivery, or ``WebhookRefused``. ``headers`` keys are lower case."""
    given = headers.get("x-hub-signature-256", "")
    if not hmac.compare_digest(given.encode(), signature(secret, body).encode()):
        raise WebhookRefused(401, "signature does not match")
    delivery_id = headers.get("x-github-delivery", "").strip()
    event = headers.get("x-github-event", "").strip()
    if not delivery_id or not event:
        raise WebhookRefused(400, "X-GitHub-Delivery or X-GitHub-Event missing")
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookRefused(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRefused(400, "body is not a JSON object")
    repo = str((payload.get("repository") or {}).get("full_name", ""))
    if event not in EVENTS:
        return Delivery(delivery_id, event, str(payload.get("action", "")), repo, None, None)
    issue = payload.get("issue") or {}
    if "pull_request" in issue:  # comments on pull requests come as issue_comment too
        return Delivery(delivery_id, event, str(payload.get("action", "")), repo, None, None)
    dated = (payload.get("comment") or {}) if event == "issue_comment" else issue
    changed = _time(dated.get("updated_at")) or _time(issue.get("updated_at"))
    if changed is None:
        raise WebhookRefused(400, "the reported change has no time")
    if abs(now - changed) > window:
        raise WebhookRefused(401, f"reports a change of {changed.isoformat()}, outside the "
                                  f"{int(window.total_seconds())} s window (a replay)")
    number = issue.get("number")
    if not isinstance(number, int):
        raise WebhookRefused(400, "issue number missing")
    return Delivery(delivery_id, event, str(payload.get("action", "")), repo, str(number),
                    changed)

