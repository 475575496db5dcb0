"""The shared HTTP layer, driven through httpx.MockTransport with a fake clock (no sleeping)."""

from __future__ import annotations

import base64
import email.utils
import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import structlog
from fakes import FakeClock

from connectors.http import (
    ApiClient,
    RateLimiter,
    RetryPolicy,
    build_http_client,
    parse_retry_after,
    scrub_url,
)
from syncer.errors import (
    AuthError,
    BadPayloadError,
    FatalError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    TransientError,
)

TOKEN = "tok-7f3a9c2e51d84b6a"
EMAIL = "bot@example.com"
BASIC = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()

Handler = Callable[[httpx.Request], httpx.Response]




def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering each request with the next scripted response (or raising it)."""
    seen: list[httpx.Request] = []
    queue: Iterator[httpx.Response | Exception] = iter(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        nxt = next(queue)
        if isinstance(nxt, Exception):
            raise nxt
        return nxt

    return handle, seen


def make_client(handler: Handler, clock: FakeClock | None = None, *,
                retry: RetryPolicy | None = None, rate_limiter: RateLimiter | None = None,
                max_body_bytes: int = 1024 * 1024,
                describe_auth_failure: Callable[[], str] | None = None) -> ApiClient:
    http = build_http_client("https://acme.example.com/api/v1",
                             auth=httpx.BasicAuth(EMAIL, TOKEN),
                             transport=httpx.MockTransport(handler))
    return ApiClient("test", http, clock=clock or FakeClock(),
                     retry=retry or RetryPolicy(attempts=5, initial_backoff=0.5, max_backoff=8),
                     rate_limiter=rate_limiter, max_body_bytes=max_body_bytes,
                     describe_auth_failure=describe_auth_failure)


def ok(payload: object = None) -> httpx.Response:
    return httpx.Response(200, json={"ok": True} if payload is None else payload)


# -- success and error mapping --------------------------------------------------------------

def test_success_returns_status_body_and_headers() -> None:
    """A 2xx answer comes back as (status, raw body, headers) after a single request."""
    handler, seen = scripted(httpx.Response(201, content=b'{"id": 5}',
                                            headers={"X-Thing": "yes"}))
    api = make_client(handler)
    status, body, headers = api.request("POST", "/things.json", json_body={"a": 1})
    assert (status, body, headers["x-thing"]) == (201, b'{"id": 5}', "yes")
    assert json.loads(seen[0].content) == {"a": 1}
    assert api.stats.requests == 1 and api.stats.retries == 0
    assert api.stats.by_method == {"POST": 1}


def test_get_json_decodes_and_sends_params() -> None:
    """get_json sends the query parameters and returns the decoded JSON document."""
    handler, seen = scripted(ok({"conversations": [1, 2]}))
    api = make_client(handler)
    assert api.get_json("/conversations", params={"page": 2}) == {"conversations": [1, 2]}
    assert seen[0].url.params["page"] == "2"
    assert seen[0].headers["authorization"] == f"Basic {BASIC}"


def test_send_json_empty_body_returns_none() -> None:
    """A write answered with an empty body (204) yields None instead of a decode error."""
    handler, seen = scripted(httpx.Response(204))
    api = make_client(handler)
    assert api.send_json("PUT", "/issues/1.json", {"issue": {"notes": "x"}}) is None
    assert seen[0].method == "PUT"
    assert json.loads(seen[0].content) == {"issue": {"notes": "x"}}


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_fatal_and_never_shows_the_token(status: int) -> None:
    """401/403 raise AuthError with the connector's explanation, once, without credentials."""
    handler, seen = scripted(httpx.Response(status, json={"error": "Invalid credentials"}))
    api = make_client(handler, describe_auth_failure=lambda: "check REAMAZE_API_TOKEN")
    with pytest.raises(AuthError) as info:
        api.get_json("/conversations", params={"key": TOKEN})
    text = str(info.value)
    assert "check REAMAZE_API_TOKEN" in text
    assert info.value.status == status and isinstance(info.value, FatalError)
    assert TOKEN not in text and BASIC not in text
    assert len(seen) == 1


def test_not_found_is_fatal_and_carries_object_id() -> None:
    """404 raises NotFoundError naming the object, without retrying."""
    handler, seen = scripted(httpx.Response(404, text="missing"))
    api = make_client(handler)
    with pytest.raises(NotFoundError) as info:
        api.get_json("/issues/77.json", object_id="77")
    assert info.value.object_id == "77" and info.value.status == 404
    assert info.value.body == "missing"
    assert len(seen) == 1


