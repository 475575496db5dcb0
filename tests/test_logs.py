"""Logging configuration and secret redaction, down to the rendered output."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any, NamedTuple

import httpx
import pytest
import structlog
from fakes import FakeClock

from connectors.http import ApiClient, RetryPolicy, build_http_client
from syncer.errors import TransientError
from syncer.logs import configure_logging, redact, register_secret

SECRET = "sk-live-8d1f0a7c33e94b2b"
OTHER_SECRET = "redmine-key-51c0e2f9aa"




@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Each test configures structlog its own way; put the defaults back afterwards."""
    yield
    structlog.reset_defaults()


def configured(fmt: str, level: str = "debug") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level=level, fmt=fmt, stream=stream)  # type: ignore[arg-type]
    return stream


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# -- rendering ------------------------------------------------------------------------------

def test_json_format_is_one_object_per_line() -> None:
    """fmt=json writes one JSON object per event, with level and UTC timestamp."""
    stream = configured("json")
    log = structlog.get_logger("t")
    log.info("issue_created", issue_id="12", pair="web")
    log.warning("cursor_advanced", watermark="2026-01-01T00:00:00Z")
    events = json_lines(stream)
    assert [e["event"] for e in events] == ["issue_created", "cursor_advanced"]
    assert events[0]["issue_id"] == "12" and events[0]["level"] == "info"
    assert events[1]["level"] == "warning"
    assert events[0]["timestamp"].endswith("Z")


def test_auto_format_on_a_pipe_is_json() -> None:
    """fmt=auto on a non-terminal stream (a pipe, a file) writes JSON lines."""
    stream = configured("auto")
    structlog.get_logger("t").info("run_finished", created=3)
    assert json_lines(stream)[0]["created"] == 3


def test_console_format_is_human_readable() -> None:
    """fmt=console writes a readable line with the event name and key=value pairs."""
    stream = configured("console")
    structlog.get_logger("t").info("issue_created", issue_id="12")
    out = stream.getvalue()
    assert "issue_created" in out and "issue_id=12" in out
    assert "\x1b[" not in out  # no colours on a non-terminal
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.splitlines()[0])


def test_level_filters_lower_events() -> None:
    """Events below the configured level are dropped."""
    stream = configured("json", level="warning")
    log = structlog.get_logger("t")
    log.debug("noise")
    log.info("chatter")
    log.error("sync_failed")
    assert [e["event"] for e in json_lines(stream)] == ["sync_failed"]


def test_bound_context_is_merged() -> None:
    """Context bound with contextvars appears on every event of the run."""
    stream = configured("json")
    structlog.contextvars.bind_contextvars(run_id="r-1")
    try:
        structlog.get_logger("t").info("run_started")
    finally:
        structlog.contextvars.clear_contextvars()
    assert json_lines(stream)[0]["run_id"] == "r-1"


# -- redaction ------------------------------------------------------------------------------

def test_registered_secret_is_masked_everywhere_in_json_output() -> None:
    """A registered secret never reaches the output, in messages, nested dicts or lists."""
    register_secret(SECRET)
    stream = configured("json")
    structlog.get_logger("t").info(
        f"calling with {SECRET} inline",
        url=f"https://x.example/a?q={SECRET}",
        nested={"headers": {"x-custom": f"pre-{SECRET}-post"}, "list": [SECRET, 1, None]},
        as_tuple=("a", SECRET),
    )
    out = stream.getvalue()
    assert SECRET not in out
    event = json_lines(stream)[0]
    assert event["event"] == "calling with *** inline"
    assert event["nested"]["headers"]["x-custom"] == "pre-***-post"
    assert event["nested"]["list"] == ["***", 1, None]
    assert event["as_tuple"] == ["a", "***"]


def test_registered_secret_is_masked_in_console_output() -> None:
    """The console renderer gets the same redaction as JSON."""
    register_secret(SECRET)
    stream = configured("console")
    structlog.get_logger("t").warning("oops", detail={"body": f"token was {SECRET}"})
    assert SECRET not in stream.getvalue()
    assert "***" in stream.getvalue()


def test_short_values_are_not_registered() -> None:
    """Values shorter than four characters are ignored, so they cannot blank out text."""
    register_secret("ab")
    stream = configured("json")
    structlog.get_logger("t").info("tab about")
    assert json_lines(stream)[0]["event"] == "tab about"


def test_overlapping_secrets_leave_no_tail() -> None:
    """When one secret contains another, the longer one is masked whole."""
    register_secret("abcd1234")
    register_secret("abcd1234-and-more")
    stream = configured("json")
    structlog.get_logger("t").info("x", value="abcd1234-and-more")
    assert json_lines(stream)[0]["value"] == "***"


@pytest.mark.parametrize("key", ["authorization", "Authorization", "api_key", "token",
                                 "access_token", "password", "client_secret", "cookie",
                                 "X-Redmine-API-Key"])
def test_secret_looking_keys_are_masked(key: str) -> None:
    """Values under secret-looking keys are masked, at the top level and nested."""
    stream = configured("json")
    structlog.get_logger("t").info("request", **{key: "visible-value"},
                                   headers={key: "visible-value", "accept": "json"})
    out = stream.getvalue()
    assert "visible-value" not in out
    event = json_lines(stream)[0]
    assert event[key] == "***"
    assert event["headers"] == {key: "***", "accept": "json"}


