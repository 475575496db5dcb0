"""GitLab webhook deliveries: verified, dated, reduced to the issue they concern.

* Secret: GitLab sends the hook's secret token verbatim in ``X-Gitlab-Token`` (no HMAC;
  trackers.md §2.7); it is compared in constant time.
* Events: ``Issue Hook`` and ``Note Hook``, and their confidential twins (internal notes
  and confidential issues fire those instead). Notes on merge requests, snippets and
  commits, and every other event, concern no issue.
* Identity: ``Idempotency-Key`` (stable across GitLab's retries), else
  ``X-Gitlab-Event-UUID``; one of them is required.
* Age: the token signs nothing, so a delivery is dated by the change it reports (the
  note's or the issue's ``updated_at``); one outside the window is refused like a replay.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.webhook_delivery import Delivery, WebhookRefused, parse_time

ISSUE_EVENTS = frozenset({"Issue Hook", "Confidential Issue Hook"})
NOTE_EVENTS = frozenset({"Note Hook", "Confidential Note Hook"})


def verify(headers: Mapping[str, str], body: bytes, secret: bytes, *, now: datetime,
           window: timedelta) -> Delivery:
    """The delivery, or ``WebhookRefused``. ``headers`` keys are lower case."""
    given = headers.get("x-gitlab-token", "").encode()
    if not hmac.compare_digest(given, secret):
        raise WebhookRefused(401, "X-Gitlab-Token does not match")
    delivery_id = (headers.get("idempotency-key") or headers.get("x-gitlab-event-uuid")
                   or "").strip()
    event = headers.get("x-gitlab-event", "").strip()
    if not delivery_id or not event:
        raise WebhookRefused(400, "Idempotency-Key / X-Gitlab-Event-UUID or X-Gitlab-Event "
                                  "missing")
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookRefused(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRefused(400, "body is not a JSON object")
    project = _dict(payload.get("project"))
    repo = str(project.get("path_with_namespace", ""))
    attrs = _dict(payload.get("object_attributes"))
    action = str(attrs.get("action", ""))
    if event in ISSUE_EVENTS:
        issue, dated = attrs, attrs
    elif event in NOTE_EVENTS and attrs.get("noteable_type") == "Issue":
        issue, dated = _dict(payload.get("issue")), attrs
    else:
        return Delivery(delivery_id, event, action, repo, None, None)
    changed = parse_time(dated.get("updated_at")) or parse_time(issue.get("updated_at"))
    if changed is None:
        raise WebhookRefused(400, "the reported change has no time")
    if abs(now - changed) > window:
        raise WebhookRefused(401, f"reports a change of {changed.isoformat()}, outside the "
                                  f"{int(window.total_seconds())} s window (a replay)")
    iid = issue.get("iid")
    if not isinstance(iid, int):
        raise WebhookRefused(400, "issue iid missing")
    return Delivery(delivery_id, event, action, repo, str(iid), changed)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
