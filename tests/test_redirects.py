"""A redirect is an error naming where it pointed (masked), never followed and never taken
for success: a pass it hits ends like one with bad credentials, and `check` prints it."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from e2e_support import QUICK_RECOVERY, sandbox
from fakes import FakeClock
from leaks import found, fragments
from test_cli import Served

from connectors.http import ApiClient, RetryPolicy, build_http_client
from syncer.app import run_all_once
from syncer.errors import FatalError, RedirectError
from syncer.secrets import register_basic_auth, register_secret

TOKEN = "redirect-token-5b1e0c7a9d"
EMAIL = "bot@example.com"


def client(handler: httpx.MockTransport) -> ApiClient:
    http = build_http_client("https://acme.example.com/api/v1",
                             auth=httpx.BasicAuth(EMAIL, TOKEN), transport=handler)
    return ApiClient("test", http, clock=FakeClock(), retry=RetryPolicy(attempts=4))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_naming_the_location(status: int) -> None:
    """Any 3xx, with a body that would decode fine, raises a fatal error naming the
    Location and the status, after one request that nobody followed or retried."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, headers={"Location": "https://login.example/sso"},
                              json={})

    with pytest.raises(FatalError) as info:
        client(httpx.MockTransport(handle)).get_json("/conversations")
    assert isinstance(info.value, RedirectError)
    assert str(info.value).startswith(
        f"redirected to https://login.example/sso ({status}); check base_url")
    assert info.value.status == status
    assert [r.url.host for r in seen] == ["acme.example.com"]


def test_a_relative_location_is_named_in_full() -> None:
    """A Location relative to the request is resolved, so the operator sees the whole URL."""
    transport = httpx.MockTransport(
        lambda r: httpx.Response(301, headers={"Location": "/v2/conversations"}))
    with pytest.raises(FatalError, match=r"redirected to https://acme\.example\.com/v2/"
                                         r"conversations \(301\)"):
        client(transport).get_json("/conversations")


def test_an_unparsable_location_is_not_repeated() -> None:
    """A Location that is no URL still makes a RedirectError, without quoting it."""
    transport = httpx.MockTransport(
        lambda r: httpx.Response(302, headers={"Location": "https://u:hunter2@h:99999/"}))
    with pytest.raises(RedirectError) as info:
        client(transport).get_json("/x")
    assert str(info.value).startswith("redirected to an unparsable Location (302)")
    assert "hunter2" not in str(info.value)


def test_a_location_carrying_credentials_is_masked() -> None:
    """Credentials in the Location (userinfo, a key in the query, the Basic credential in
    any encoding) are masked in the error."""
    key = "0f3c9a1e" * 5
    register_secret(key)
    register_basic_auth(EMAIL, TOKEN)
    basic = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    location = (f"https://bob:hunter2secret@evil.example/login?key={key}"
                f"&next=%2Fapi%3Fauth%3D{quote(basic, safe='')}")
    transport = httpx.MockTransport(lambda r: httpx.Response(302, headers={"Location": location}))
    with pytest.raises(FatalError) as info:
        client(transport).get_json("/x")
    text = str(info.value)
    assert "redirected to https://evil.example/login?key=***" in text
    assert not found(text, fragments(key, basic, "hunter2secret")), text


def test_a_pass_hit_by_a_redirect_ends_with_it_and_records_no_failure(tmp_path: Path) -> None:
    """A redirect on the issue create aborts the pass like bad credentials would: the
    pass reports the redirect and no conversation is marked failing. A 302 may answer a
    POST that was processed, so the create stays journalled for recovery to look up: once
    the redirect is gone, recovery gives it up after its lookups and the next pass ends
    with exactly one issue."""
    sb = sandbox(tmp_path, sync=QUICK_RECOVERY)
    slug = sb.reamaze.add_conversation("Crash on save", "Saving crashes the app.",
                                       "carol@customer.example", tags=["bug"])
    sb.redmine.faults.add(307, method="POST", path_prefix="/issues.json", times=None,
                          headers={"Location": "https://redmine.example.com/issues.json"})
    engine = sb.engine()
    try:
        [result] = run_all_once(engine)
        assert result.error is not None, result
        assert "redirected to https://redmine.example.com/issues.json (307)" in result.error
        assert result.failed == {}
        assert engine.store.list_failures("bugs") == []
        assert not sb.redmine.state.issues
        sb.redmine.faults.clear()
        for _ in range(3):
            [again] = run_all_once(engine)
            assert again.ok, again
        assert len(sb.redmine.state.issues) == 1
        link = engine.store.get_link("bugs", slug)
        assert link is not None and link.issue_id is not None
    finally:
        engine.close()


def test_check_prints_the_redirect(tmp_path: Path) -> None:
    """`check` against a Redmine URL that redirects prints where it was sent."""
    served = Served(tmp_path)
    try:
        served.redmine.faults.add(301, times=None,
                                  headers={"Location": "https://redmine.example.com/"})
        result = served.cli("check")
        assert result.exit_code == 1
        assert ("[trackers.redmine] FAIL redirected to https://redmine.example.com/ (301); "
                "check base_url") in result.stdout
        assert "[reamaze] ok:" in result.stdout
    finally:
        served.close()
