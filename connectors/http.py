"""The HTTP layer every connector shares.

One injected ``httpx.Client`` per connection (tests pass ``httpx.MockTransport``), explicit
timeouts, per-connection request budgets (one for every request, optionally one more for
writes), retries with jittered backoff on 429 / 5xx / timeouts honouring a clamped
``Retry-After``, status codes turned into the error tree of ``syncer.errors``, bodies read
with a size cap and decoded defensively.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog
import tenacity

from connectors.learned_rate import LearnedRate

if TYPE_CHECKING:
    from connectors.settings import HttpSettings
from syncer.errors import (
    AuthError,
    BadPayloadError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RedirectError,
    RejectedError,
    RetriableError,
    SyncError,
    TransientError,
)

log = structlog.get_logger("reamaze_sync.http")

DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
MAX_BODY_BYTES = 20 * 1024 * 1024
SECRET_QUERY_KEYS = frozenset({"key", "api_key", "token", "access_token", "private_token"})
# Connections space requests for 1 % under their budget: spaced exactly at a server's
# limit, a request delayed a little on the way lands in the previous minute's window and
# draws a 429 (the benchmark saw one); 1 % of a minute absorbs 0.6 s of such jitter.
HEADROOM = 0.99
# What APIs with a separate write limit count (GitHub's content-creation limit, for one).
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class SharedPacer(Protocol):
    """A budget kept outside this process, shared by every process using a credential
    (``syncer.budgets``): ``reserve`` books the next request at ``interval`` seconds from
    the last one booked (``burst`` of them may go at once), and answers how long to wait
    before sending it and whether it booked one at all (a background caller books only
    when nobody else is queued, and is told to look again after the wait)."""

    def reserve(self, interval: float, burst: float) -> tuple[float, bool]: ...


class SharedBudgetUnavailable(Exception):
    """The shared budget could not be read: pace by this process's own budget meanwhile."""


