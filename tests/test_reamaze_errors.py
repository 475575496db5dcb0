"""Re:amaze failures: rate limits, server errors, timeouts, auth, and bad payloads."""

from __future__ import annotations

import json

import httpx
import pytest
from reamaze_support import BRAND, LOGIN, TOKEN, RecordingClock, make_connector
from structlog.testing import capture_logs

from connectors.http import ApiClient
from connectors.reamaze.connector import ReamazeConnector
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.reamaze.sim.state import SimClock
from syncer.config import HttpSettings
from syncer.errors import (
    AuthError,
    BadPayloadError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from syncer.models import NewComment, NewTicket, TicketState, Visibility

pytest_plugins = ["reamaze_fixtures"]

CONV = "/api/v1/conversations"


def attempts(n: int) -> HttpSettings:
    return HttpSettings(requests_per_minute=60_000, burst=100, max_attempts=n)


@pytest.fixture
def slug(rz_sim: ReamazeSimulator) -> str:
    return rz_sim.add_conversation("Broken", "it broke", "cu@x.example")


def test_a_429_storm_is_ridden_out_with_the_servers_retry_after(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, rz_clock: RecordingClock,
        slug: str) -> None:
    """Six 429s with Retry-After: 2 then success: no failure, six sleeps of exactly 2 s."""
    rz_sim.faults.add(429, retry_after="2", times=6, path_prefix=CONV)
    with capture_logs() as logs:
        assert rz_conn.get_ticket(slug).id == slug
    assert rz_clock.sleeps == [2.0] * 6
    assert [r.status for r in rz_sim.calls("GET", CONV)] == [429] * 6 + [200]
    assert rz_conn.api.stats.rate_limited == 6
    assert [e["event"] for e in logs].count("http_retry") == 6
    assert TOKEN not in repr(logs)


def test_endless_429_gives_up_with_a_rate_limited_error(
        rz_sim: ReamazeSimulator, rz_clock: RecordingClock, slug: str) -> None:
    """When the budget of attempts runs out the error says rate limited, with the delay."""
    rz_conn = make_connector(rz_sim, rz_clock, http=attempts(3))
    rz_sim.faults.add(429, retry_after="7", times=None)
    with pytest.raises(RateLimitedError) as err:
        rz_conn.get_ticket(slug)
    assert err.value.retry_after == 7.0 and len(rz_sim.requests) == 3


def test_server_errors_are_retried_with_backoff(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator,
                                                rz_clock: RecordingClock, slug: str) -> None:
    """502 then 503 then success: the read succeeds after two positive back-off sleeps."""
    rz_sim.faults.add(502, times=1)
    rz_sim.faults.add(503, times=1)
    assert rz_conn.get_ticket(slug).id == slug
    assert len(rz_clock.sleeps) == 2 and all(s > 0 for s in rz_clock.sleeps)


def test_a_timeout_is_retried(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator,
                              rz_clock: RecordingClock, slug: str) -> None:
    """A read timeout from the transport is transient: the next attempt succeeds."""
    rz_sim.faults.add(timeout=True, times=1, path_prefix=CONV)
    assert rz_conn.get_ticket(slug).id == slug
    assert [r.status for r in rz_sim.requests] == [None, 200]
    assert len(rz_clock.sleeps) == 1


def test_persistent_timeouts_end_as_a_transient_error(
        rz_sim: ReamazeSimulator, rz_clock: RecordingClock, slug: str) -> None:
    """Timeouts on every attempt surface as TransientError, never an httpx exception."""
    rz_conn = make_connector(rz_sim, rz_clock, http=attempts(2))
    rz_sim.faults.add(timeout=True, times=None)
    with pytest.raises(TransientError, match="timeout"):
        rz_conn.get_ticket(slug)


def test_a_lost_comment_response_is_found_not_resent(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, slug: str) -> None:
    """A message POST that took effect but timed out is found by marker, not posted twice."""
    rz_sim.faults.add(timeout=True, times=1, method="POST", commit=True)
    comment = rz_conn.create_comment(slug, NewComment(body="once", visibility=Visibility.INTERNAL,
                                                   marker="rs-lost"))
    assert comment.id == "rs-lost" and comment.visibility is Visibility.INTERNAL
    assert len(rz_sim.calls("POST")) == 1
    origin_ids = [m.origin_id for m in rz_sim.conversations[slug].messages]
    assert origin_ids.count("rs-lost") == 1


def test_a_comment_post_answered_502_is_unknown_and_never_resent(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, slug: str) -> None:
    """A 502 may come from a proxy after the app stored the message (and emailed the
    customer): the marker is looked for, and when absent the write is reported unknown,
    never posted a second time by the connector."""
    rz_sim.faults.add(502, times=1, method="POST")
    with pytest.raises(OutcomeUnknownError):
        rz_conn.create_comment(slug, NewComment(body="again", visibility=Visibility.PUBLIC,
                                                marker="rs-retry"))
    assert len(rz_sim.calls("POST")) == 1


def test_a_lost_conversation_create_is_found_by_marker(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """create_ticket whose 500 came after the write returns the stored conversation, once."""
    rz_sim.faults.add(500, times=2, method="POST", path_prefix=CONV, commit=True)
    ticket = rz_conn.create_ticket(NewTicket(subject="Tracker bug", description="d",
                                          marker="rs-conv"))
    assert ticket.marker == "rs-conv"
    assert [c.data.get("reamaze_sync_marker") for c in rz_sim.conversations.values()] == [
        "rs-conv"]
    assert len(rz_sim.calls("POST", CONV)) == 1


def test_a_create_that_keeps_failing_is_sent_once_and_reported_unknown(
        rz_sim: ReamazeSimulator, rz_clock: RecordingClock, slug: str) -> None:
    """Persistent 503s on POST: one POST, lookups, then an unknown outcome; no message
    stored twice."""
    rz_conn = make_connector(rz_sim, rz_clock, http=attempts(3))
    rz_sim.faults.add(503, times=None, method="POST")
    with pytest.raises(OutcomeUnknownError):
        rz_conn.create_comment(slug, NewComment(body="x", visibility=Visibility.PUBLIC,
                                                marker="rs-never"))
    assert len(rz_sim.calls("POST")) == 1
    assert all(m.origin_id != "rs-never" for m in rz_sim.conversations[slug].messages)


def test_a_rate_limited_create_is_simply_retried(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, rz_clock: RecordingClock,
        slug: str) -> None:
    """429 means not processed, so a POST is re-sent after Retry-After with no lookup."""
    rz_sim.faults.add(429, retry_after="3", times=2, method="POST")
    rz_conn.create_comment(slug, NewComment(body="x", visibility=Visibility.PUBLIC,
                                         marker="rs-429"))
    assert rz_clock.sleeps == [3.0, 3.0]
    assert [r.method for r in rz_sim.requests] == ["POST"] * 3


def test_bad_credentials_name_the_brand_and_login_but_never_the_token(
        rz_sim: ReamazeSimulator, rz_clock: RecordingClock, slug: str) -> None:
    """A 403 is an AuthError naming brand and login, without the token, and is not retried."""
    wrong = "wrong-token-XYZ-999"
    rz_conn = make_connector(rz_sim, rz_clock, token=wrong)
    with capture_logs() as logs, pytest.raises(AuthError) as err:
        rz_conn.get_ticket(slug)
    text = str(err.value)
    assert BRAND in text and LOGIN in text
    assert wrong not in text and TOKEN not in text
    assert wrong not in repr(logs)
    assert err.value.status == 403 and len(rz_sim.requests) == 1
    with pytest.raises(AuthError):
        rz_conn.check()


def test_check_describes_who_we_are(rz_conn: ReamazeConnector) -> None:
    """check() verifies credentials and names brand and login."""
    assert rz_conn.check() == f"brand {BRAND} as {LOGIN} (Sync Bot)"


def test_a_wrong_brand_is_not_found(rz_sim: ReamazeSimulator, rz_clock: RecordingClock) -> None:
    """A brand host the account does not have answers 404, like the real service."""
    rz_conn = make_connector(rz_sim, rz_clock, brand="other")
    with pytest.raises(NotFoundError):
        rz_conn.check()


def test_validation_failure_is_rejected_with_the_body(rz_conn: ReamazeConnector,
                                                      slug: str) -> None:
    """An empty message body is a 422 RejectedError carrying the server's explanation."""
    with pytest.raises(RejectedError) as err:
        rz_conn.create_comment(slug, NewComment(body=" ", visibility=Visibility.PUBLIC,
                                             marker="rs-empty"))
    assert err.value.status == 422
    assert json.loads(err.value.body) == {"errors": {"body": ["can't be blank"]}}


@pytest.mark.parametrize(("body", "message"), [
    (b'{"slug": "broken", "created_at": ', "not JSON"),
    (b'\xff\xfe{"slug": "x"}', "not UTF-8"),
    (b'{"slug": "broken", "created_at": "2026-01-05T10:00:00Z"} trailing', "not JSON"),
    (b'["a", "list"]', "expected a JSON object"),
    (b'{"created_at": "2026-01-05T10:00:00Z"}', "slug"),
    (b'{"slug": "broken", "created_at": "2026-01-05 10:00"}', "created_at"),
    (b"", "not JSON"),
])
def test_bad_payloads_are_typed_errors(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator,
                                       slug: str, body: bytes, message: str) -> None:
    """Malformed, non-UTF-8, trailing-garbage or incomplete bodies raise BadPayloadError once."""
    rz_sim.faults.add(200, body=body, path_prefix=CONV)
    with pytest.raises(BadPayloadError, match=message):
        rz_conn.get_ticket(slug)
    assert len(rz_sim.requests) == 1  # not retried


def test_a_huge_body_is_refused_at_the_cap(rz_sim: ReamazeSimulator, rz_clock: RecordingClock,
                                           slug: str) -> None:
    """A response over the byte cap is a BadPayloadError, read no further."""
    client = httpx.Client(base_url=f"https://{BRAND}.reamaze.io/api/v1",
                          auth=httpx.BasicAuth(LOGIN, TOKEN),
                          headers={"Accept": "application/json"},
                          transport=httpx.MockTransport(rz_sim.handle))
    rz_conn = ReamazeConnector(ApiClient("reamaze", client, clock=rz_clock, max_body_bytes=10_000),
                            brand=BRAND, login_email=LOGIN)
    padding = "x" * 50_000
    rz_sim.faults.add(200, body=json.dumps({"slug": slug, "created_at": "2026-01-05T10:00:00Z",
                                         "subject": padding}).encode())
    with pytest.raises(BadPayloadError, match="larger than 10000"):
        rz_conn.get_ticket(slug)
    assert rz_conn.get_ticket(slug).id == slug  # normal sizes still fine


def test_an_unknown_status_code_reads_safely(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator,
                                             slug: str) -> None:
    """A status integer nobody documented reads as an open 'Unknown (N)' with a warning."""
    rz_sim.set_status(slug, 42)
    with capture_logs() as logs:
        ticket = rz_conn.get_ticket(slug)
    assert (ticket.status.code, ticket.status.name, ticket.status.state) == (
        "42", "Unknown (42)", TicketState.OPEN)
    assert any(e["event"] == "reamaze_unknown_status" for e in logs)


def test_a_broken_list_item_is_skipped_not_the_page(rz_conn: ReamazeConnector,
                                                    rz_sim: ReamazeSimulator) -> None:
    """One conversation without a slug is dropped with a warning; its neighbours survive."""
    page = {"page_size": 30, "page_count": 1, "total_count": 3, "conversations": [
        {"slug": "good-1", "created_at": "2026-01-05T10:00:00Z", "status": 0},
        {"subject": "no slug", "created_at": "2026-01-05T10:00:00Z"},
        {"slug": "good-2", "created_at": "2026-01-05T11:00:00+02:00", "status": 99},
    ]}
    rz_sim.faults.add(200, body=json.dumps(page).encode(), path_prefix=CONV)
    with capture_logs() as logs:
        tickets = list(rz_conn.list_tickets())
    assert [t.id for t in tickets] == ["good-1", "good-2"]
    assert tickets[1].status.name == "Unknown (99)"
    assert [e["event"] for e in logs].count("reamaze_item_skipped") == 1


@pytest.mark.parametrize("body", [
    b'[]', b'{"conversations": {"not": "a list"}}', b'"text"',
])
def test_a_malformed_page_envelope_is_a_bad_payload(rz_conn: ReamazeConnector,
                                                    rz_sim: ReamazeSimulator, body: bytes) -> None:
    """A page that is not an object with a conversations list raises BadPayloadError."""
    rz_sim.faults.add(200, body=body, path_prefix=CONV)
    with pytest.raises(BadPayloadError):
        list(rz_conn.iter_changes(None))


def test_a_page_that_repeats_forever_is_stopped(rz_conn: ReamazeConnector,
                                                rz_sim: ReamazeSimulator) -> None:
    """A server that ignores `page` and claims more pages cannot trap the walk."""
    page = {"page_size": 30, "page_count": 5, "total_count": 150, "conversations": [
        {"slug": "same", "created_at": "2026-01-05T10:00:00Z", "status": 0}]}
    rz_sim.faults.add(200, body=json.dumps(page).encode(), times=None, path_prefix=CONV)
    with pytest.raises(BadPayloadError, match="loop"):
        list(rz_conn.list_tickets())


def test_the_simulators_rate_limit_is_respected(rz_sim: ReamazeSimulator, rz_clock: RecordingClock,
                                                rz_sim_clock: SimClock, slug: str) -> None:
    """With a 5-per-minute limit, twelve reads all succeed by waiting out the 429s."""
    rz_conn = make_connector(rz_sim, rz_clock, http=attempts(10))
    rz_sim.rate_limit(5)
    for _ in range(12):
        assert rz_conn.get_ticket(slug).id == slug
    statuses = [r.status for r in rz_sim.requests]
    assert statuses.count(200) == 12 and statuses.count(429) >= 2
    assert rz_clock.sleeps and all(s >= 1 for s in rz_clock.sleeps)


def test_client_side_budget_keeps_under_the_limit(rz_sim: ReamazeSimulator,
                                                  rz_clock: RecordingClock,
                                                  slug: str) -> None:
    """A configured requests_per_minute paces calls so the server never answers 429."""
    rz_conn = make_connector(rz_sim, rz_clock, http=HttpSettings(requests_per_minute=5, burst=1))
    rz_sim.rate_limit(5)
    for _ in range(8):
        rz_conn.get_ticket(slug)
    assert all(r.status == 200 for r in rz_sim.requests)
    assert rz_conn.api.rate_limiter is not None and rz_conn.api.rate_limiter.waited >= 60