@pytest.mark.parametrize("status", [400, 409, 422])
def test_validation_errors_are_rejected_with_trimmed_body(status: int) -> None:
    """4xx validation answers raise RejectedError carrying the status and a trimmed body."""
    long_body = json.dumps({"errors": ["Subject cannot be blank"] + ["x" * 100] * 30})
    handler, seen = scripted(httpx.Response(status, text=long_body))
    api = make_client(handler)
    with pytest.raises(RejectedError) as info:
        api.send_json("POST", "/issues.json", {"issue": {}})
    err = info.value
    assert err.status == status
    assert err.body.startswith('{"errors": ["Subject cannot be blank"')
    assert len(err.body) < 600 and "more chars" in err.body
    assert len(seen) == 1


def test_server_errors_are_retried_until_success() -> None:
    """5xx answers are retried with backoff and the eventual 200 is returned."""
    handler, seen = scripted(httpx.Response(500), httpx.Response(502), httpx.Response(503),
                             ok())
    clock = FakeClock()
    api = make_client(handler, clock)
    assert api.get_json("/x") == {"ok": True}
    assert len(seen) == 4
    assert api.stats.retries == 3 and api.stats.requests == 4
    assert len(clock.sleeps) == 3 and all(s > 0 for s in clock.sleeps)


def test_server_errors_exhaust_attempts_with_transient_error() -> None:
    """When every attempt fails with 5xx the last TransientError is raised."""
    handler, seen = scripted(*[httpx.Response(500, text="boom")] * 5)
    api = make_client(handler)
    with pytest.raises(TransientError) as info:
        api.get_json("/x")
    assert info.value.status == 500 and info.value.body == "boom"
    assert len(seen) == 5 and api.stats.retries == 4


# -- 429 and Retry-After --------------------------------------------------------------------

def test_retry_after_seconds_is_slept_exactly() -> None:
    """A 429 with Retry-After: 7 waits exactly seven seconds before the retry."""
    handler, _ = scripted(httpx.Response(429, headers={"Retry-After": "7"}), ok())
    clock = FakeClock()
    api = make_client(handler, clock)
    assert api.get_json("/x") == {"ok": True}
    assert clock.sleeps == [7.0]
    assert api.stats.rate_limited == 1 and api.stats.retries == 1


def test_retry_after_http_date_waits_until_that_time() -> None:
    """A Retry-After HTTP date is turned into the delay until that moment."""
    when = datetime.now(UTC) + timedelta(seconds=30)
    header = email.utils.format_datetime(when, usegmt=True)
    handler, _ = scripted(httpx.Response(429, headers={"Retry-After": header}), ok())
    clock = FakeClock()
    make_client(handler, clock).get_json("/x")
    assert len(clock.sleeps) == 1
    # The header has whole seconds and a little real time passes before it is parsed.
    assert 27.0 < clock.sleeps[0] <= 30.0


def test_parse_retry_after_forms() -> None:
    """parse_retry_after reads delta-seconds and HTTP dates, clamps, and rejects junk."""
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("12", now=now) == 12.0
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after("Sun, 01 Mar 2026 12:00:45 GMT", now=now) == 45.0
    assert parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now=now) == 0.0  # in the past
    assert parse_retry_after("-5", now=now) == 0.0
    assert parse_retry_after("100000", now=now, maximum=60) == 60.0
    assert parse_retry_after("inf", now=now, maximum=60) == 60.0
    for junk in (None, "", "soon", "nan", "Thu, 99 Foo 2026"):
        assert parse_retry_after(junk, now=now) is None


def test_huge_retry_after_is_clamped() -> None:
    """A Retry-After larger than max_retry_after waits only max_retry_after."""
    handler, _ = scripted(httpx.Response(429, headers={"Retry-After": "86400"}), ok())
    clock = FakeClock()
    policy = RetryPolicy(attempts=3, max_retry_after=45.0)
    make_client(handler, clock, retry=policy).get_json("/x")
    assert clock.sleeps == [45.0]


def test_malformed_retry_after_falls_back_to_backoff() -> None:
    """An unreadable Retry-After uses the ordinary jittered backoff instead."""
    handler, _ = scripted(httpx.Response(429, headers={"Retry-After": "later please"}), ok())
    clock = FakeClock()
    policy = RetryPolicy(attempts=3, initial_backoff=2.0, max_backoff=30.0)
    make_client(handler, clock, retry=policy).get_json("/x")
    assert len(clock.sleeps) == 1
    assert 2.0 <= clock.sleeps[0] <= 3.0  # initial + jitter in [0, 1]


def test_rate_limit_storm_shorter_than_attempts_succeeds() -> None:
    """Several 429s in a row, fewer than the attempt budget, still end in success."""
    storm = [httpx.Response(429, headers={"Retry-After": "2"})] * 6
    handler, seen = scripted(*storm, ok())
    clock = FakeClock()
    api = make_client(handler, clock, retry=RetryPolicy(attempts=7))
    assert api.get_json("/x") == {"ok": True}
    assert clock.sleeps == [2.0] * 6
    assert api.stats.rate_limited == 6 and len(seen) == 7