class RateLimiter:
    """Token bucket: stay under a requests-per-minute budget instead of bouncing off 429s.

    Hand-written because it must be synchronous and share the injectable clock with the
    retry layer (benchmarks run a sped-up clock); the available libraries are async-only or
    own their clock.
    """

    def __init__(self, per_minute: float, burst: int | None = None, clock: Clock | None = None,
                 headroom: float = 1.0, learn: bool = False):
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute = per_minute  # as configured, before the headroom
        self.headroom = headroom
        self.rate = per_minute / 60.0 * headroom
        # ``learn``: 429s lower the rate and it probes back up (``connectors.learned_rate``).
        self.learner = LearnedRate(per_minute) if learn else None
        self.service = ""  # for the log lines; the ApiClient using it names it
        self._refused: deque[float] = deque()  # when the 429s of the last minute came
        self.capacity = float(burst if burst is not None else max(1, int(per_minute // 60) or 1))
        self.clock = clock or SystemClock()
        self._tokens = self.capacity
        self._last = self.clock.monotonic()
        self.waited = 0.0
        # When the tokens of the last minute were taken, for ``used_last_minute``; its own
        # lock, as ``_lock`` is held through the waits.
        self._taken: deque[float] = deque()
        self._taken_lock = threading.Lock()
        # Pairs run in worker threads and share a connection's budget; holding the lock
        # while sleeping queues callers in order instead of letting them burst together.
        self._lock = threading.Lock()
        # Set when every process using the credential shares one budget (the state store).
        self.shared: SharedPacer | None = None

    def acquire(self, then: RateLimiter | None = None) -> None:
        """Take a token, waiting for it if need be.

        ``then`` is a second budget the same request also draws from (the connection's
        overall one, for a write). Its token is taken only after this one: a write queued
        behind the write budget holds no overall token meanwhile, so reads keep the whole
        overall budget. If ``then`` makes the request wait, this token is charged from the
        moment the request actually leaves; otherwise the next caller of this budget could
        go out sooner than this budget's spacing after it and trip a strict window.
        This lock is held throughout, so callers of this budget still queue in order.
        """
        with self._lock:
            self._acquire()
            if then is not None:
                then.acquire()
                self._last = self.clock.monotonic()

    def used_last_minute(self) -> int:
        """Tokens taken in the last 60 seconds: how much of ``per_minute`` is in use."""
        with self._taken_lock:
            self._forget(self.clock.monotonic())
            return len(self._taken)

    @property
    def learned_per_minute(self) -> float:
        """The rate this budget runs at now: the configured one unless 429s taught less."""
        return self.learner.rate if self.learner is not None else self.per_minute

    def start_from(self, per_minute: float, refused_at: float | None) -> None:
        """Run at a rate learned earlier (kept in the state store between processes)."""
        if self.learner is None:
            return
        with self._taken_lock:
            self.learner.start_from(per_minute, refused_at)
            self._follow()

    def rate_limited(self) -> None:
        """The server answered 429: learn from it (when learning) what it admits."""
        if self.learner is None:
            return
        with self._taken_lock:
            now = self.clock.monotonic()
            self._forget(now)
            self._refused.append(now)
            before = self.learner.rate
            if self.learner.rate_limited(now, len(self._taken) - len(self._refused)):
                self._follow()
                log.warning("budget_lowered", operation="learn_rate", service=self.service,
                            from_per_minute=round(before, 2),
                            to_per_minute=round(self.learner.rate, 2),
                            refused_at_per_minute=round(self.learner.refused_at or 0.0, 2),
                            configured_per_minute=self.per_minute)

    def _follow(self) -> None:
        if self.learner is not None:
            self.rate = self.learner.rate / 60.0 * self.headroom

    def _forget(self, now: float) -> None:
        while self._taken and self._taken[0] <= now - 60.0:
            self._taken.popleft()
        while self._refused and self._refused[0] <= now - 60.0:
            self._refused.popleft()

    def _acquire(self) -> None:
        if self.shared is not None and self._acquire_shared():
            return
        now = self.clock.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
        else:
            wait = (1 - self._tokens) / self.rate
            self.waited += wait
            self.clock.sleep(wait)
            self._last = now = self.clock.monotonic()
            self._tokens = 0.0
        self._record_taken(now)


    def _acquire_shared(self) -> bool:
        """Book the request in the shared budget and wait for its turn; False when the
        shared budget cannot be read (the local bucket paces this request instead)."""
        assert self.shared is not None
        for _ in range(10_000):
            try:
                wait, booked = self.shared.reserve(1.0 / self.rate, self.capacity)
            except SharedBudgetUnavailable:
                return False
            if wait > 0:
                self.waited += wait
                self.clock.sleep(wait)
            if booked:
                break
        now = self.clock.monotonic()
        self._last, self._tokens = now, 0.0
        self._record_taken(now)
        return True

    def _record_taken(self, now: float) -> None:
        with self._taken_lock:
            self._forget(now)
            self._taken.append(now)
            if self.learner is not None and self.learner.sent(now, len(self._taken)):
                self._follow()
                log.info("budget_raised", operation="learn_rate", service=self.service,
                         to_per_minute=round(self.learner.rate, 2),
                         configured_per_minute=self.per_minute)


def connection_budgets(settings: HttpSettings, clock: Clock | None
                       ) -> tuple[RateLimiter, RateLimiter | None]:
    """A connection's overall request budget and its write budget (None when unset), both
    kept ``HEADROOM`` under the configured rates. The overall one learns from 429s: a 429
    cannot tell which budget the server counted, and every request draws from that one."""
    overall = RateLimiter(settings.requests_per_minute, settings.burst, clock, HEADROOM,
                          learn=True)
    writes = (RateLimiter(settings.writes_per_minute, settings.burst, clock, HEADROOM)
              if settings.writes_per_minute is not None else None)
    return overall, writes


def parse_retry_after(value: str | None, *, now: datetime | None = None,
                      maximum: float = 300.0) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), clamped."""
    if not value:
        return None
    value = value.strip()
    seconds: float
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), maximum)


def scrub_url(url: httpx.URL | str) -> str:
    """The URL without credentials in userinfo or in well-known query parameters."""
    parts = urlsplit(str(url))
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal: keep the brackets or the port becomes ambiguous
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    query = "&".join(
        p if p.split("=", 1)[0].lower() not in SECRET_QUERY_KEYS else p.split("=", 1)[0] + "=***"
        for p in parts.query.split("&")
        if p
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@dataclass
class RetryPolicy:
    attempts: int = 8
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 300.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based): doubling, plus up to a
        second of jitter so clients that failed together do not retry together, capped."""
        exponential = self.initial_backoff * 2.0 ** min(attempt - 1, 60)
        return min(self.max_backoff, exponential + random.uniform(0.0, 1.0))


@dataclass
class CallStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    by_method: dict[str, int] = field(default_factory=dict)


class ApiClient:
    """Sends one logical request with budget, retries and error mapping."""

    def __init__(
        self,
        connector: str,
        client: httpx.Client,
        *,
        rate_limiter: RateLimiter | None = None,
        write_limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        describe_auth_failure: Callable[[], str] | None = None,
        classify_error: Callable[[int, bytes, httpx.Headers], SyncError | None] | None = None,
    ) -> None:
        self.connector = connector
        self.client = client
        self.rate_limiter = rate_limiter
        if rate_limiter is not None and not rate_limiter.service:
            rate_limiter.service = connector
        # Drawn by writes in addition to rate_limiter, for APIs that limit writes tighter.
        self.write_limiter = write_limiter
        self.retry = retry or RetryPolicy()
        self.clock = clock or SystemClock()
        self.max_body_bytes = max_body_bytes
        self.describe_auth_failure = describe_auth_failure or (lambda: "authentication failed")
        # A connector's own reading of an error answer, before the generic one (GitHub
        # answers 403 for its rate limits); None leaves the answer to the generic mapping.
        self.classify_error = classify_error
        self.stats = CallStats()

    # -- public API -------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        object_id: str | None = None,
        retry_transient: bool = True,
    ) -> tuple[int, bytes, httpx.Headers]:
        """``retry_transient=False`` is for creates the server does not deduplicate: after a
        timeout or 5xx the write may have happened, so only what certainly did not reach
        the server (a 429, a connection never made) is retried, and the caller looks its
        idempotency key up before anything else (``write_once``)."""

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
                return exc.retry_after
            return self.retry.backoff(state.attempt_number)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self.stats.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            fields: dict[str, Any] = {
                "connector": self.connector,
                "method": method,
                "path": scrub_url(path),  # callers may put a key in the path's query
                "object_id": object_id,
                "attempt": state.attempt_number,
                "sleep_s": round(state.upcoming_sleep, 3),
            }
            if isinstance(exc, SyncError):
                # log_fields repeats connector/object_id: merged, not passed twice.
                fields.update(exc.log_fields())
            log.warning("http_retry", **fields)

        def unsent(exc: BaseException) -> bool:
            return isinstance(exc, RateLimitedError) or (
                isinstance(exc, TransientError) and not exc.maybe_sent)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retry.attempts),
            wait=wait,
            retry=(tenacity.retry_if_exception_type(RetriableError) if retry_transient
                   else tenacity.retry_if_exception(unsent)),
            sleep=self.clock.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        result: tuple[int, bytes, httpx.Headers] = retrying(
            self._send_once, method, path, params, json_body, content, headers, object_id
        )
        return result

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None,
                 object_id: str | None = None) -> Any:
        _, body, _ = self.request("GET", path, params=params, object_id=object_id)
        return self.decode(body, object_id=object_id)

    def send_json(self, method: str, path: str, body: Any, *, object_id: str | None = None,
                  params: Mapping[str, Any] | None = None, retry_transient: bool = True) -> Any:
        _, raw, _ = self.request(method, path, json_body=body, params=params, object_id=object_id,
                                 retry_transient=retry_transient)
        return self.decode(raw, object_id=object_id) if raw.strip() else None

    def decode(self, body: bytes, *, object_id: str | None = None) -> Any:
        try:
            return json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BadPayloadError("response is not UTF-8", connector=self.connector,
                                  object_id=object_id, body=body) from exc
        except json.JSONDecodeError as exc:
            raise BadPayloadError(f"response is not JSON ({exc.msg})", connector=self.connector,
                                  object_id=object_id, body=body) from exc

    # -- one attempt ----------------------------------------------------------------------
    def _send_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        object_id: str | None,
    ) -> tuple[int, bytes, httpx.Headers]:
        # Per attempt, so every retry of a write (429 included) spends a write token too.
        if self.write_limiter is not None and method.upper() in WRITE_METHODS:
            self.write_limiter.acquire(then=self.rate_limiter)
        elif self.rate_limiter is not None:
            self.rate_limiter.acquire()
        self.stats.requests += 1
        self.stats.by_method[method] = self.stats.by_method.get(method, 0) + 1
        kw: dict[str, Any] = {"params": params, "headers": headers}
        if json_body is not None:
            kw["json"] = json_body
        if content is not None:
            kw["content"] = content
        try:
            with self.client.stream(method, path, **kw) as resp:
                body = self._read_capped(resp, object_id)
                status, resp_headers, url = resp.status_code, resp.headers, resp.request.url
        except httpx.TimeoutException as exc:
            raise TransientError(f"timeout ({type(exc).__name__})", connector=self.connector,
                                 object_id=object_id, maybe_sent=not isinstance(
                                     exc, httpx.ConnectTimeout | httpx.PoolTimeout)) from None
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed ({type(exc).__name__})",
                                 connector=self.connector, object_id=object_id,
                                 maybe_sent=not isinstance(exc, httpx.ConnectError)) from None
        log.debug("http_request", connector=self.connector, method=method, url=scrub_url(url),
                  status=status, object_id=object_id)
        if status < 300:
            return status, body, resp_headers
        if status < 400:
            raise self._redirect(status, body, resp_headers, url, object_id)
        raise self._error_for(status, body, resp_headers, object_id)

    def _read_capped(self, resp: httpx.Response, object_id: str | None) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BadPayloadError(
                    f"response larger than {self.max_body_bytes} bytes",
                    connector=self.connector, object_id=object_id, status=resp.status_code,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _redirect(self, status: int, body: bytes, headers: httpx.Headers, url: httpx.URL,
                  object_id: str | None) -> RedirectError:
        """Redirects are not followed (credentials must never go to another host), and a
        3xx is no answer to the request: it says the base URL is wrong."""
        location = headers.get("location")
        kw: dict[str, Any] = {"connector": self.connector, "object_id": object_id,
                              "status": status, "body": body}
        if not location:
            return RedirectError(f"unexpected {status} answer without a Location; check "
                                 "base_url", **kw)
        try:
            where = scrub_url(url.join(location))
        except (httpx.InvalidURL, ValueError):  # e.g. a port out of range
            where = "an unparsable Location"
        return RedirectError(f"redirected to {where} ({status}); check base_url", **kw)

    def _error_for(self, status: int, body: bytes, headers: httpx.Headers,
                   object_id: str | None) -> SyncError:
        kw: dict[str, Any] = {"connector": self.connector, "object_id": object_id,
                              "status": status, "body": body}
        special = (self.classify_error(status, body, headers)
                   if self.classify_error is not None else None)
        if special is not None:
            if isinstance(special, RateLimitedError):
                self.stats.rate_limited += 1
            return special
        if status == 429:
            self.stats.rate_limited += 1
            if self.rate_limiter is not None:
                self.rate_limiter.rate_limited()
            retry_after = parse_retry_after(headers.get("retry-after"),
                                            maximum=self.retry.max_retry_after)
            return RateLimitedError("rate limited", retry_after=retry_after, **kw)
        if status in (401, 403):
            return AuthError(self.describe_auth_failure(), **kw)
        if status == 404:
            return NotFoundError("not found", **kw)
        if status >= 500 or status in (408, 425):
            return TransientError("server error", **kw)
        return RejectedError("request rejected", **kw)


def build_http_client(base_url: str, *, auth: httpx.Auth | None = None,
                      headers: Mapping[str, str] | None = None,
                      transport: httpx.BaseTransport | None = None,
                      timeout: httpx.Timeout | float = DEFAULT_TIMEOUT) -> httpx.Client:
    return httpx.Client(base_url=base_url, auth=auth, headers=dict(headers or {}),
                        transport=transport, timeout=timeout, follow_redirects=False)


T = TypeVar("T")


# When to look for a write whose answer never came, in seconds after the failed send: a
# server busy for a while still commits the write later, so the lookups are spread out;
# what they do not find is left to the next passes (see syncer.recovery).
SETTLE_LOOKUPS: tuple[float, ...] = (1.0, 3.0, 10.0)


def write_once(api: ApiClient, send: Callable[[], T], lookup: Callable[[], T | None],
               *, object_id: str | None = None,
               settle: tuple[float, ...] = SETTLE_LOOKUPS) -> T:
    """Send a create that the remote does not de-duplicate, without ever doubling it.

    ``send`` must use ``retry_transient=False``. A write whose answer never came (timeout,
    5xx, connection dropped after sending) is *unknown*, not failed: its idempotency key
    is looked up at the ``settle`` delays, and if it is still not found the write is
    reported as ``OutcomeUnknownError``, never sent again here. A lookup that fails ends
    the wait the same way (a ``TransientError`` that may have been sent when the lookup's
    error was retriable, so a server in trouble still ends the pass). The caller's journal
    keeps it pending; recovery keeps looking on later passes and gives up only after a
    long quiet period.
    """
    try:
        return send()
    except TransientError as exc:
        if not exc.maybe_sent:
            raise
        cause = exc
    waited = 0.0
    for at in settle:
        api.clock.sleep(max(0.0, at - waited))
        waited = max(waited, at)
        try:
            found = lookup()
        except SyncError as exc:
            raise _lookup_failed(api, cause, exc, object_id) from exc
        if found is not None:
            log.info("write_found_after_error", connector=api.connector,
                     object_id=object_id, after_s=at)
            return found
    log.warning("write_outcome_unknown", connector=api.connector, object_id=object_id,
                looked_for_s=waited, error=cause.message)
    raise OutcomeUnknownError(
        f"no answer to a write and not found after {waited:g} s ({cause.message}); it may "
        "still land, so it is not sent again until recovery has looked for it long enough",
        connector=api.connector, object_id=object_id, status=cause.status) from cause


def _lookup_failed(api: ApiClient, cause: TransientError, exc: SyncError,
                   object_id: str | None) -> SyncError:
    """The error for a write whose answer never came and whose lookup failed. The lookup's
    failure says nothing about the write: passed on as it was, a 429 or a refused
    connection would read as "the write never reached the server", and the write would
    be sent again while the first may still land. Still retriable when the lookup was (a
    server in trouble ends the pass), the write kept pending either way."""
    log.warning("write_outcome_unknown", connector=api.connector, object_id=object_id,
                error=cause.message, lookup_error=exc.message)
    message = (f"no answer to a write ({cause.message}), and looking for it failed "
               f"({exc.message}); it may still land, so it is not sent again until recovery "
               "has looked for it long enough")
    if isinstance(exc, RetriableError):
        return TransientError(message, maybe_sent=True, connector=api.connector,
                              object_id=object_id, status=exc.status)
    return OutcomeUnknownError(message, connector=api.connector, object_id=object_id,
                               status=exc.status)