@pytest.mark.parametrize("text", [
    "Authorization: Basic dXNlcjpwYXNz",
    "authorization:Bearer abc.def.ghi",
    "{'authorization': 'Basic dXNlcjpwYXNz', 'accept': '*/*'}",
    '{"Authorization": "Bearer abc.def.ghi"}',
    "Authorization=Token 0123456789abcdef",
])
def test_authorization_header_text_is_masked(text: str) -> None:
    """Credentials after an Authorization header name are masked inside free text."""
    stream = configured("json")
    structlog.get_logger("t").info("dump", raw=text)
    out = stream.getvalue()
    for credential in ("dXNlcjpwYXNz", "abc.def.ghi", "0123456789abcdef"):
        assert credential not in out
    assert "***" in json_lines(stream)[0]["raw"]


def test_objects_are_rendered_and_scrubbed() -> None:
    """Non-JSON objects (exceptions, named tuples) are turned into scrubbed text."""

    class Pair(NamedTuple):
        name: str
        token: str

    register_secret(OTHER_SECRET)
    stream = configured("json")
    structlog.get_logger("t").error("failed", error=RuntimeError(f"bad key {OTHER_SECRET}"),
                                    pair=Pair("web", OTHER_SECRET), count=3, ok=True)
    out = stream.getvalue()
    assert OTHER_SECRET not in out
    event = json_lines(stream)[0]
    assert event["error"] == "bad key ***"
    assert event["pair"] == ["web", "***"]
    assert event["count"] == 3 and event["ok"] is True


def test_exception_traceback_is_scrubbed() -> None:
    """A logged exception's formatted traceback is scrubbed as well."""
    register_secret(OTHER_SECRET)
    stream = configured("json")
    try:
        raise ValueError(f"url had key={OTHER_SECRET}")
    except ValueError:
        structlog.get_logger("t").exception("sync_failed")
    out = stream.getvalue()
    event = json_lines(stream)[0]
    assert "ValueError" in event["exception"]
    assert OTHER_SECRET not in out


def test_redact_processor_with_capture_logs() -> None:
    """The redact processor works inside structlog's capture_logs for assertion on events."""
    register_secret(SECRET)
    with structlog.testing.capture_logs(processors=[redact]) as logs:
        structlog.get_logger("t").info("http_request", url=f"/a?key={SECRET}", api_key=SECRET,
                                       attempts=2)
    assert logs == [{"event": "http_request", "url": "/a?key=***", "api_key": "***",
                     "attempts": 2, "log_level": "info"}]


def test_event_name_itself_is_kept() -> None:
    """The redactor never masks the event key even though other keys are checked by name."""
    out = redact(None, "info", {"event": "token_refreshed", "token": "x"})
    assert out == {"event": "token_refreshed", "token": "***"}


# -- end to end with the HTTP layer ---------------------------------------------------------

def test_http_client_logs_never_contain_credentials() -> None:
    """A retried request with Basic auth and ?key= logs neither the token nor the credential."""
    token = "e2e-token-9b7c6d5e4f3a"
    basic = base64.b64encode(f"bot@acme.example:{token}".encode()).decode()
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(500, text="upstream exploded")
        return httpx.Response(200, json={"ok": True})

    stream = configured("json", level="debug")
    http = build_http_client("https://acme.reamaze.example/api/v1",
                             auth=httpx.BasicAuth("bot@acme.example", token),
                             transport=httpx.MockTransport(handle))
    api = ApiClient("reamaze", http, clock=FakeClock(), retry=RetryPolicy(attempts=3))
    assert api.get_json("/conversations", params={"key": token, "page": 1}) == {"ok": True}
    # and once more with the key written into the path itself
    seen.clear()
    assert api.get_json(f"/conversations?key={token}") == {"ok": True}

    assert seen[0].headers["authorization"] == f"Basic {basic}"  # the credential was sent
    out = stream.getvalue()
    events = json_lines(stream)
    names = [e["event"] for e in events]
    assert names.count("http_retry") == 2 and names.count("http_request") == 4
    assert token not in out and basic not in out
    assert any("key=***" in e.get("url", "") for e in events)
    assert any(e.get("path") == "/conversations?key=***" for e in events)


def test_http_errors_logged_by_callers_stay_clean() -> None:
    """A TransientError raised after retries can be logged whole without leaking the key."""
    token = "e2e-token-1a2b3c4d5e6f"

    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}")

    stream = configured("json")
    http = build_http_client("https://r.example", transport=httpx.MockTransport(handle))
    api = ApiClient("redmine", http, clock=FakeClock(), retry=RetryPolicy(attempts=2))
    with pytest.raises(TransientError) as info:
        api.get_json("/issues.json", params={"key": token})
    structlog.get_logger("t").error("sync_failed", exc_info=info.value, detail=info.value,
                                    **info.value.log_fields())
    event = json_lines(stream)[-1]
    assert event["error_type"] == "TransientError" and "TransientError" in event["exception"]
    assert token not in stream.getvalue()