def test_rate_limit_exhausting_attempts_raises_rate_limited() -> None:
    """When every attempt is answered 429 the caller gets RateLimitedError with retry_after."""
    handler, seen = scripted(*[httpx.Response(429, headers={"Retry-After": "3"})] * 4)
    clock = FakeClock()
    api = make_client(handler, clock, retry=RetryPolicy(attempts=4))
    with pytest.raises(RateLimitedError) as info:
        api.get_json("/x")
    assert info.value.retry_after == 3.0 and info.value.status == 429
    assert len(seen) == 4 and clock.sleeps == [3.0] * 3


def test_backoff_jitter_is_bounded_by_max_backoff() -> None:
    """Exponential backoff grows from initial_backoff and never exceeds max_backoff."""
    handler, _ = scripted(*[httpx.Response(503)] * 9, ok())
    clock = FakeClock()
    policy = RetryPolicy(attempts=10, initial_backoff=1.0, max_backoff=4.0)
    make_client(handler, clock, retry=policy).get_json("/x")
    assert len(clock.sleeps) == 9
    assert 1.0 <= clock.sleeps[0] <= 2.0
    assert all(0 < s <= 4.0 for s in clock.sleeps)
    assert clock.sleeps[2:] == [4.0] * 7  # 4 + jitter and beyond, clamped


def test_backoff_policy_stays_within_bounds_for_any_attempt() -> None:
    """RetryPolicy.backoff is at least the doubled delay (until capped) and at most the cap."""
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=30.0)
    for attempt in range(1, 200):
        for _ in range(20):
            delay = policy.backoff(attempt)
            assert min(0.5 * 2 ** min(attempt - 1, 60), 30.0) <= delay <= 30.0


# -- transport failures ---------------------------------------------------------------------

@pytest.mark.parametrize("exc", [
    httpx.ReadTimeout("read timed out"),
    httpx.ConnectTimeout("connect timed out"),
    httpx.ConnectError("connection refused"),
    httpx.RemoteProtocolError("peer closed connection"),
])
def test_transport_failures_are_transient_and_retried(exc: Exception) -> None:
    """Timeouts and connection failures become TransientError and are retried."""
    handler, seen = scripted(exc, ok())
    api = make_client(handler)
    assert api.get_json("/x") == {"ok": True}
    assert len(seen) == 2 and api.stats.retries == 1


def test_transport_failure_exhausted_raises_transient_without_url() -> None:
    """A timeout on every attempt raises TransientError whose text has no URL or token."""
    handler, seen = scripted(*[httpx.ReadTimeout("timed out")] * 5)
    api = make_client(handler)
    with pytest.raises(TransientError) as info:
        api.get_json("/x", params={"key": TOKEN})
    assert "ReadTimeout" in str(info.value)
    assert TOKEN not in str(info.value) and "acme.example.com" not in str(info.value)
    assert len(seen) == 5


def test_fatal_errors_are_not_retried_after_transient_ones() -> None:
    """A 500 followed by a 404 stops at the 404 instead of retrying it."""
    handler, seen = scripted(httpx.Response(500), httpx.Response(404), ok())
    api = make_client(handler)
    with pytest.raises(NotFoundError):
        api.get_json("/x")
    assert len(seen) == 2


# -- payload guards -------------------------------------------------------------------------

def test_oversized_body_is_bad_payload_and_not_retried() -> None:
    """A body larger than max_body_bytes raises BadPayloadError after one request."""
    handler, seen = scripted(httpx.Response(200, content=b"x" * 5000))
    api = make_client(handler, max_body_bytes=4096)
    with pytest.raises(BadPayloadError) as info:
        api.get_json("/x")
    assert "4096" in str(info.value)
    assert len(seen) == 1


def test_body_at_the_limit_is_accepted() -> None:
    """A body of exactly max_body_bytes is still read."""
    body = json.dumps("a" * 98).encode()  # 100 bytes with the quotes
    handler, _ = scripted(httpx.Response(200, content=body))
    assert make_client(handler, max_body_bytes=100).get_json("/x") == "a" * 98


def test_non_utf8_body_is_bad_payload() -> None:
    """A body that is not UTF-8 raises BadPayloadError, not UnicodeDecodeError."""
    handler, _ = scripted(httpx.Response(200, content=b'{"name": "\xff\xfe"}'))
    with pytest.raises(BadPayloadError, match="not UTF-8"):
        make_client(handler).get_json("/x")


