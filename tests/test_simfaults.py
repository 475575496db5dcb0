"""The fault rules shared by the simulators."""

from __future__ import annotations

import httpx
import pytest

from connectors.simfaults import Faults


def _req(method: str = "GET", url: str = "http://sim/api/v1/conversations?page=2") -> httpx.Request:
    return httpx.Request(method, url)


def _ok() -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


def test_first_matching_rule_fires_and_spends_its_times() -> None:
    """A rule answers `times` matching requests, then the real answer comes back."""
    faults = Faults()
    faults.add(503, times=2, method="GET", path_prefix="/api/v1/conv")
    statuses = [faults.apply(_req(), _ok, lambda s: None)[0].status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert faults.pending == 0


def test_skip_lets_the_first_requests_through_and_params_must_match() -> None:
    """`skip` targets a later page; a `params` mismatch never fires."""
    faults = Faults()
    faults.add(500, skip=1, params={"page": "2"})
    assert faults.apply(_req(), _ok, lambda s: None)[0].status_code == 200
    assert faults.apply(_req(), _ok, lambda s: None)[0].status_code == 500
    faults.add(500, params={"page": "9"})
    assert faults.apply(_req(), _ok, lambda s: None)[0].status_code == 200


def test_commit_applies_the_request_then_loses_its_answer() -> None:
    """With commit=True the write happens even though the client sees a timeout."""
    faults = Faults()
    faults.add(timeout=True, commit=True, method="POST", path=r"/messages$")
    applied: list[str] = []

    def dispatch() -> httpx.Response:
        applied.append("write")
        return _ok()

    with pytest.raises(httpx.ReadTimeout):
        faults.apply(_req("POST", "http://sim/c/x/messages"), dispatch, lambda s: None)
    assert applied == ["write"]


def test_a_timeout_without_commit_never_reaches_the_simulated_api() -> None:
    """A plain timeout leaves the data untouched."""
    faults = Faults()
    faults.add(timeout=True)
    with pytest.raises(httpx.ReadTimeout):
        faults.apply(_req(), lambda: pytest.fail("dispatched"), lambda s: None)


def test_delay_and_action_run_before_the_real_answer() -> None:
    """A delay-only rule sleeps, runs its action, then answers for real."""
    faults = Faults()
    seen: list[object] = []
    faults.add(delay_s=1.5, action=lambda r: seen.append(r.url.path))
    response, rule = faults.apply(_req(), _ok, seen.append)
    assert response.status_code == 200 and rule is not None and rule.hits == 1
    assert seen == ["/api/v1/conversations", 1.5]


def test_default_body_and_retry_after_come_from_the_simulator() -> None:
    """An injected 429 carries Retry-After and the simulator's own error body."""
    faults = Faults(lambda status: (b'{"error": "x"}', "application/json"))
    faults.add(429, retry_after="7")
    response, _ = faults.apply(_req(), _ok, lambda s: None)
    assert response.headers["Retry-After"] == "7"
    assert response.json() == {"error": "x"}
    assert response.headers["Content-Type"] == "application/json"


def test_a_rule_that_does_nothing_is_refused() -> None:
    """A rule without status, timeout, delay or action is a programming error."""
    with pytest.raises(ValueError):
        Faults().add()
