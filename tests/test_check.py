"""The check's verdicts, driven through fake transports: no network, no wall time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.redmine.sim.simulator import RedmineSimulator
from state import CURRENT_VERSION, StateStore
from syncer.check import CHECK_ATTEMPTS, quick, run_check
from syncer.config import HttpSettings, parse_config
from syncer.sandbox import BRAND, LOGIN, REAMAZE_TOKEN, sandbox_config

Handler = Callable[[httpx.Request], httpx.Response]


class NoWait:
    """Backoffs pass at once; the number of attempts is what the tests look at."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Counted:
    """A handler that counts what it was asked."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return self.handler(request)


def check(reamaze: Handler, redmine: Handler, key: str = "k" * 40,
          **redmine_cfg: Any) -> list[str]:
    data = sandbox_config()
    data["trackers"]["redmine"].update(redmine_cfg)
    cfg = parse_config(data)
    report = run_check(cfg, environ={"REAMAZE_API_TOKEN": REAMAZE_TOKEN,
                                     "REDMINE_API_KEY": key},
                       transports={"reamaze": httpx.MockTransport(reamaze),
                                   "redmine": httpx.MockTransport(redmine)}, clock=NoWait())
    return report.lines[1:] + report.problems + [f"exit {report.exit_code}"]


def working_reamaze() -> Handler:
    return ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN).handle


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc
    return handler


def test_the_daemon_settings_are_left_alone() -> None:
    """The check works on a copy with few attempts and short waits; the original (what the
    daemon uses) keeps its values."""
    daemon = HttpSettings(max_attempts=8, timeout_seconds=20, max_retry_after_seconds=300)
    short = quick(daemon)
    assert (short.max_attempts, short.timeout_seconds) == (CHECK_ATTEMPTS, 10)
    assert short.max_retry_after_seconds == 5
    assert (daemon.max_attempts, daemon.timeout_seconds) == (8, 20)
    assert quick(HttpSettings(max_attempts=1)).max_attempts == 1


@pytest.mark.parametrize(("exc", "cause"), [
    (httpx.ConnectTimeout("timed out"), "no connection within the timeout"),
    (httpx.ReadTimeout("timed out"), "no answer within the timeout"),
])
def test_timeouts_are_named_and_tried_twice(exc: Exception, cause: str) -> None:
    """A host that does not answer in time: its URL, which timeout, two attempts."""
    redmine = Counted(raising(exc))
    lines = check(working_reamaze(), redmine)
    assert ("[trackers.redmine] FAIL cannot reach http://redmine.sandbox/projects/support.json:"
            f" {cause} (2 attempts)") in lines
    assert redmine.calls == 2 and lines[-1] == "exit 1"


def test_server_errors_show_the_status() -> None:
    """A 503 is retried once, then reported with the URL and the status."""
    redmine = Counted(lambda request: httpx.Response(503, text="down for maintenance"))
    lines = check(working_reamaze(), redmine)
    assert ("[trackers.redmine] FAIL http://redmine.sandbox/projects/support.json answered "
            "HTTP 503 (server error) (2 attempts)") in lines
    assert redmine.calls == 2


def test_reamaze_404_at_the_api_base_suspects_the_brand() -> None:
    """With /api/v1 in place, a 404 points at the brand (Re:amaze's answer to an unknown
    one); tried once."""
    reamaze = Counted(lambda request: httpx.Response(404, json={"error": "Brand not found"}))
    redmine = RedmineSimulator()
    redmine.add_project("support")
    lines = check(reamaze, redmine.handle, redmine.admin_key)
    assert ("[reamaze] FAIL https://acme.reamaze.io/api/v1/staff?page=1 answered 404 Not "
            "Found: is the brand right? (Re:amaze answers 404 for an unknown brand) "
            "(1 attempt)") in lines
    assert reamaze.calls == 1


def test_unknown_status_id_lists_every_status() -> None:
    """A status id the server lacks altogether lists all statuses."""
    redmine = RedmineSimulator()
    redmine.add_project("support")
    lines = check(working_reamaze(), redmine.handle, redmine.admin_key, closed_status_id=50)
    assert ("[trackers.redmine] closed_status_id: 50 does not exist (known: 1 New, "
            "2 In Progress, 3 Resolved, 4 Feedback, 5 Closed, 6 Rejected)") in lines
    assert lines[-1] == "exit 2"


def test_status_table_names_are_checked_against_the_tracker() -> None:
    """A pair's status table naming a status the tracker lacks, or a closed status for an
    open conversation state, is a configuration error naming the key; good names pass."""
    redmine = RedmineSimulator()
    redmine.add_project("support")
    data = sandbox_config(status={
        "on_conversation_closed": "close_issue", "on_conversation_reopened": "reopen_issue",
        "issue_to_conversation": {"Feedback": "pending", "Waiting": "pending", "6": "closed"},
        "conversation_to_issue": {"closed": "resolved", "open": "Rejected", "pending": "4"}})
    cfg = parse_config(data)
    report = run_check(cfg, environ={"REAMAZE_API_TOKEN": REAMAZE_TOKEN,
                                     "REDMINE_API_KEY": redmine.admin_key},
                       transports={"reamaze": httpx.MockTransport(working_reamaze()),
                                   "redmine": httpx.MockTransport(redmine.handle)},
                       clock=NoWait())
    assert report.problems == [
        "[pairs[0].status] issue_to_conversation: 'Waiting' is not a status of tracker "
        "'redmine' (known: 1 New, 2 In Progress, 3 Resolved, 4 Feedback, 5 Closed, "
        "6 Rejected)",
        "[pairs[0].status] conversation_to_issue: 6 Rejected (for 'open') is a closed "
        "status; a conversation that is open needs an open one (open: 1 New, 2 In Progress, "
        "3 Resolved, 4 Feedback)"]
    assert report.exit_code == 2


def test_missing_secret_without_the_cli_is_a_problem_too() -> None:
    """Called directly with a secret unset, the check lists it instead of raising."""
    cfg = parse_config(sandbox_config())
    report = run_check(cfg, environ={"REAMAZE_API_TOKEN": REAMAZE_TOKEN},
                       transports={"reamaze": httpx.MockTransport(working_reamaze())})
    assert report.problems == ["[trackers.redmine] api_key_env: environment variable "
                               "REDMINE_API_KEY is not set"]
    assert report.exit_code == 2


def test_state_of_a_newer_release_is_a_configuration_error(tmp_path: Path) -> None:
    """A database written by a newer release is refused (exit 2) and left as it was; the
    connections are still checked."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": CURRENT_VERSION + 1})
    engine.dispose()
    cfg = parse_config(sandbox_config(url))
    report = run_check(cfg, environ={"REAMAZE_API_TOKEN": REAMAZE_TOKEN},
                       transports={"reamaze": httpx.MockTransport(working_reamaze())},
                       clock=NoWait())
    assert report.lines[0] == "[state] FAIL see the configuration errors"
    assert report.problems[0].startswith(f"[state] url: state database schema is version "
                                         f"{CURRENT_VERSION + 1}, newer than")
    assert report.lines[1].startswith("[reamaze] ok: ")
    assert report.exit_code == 2