def test_invalid_json_is_bad_payload_with_trimmed_body() -> None:
    """An HTML error page answered with 200 raises BadPayloadError showing the start of it."""
    handler, _ = scripted(httpx.Response(200, text="<html>" + "maintenance " * 100))
    with pytest.raises(BadPayloadError, match="not JSON") as info:
        make_client(handler).get_json("/x", object_id="12")
    assert info.value.body.startswith("<html>maintenance")
    assert info.value.object_id == "12"


# -- rate limiter ---------------------------------------------------------------------------

def test_rate_limiter_bursts_then_spaces_requests() -> None:
    """At 60/min with a burst of 5, 12 requests take 7 simulated seconds: 5 at once, then 1/s."""
    clock = FakeClock()
    start = clock.now
    limiter = RateLimiter(per_minute=60, burst=5, clock=clock)
    times: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        times.append(clock.now - start)
        return ok()

    api = make_client(handle, clock, rate_limiter=limiter)
    for _ in range(12):
        api.get_json("/x")
    assert times[:5] == [0.0] * 5
    assert times[5:] == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert limiter.waited == pytest.approx(7.0)


def test_rate_limiter_never_exceeds_budget_in_any_window() -> None:
    """Over a long run no window of length T holds more than burst + rate * T requests."""
    clock = FakeClock()
    limiter = RateLimiter(per_minute=90, burst=3, clock=clock)
    times: list[float] = []
    for i in range(200):
        if i % 7 == 0:
            clock.now += 0.4  # the caller spends some time between some requests
        limiter.acquire()
        times.append(clock.now)
    rate = 90 / 60
    for i, j in itertools.combinations(range(len(times)), 2):
        assert j - i + 1 <= 3 + rate * (times[j] - times[i]) + 1e-6
    # and it is not needlessly slow: the whole run is within a second of the ideal pace
    assert times[-1] - times[0] <= (200 - 3) / rate + 1.0


def test_rate_limiter_refills_after_idle_time() -> None:
    """After idling, the bucket refills to its burst size, and no further."""
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=4, clock=clock)
    for _ in range(4):
        limiter.acquire()
    assert clock.sleeps == []
    clock.now += 3600
    for _ in range(4):
        limiter.acquire()
    assert clock.sleeps == []
    limiter.acquire()
    assert clock.sleeps == [pytest.approx(1.0)]


def test_rate_limiter_default_burst_and_validation() -> None:
    """Without a burst the bucket holds one second's worth (at least 1); rate must be > 0."""
    clock = FakeClock()
    limiter = RateLimiter(per_minute=30, clock=clock)
    limiter.acquire()
    limiter.acquire()
    assert clock.sleeps == [pytest.approx(2.0)]
    assert RateLimiter(per_minute=600, clock=clock).capacity == 10
    with pytest.raises(ValueError):
        RateLimiter(per_minute=0)


# -- scrubbing ------------------------------------------------------------------------------

def test_scrub_url_masks_secret_query_params_and_userinfo() -> None:
    """scrub_url hides key/token parameters and user:password, and keeps everything else."""
    url = f"https://{EMAIL.replace('@', '%40')}:{TOKEN}@redmine.example.com:8443/issues.json" \
          f"?project_id=web&key={TOKEN}&limit=100&API_KEY={TOKEN}&access_token=abc#frag"
    out = scrub_url(url)
    assert TOKEN not in out and "abc" not in out and "bot" not in out
    assert out == ("https://redmine.example.com:8443/issues.json"
                   "?project_id=web&key=***&limit=100&API_KEY=***&access_token=***")


def test_scrub_url_accepts_httpx_urls_and_relative_paths() -> None:
    """httpx.URL objects, IPv6 hosts and bare paths are scrubbed too."""
    assert scrub_url(httpx.URL("http://[::1]:3000/a?token=s3cret")) == \
        "http://[::1]:3000/a?token=***"
    assert scrub_url("/issues.json?key=s3cret&offset=0") == "/issues.json?key=***&offset=0"
    assert scrub_url("https://x.example/plain") == "https://x.example/plain"


def test_retry_log_event_has_scrubbed_path_and_error_fields() -> None:
    """Each retry logs http_retry with attempt, sleep and error type, the path scrubbed."""
    handler, _ = scripted(httpx.Response(429, headers={"Retry-After": "1"}), ok())
    api = make_client(handler)
    with structlog.testing.capture_logs() as logs:
        api.get_json(f"/issues.json?key={TOKEN}", object_id="9")
    retries = [e for e in logs if e["event"] == "http_retry"]
    assert len(retries) == 1
    event = retries[0]
    assert event["path"] == "/issues.json?key=***"
    assert event["error_type"] == "RateLimitedError" and event["http_status"] == 429
    assert event["attempt"] == 1 and event["sleep_s"] == 1.0 and event["object_id"] == "9"
    assert TOKEN not in repr(logs)
