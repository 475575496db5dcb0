"""Webhooks as triggers: ``POST /webhooks/NAME`` on the daemon's listener.

A tracker whose config names a webhook secret (``webhook_secret_env``) takes deliveries
there. Each one is verified by the tracker's own rules (GitHub: ``X-Hub-Signature-256``
in constant time; GitLab: ``X-Gitlab-Token`` in constant time; both dated by the change
they report), de-duplicated by its delivery id, and
then the issue it concerns is synced at once by a targeted pass of every pair on that
tracker (``PairRunner.run_once(issues=…)``: the pair's lock, recovery first, both sides
read afresh, no cursor moved). Polling stays the source of truth: a delivery lost, refused
or never sent only delays the change to the next poll.

Answers: 202 accepted (sync queued), 200 for a duplicate or a delivery about no issue
(GitHub wants a 2xx), 401 for a bad signature or a replay outside the window (logged
``webhook_refused``), 400 for a malformed one, 404 for an unknown NAME.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from wsgiref.types import StartResponse, WSGIEnvironment

import structlog

from connectors.github import webhook as github_webhook
from connectors.gitlab import webhook as gitlab_webhook
from connectors.webhook_delivery import Delivery, WebhookRefused

log = structlog.get_logger("reamaze_sync.webhooks")

MAX_BODY = 1 << 20  # GitHub caps payloads at 25 MB, but issue events are small
TEXT = [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")]


Verify = Callable[..., Delivery]
# How each tracker kind's deliveries are verified (headers, body, secret, now=, window=).
VERIFIERS: dict[str, Verify] = {"github": github_webhook.verify,
                                "gitlab": gitlab_webhook.verify}


@dataclass(frozen=True)
class Hook:
    """One tracker's endpoint: its verification and the secret it checks against."""

    tracker: str
    secret: bytes
    window: timedelta = timedelta(minutes=5)
    verify: Verify = field(default=github_webhook.verify)


class SeenDeliveries:
    """Delivery ids already acted on, for twice the window (a redelivery within it is a
    duplicate; after it, the replay window refuses it anyway). Bounded."""

    def __init__(self, keep_seconds: float, limit: int = 100_000) -> None:
        self.keep = keep_seconds
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, delivery_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - self.keep
                                  or len(self._seen) > self.limit):
                self._seen.popitem(last=False)
            if delivery_id in self._seen:
                return False
            self._seen[delivery_id] = now
            return True


class WebhookEndpoint:
    def __init__(self, hooks: dict[str, Hook], on_issue: Callable[[str, str], None],
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.hooks = hooks
        self.on_issue = on_issue
        self.now = now
        longest = max((h.window for h in hooks.values()), default=timedelta(minutes=5))
        self.seen = SeenDeliveries(2 * longest.total_seconds())

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        name = environ.get("PATH_INFO", "").removeprefix("/webhooks/").strip("/")
        hook = self.hooks.get(name)
        if hook is None:
            return _answer(start_response, "404 Not Found", "no webhook for that name\n")
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, "405 Method Not Allowed", "POST only\n",
                           [("Allow", "POST")])
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            return _answer(start_response, "413 Content Too Large", "body too large\n")
        body = environ["wsgi.input"].read(length)
        headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items()
                   if k.startswith("HTTP_")}
        try:
            delivery = hook.verify(headers, body, hook.secret, now=self.now(),
                                   window=hook.window)
        except WebhookRefused as exc:
            log.warning("webhook_refused", tracker=name, status=exc.status, reason=exc.reason,
                        delivery_id=(headers.get("x-github-delivery")
                                     or headers.get("idempotency-key")
                                     or headers.get("x-gitlab-event-uuid", ""))[:64],
                        remote=environ.get("REMOTE_ADDR"))
            status = {400: "400 Bad Request", 401: "401 Unauthorized"}[exc.status]
            return _answer(start_response, status, exc.reason + "\n")
        if not self.seen.first_time(delivery.delivery_id):
            log.info("webhook_duplicate", tracker=name, delivery_id=delivery.delivery_id)
            return _answer(start_response, "200 OK", "duplicate delivery: already handled\n")
        if delivery.issue_id is None:
            log.info("webhook_ignored", tracker=name, kind=delivery.event,
                     delivery_id=delivery.delivery_id)
            return _answer(start_response, "200 OK", "nothing to sync\n")
        log.info("webhook_accepted", tracker=name, kind=delivery.event,
                 action=delivery.action, object_id=delivery.issue_id,
                 delivery_id=delivery.delivery_id)
        self.on_issue(name, delivery.issue_id)
        return _answer(start_response, "202 Accepted", "sync queued\n")


def _answer(start_response: StartResponse, status: str, text: str,
            extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [*TEXT, *(extra or [])])
    return [text.encode()]


class TargetedSyncs:
    """A worker thread running targeted passes for issues webhooks named, pair by pair,
    several issues of one pair in one pass. ``run(pair, issues)`` does the pass."""

    def __init__(self, run: Callable[[str, frozenset[str]], None]) -> None:
        self.run = run
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="webhook-syncs", daemon=True)

    def start(self) -> TargetedSyncs:
        self._thread.start()
        return self

    def add(self, pair: str, issue_id: str) -> None:
        self._queue.put((pair, issue_id))

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch: dict[str, set[str]] = {item[0]: {item[1]}}
            while True:  # what else arrived meanwhile goes in the same passes
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.setdefault(more[0], set()).add(more[1])
            for pair, issues in batch.items():
                try:
                    self.run(pair, frozenset(issues))
                except Exception:  # the worker must outlive any one pass
                    log.exception("webhook_sync_crashed", pair=pair)
