"""Status both ways against a REAL Redmine 5.0 (and the Re:amaze simulator), where
Redmine's behaviour is the point: which statuses are closed on the server, whether its
workflow lets the sync user reopen an issue, and what `check` finds on the server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from e2e_support import QUICK_RECOVERY, STAFF

from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.app import Engine, build_engine, run_all_once
from syncer.check import run_check
from syncer.config import AppConfig, parse_config
from syncer.runner import PairRunner, PassResult
from syncer.sandbox import BRAND, LOGIN, MARKER_KEY, REAMAZE_TOKEN, sandbox_config

if TYPE_CHECKING:
    from pathlib import Path

    from servers.redmine_server import RedmineServer

pytest_plugins = ["redmine_fixtures"]
pytestmark = pytest.mark.redmine

NEW, IN_PROGRESS, FEEDBACK, CLOSED, REJECTED = 1, 2, 4, 5, 6
RZ_OPEN, RZ_RESPONDED, RZ_DONE = 0, 1, 2
TABLE = {"on_conversation_closed": "close_issue", "on_conversation_reopened": "reopen_issue",
         "issue_to_conversation": {"Feedback": "pending"},
         "conversation_to_issue": {"open": "In Progress", "closed": "Rejected"}}


class StatusRig:
    """A fresh project on the real Redmine, a sync user with the role given, and the
    Re:amaze simulator."""

    def __init__(self, server: RedmineServer, tmp_path: Path, role: str) -> None:
        from servers.redmine_server import RedmineAdmin

        self.server = server
        self.admin = RedmineAdmin(server.url, server.admin_key)
        self.project = f"st-{uuid.uuid4().hex[:10]}"
        self.admin.create_project(self.project)
        user = self.admin.create_user(f"sync{uuid.uuid4().hex[:8]}")
        self.membership = self.admin.add_member(self.project, int(user["id"]), role)
        self.key = str(user["api_key"])
        self.reamaze = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN)
        self.reamaze.add_staff(STAFF, "Jane Support")
        self.tmp_path = tmp_path

    def config(self, status: dict[str, Any]) -> AppConfig:
        data: dict[str, Any] = sandbox_config(f"sqlite:///{self.tmp_path / 'state.db'}",
                                              status=status, sync=QUICK_RECOVERY)
        data["trackers"]["redmine"].update(base_url=self.server.url, project=self.project,
                                           text_formatting="textile")
        return parse_config(data)

    def engine(self, config: AppConfig) -> Engine:
        return build_engine(config, environ=self._environ(),
                            transports={"reamaze": httpx.MockTransport(self.reamaze.handle),
                                        "redmine": httpx.HTTPTransport()})

    def _environ(self) -> dict[str, str]:
        return {"REAMAZE_API_TOKEN": REAMAZE_TOKEN, "REDMINE_API_KEY": self.key,
                "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY}

    def status_id(self, issue_id: str) -> int:
        return int(self.admin.issue(issue_id, include="")["status"]["id"])

    def close(self) -> None:
        self.admin.close()


@pytest.fixture
def manager(redmine_server: RedmineServer, tmp_path: Path) -> Iterator[StatusRig]:
    rig = StatusRig(redmine_server, tmp_path, "Manager")
    yield rig
    rig.close()


@pytest.fixture
def developer(redmine_server: RedmineServer, tmp_path: Path) -> Iterator[StatusRig]:
    rig = StatusRig(redmine_server, tmp_path, "Developer")
    yield rig
    rig.close()


def _run(engine: Engine) -> PassResult:
    (result,) = run_all_once(engine)
    assert result.error is None, result.error
    return result


def _backfill(engine: Engine, config: AppConfig, slug: str) -> str:
    runner = engine.runner(config.pairs[0])
    assert isinstance(runner, PairRunner)
    result = runner.run_once(kind="backfill", full=True)
    assert result.ok and result.counts["issues_created"] == 1, result.error
    link = engine.store.get_link(config.pairs[0].name, slug)
    assert link is not None and link.issue_id is not None
    return link.issue_id


def _wait_next_second() -> None:
    # Redmine keeps whole seconds in updated_on: a change in the same second as the last
    # sync's read would look unchanged (a known limit of its API).
    time.sleep(1.1)


def test_real_redmine_status_table_both_ways(manager: StatusRig) -> None:
    """On the real server: Done → Rejected (a closed status there), the customer writes →
    reopened to In Progress (the Manager workflow allows it), Feedback → Responded; each
    pass after a move writes nothing."""
    rig, config = manager, manager.config(TABLE)
    slug = rig.reamaze.add_conversation("App crashes on login", "It crashes.",
                                        "carol@customer.example", tags=["bug"])
    engine = rig.engine(config)
    issue = _backfill(engine, config, slug)
    assert rig.status_id(issue) == NEW

    rig.reamaze.set_status(slug, RZ_DONE)
    assert _run(engine).counts["tracker_updated"] == 1
    assert rig.status_id(issue) == REJECTED
    assert _run(engine).counts.get("tracker_updated", 0) == 0

    _wait_next_second()
    rig.reamaze.add_customer_message(slug, "It is back.")
    assert _run(engine).counts["tracker_updated"] == 1
    assert rig.status_id(issue) == IN_PROGRESS
    assert rig.reamaze.conversations[slug].status == RZ_OPEN

    _wait_next_second()
    rig.admin.put_issue(issue, status_id=FEEDBACK)
    assert _run(engine).counts["helpdesk_updated"] == 1
    assert rig.reamaze.conversations[slug].status == RZ_RESPONDED
    quiet = _run(engine)
    assert (quiet.counts.get("helpdesk_updated", 0), quiet.counts.get("tracker_updated", 0)) == (
        0, 0)
    assert rig.status_id(issue) == FEEDBACK
    engine.close()


def test_real_redmine_workflow_refusing_the_reopen_fails_loudly_then_recovers(
        developer: StatusRig) -> None:
    """Redmine's default workflow lets a Developer close but not reopen: the silently
    ignored status change is reported as the conversation's failure (nothing recorded as
    done), and once the sync user may reopen, the next pass does it."""
    rig = developer
    config = rig.config({"on_conversation_closed": "close_issue",
                         "on_conversation_reopened": "reopen_issue"})
    slug = rig.reamaze.add_conversation("Sync stalls", "My phone stopped syncing.",
                                        "dave@customer.example", tags=["bug"])
    engine = rig.engine(config)
    issue = _backfill(engine, config, slug)
    rig.reamaze.set_status(slug, RZ_DONE)
    _run(engine)
    assert rig.status_id(issue) == CLOSED  # closing is allowed to a Developer

    _wait_next_second()
    rig.reamaze.set_status(slug, RZ_OPEN)
    refused = _run(engine)
    assert list(refused.failed) == [slug], refused.failed
    assert "ignored the status change" in refused.failed[slug]
    assert rig.status_id(issue) == CLOSED

    rig.admin.set_member_role(int(rig.membership["id"]), "Manager")
    allowed = _run(engine)
    assert allowed.counts["tracker_updated"] == 1 and not allowed.failed
    assert rig.status_id(issue) != CLOSED
    engine.close()


def test_real_redmine_check_names_missing_and_closed_statuses(manager: StatusRig) -> None:
    """`check` reads the statuses from the server: a name it lacks, and a closed status for
    an open conversation state, are configuration errors naming the key."""
    config = manager.config({**TABLE, "conversation_to_issue": {
        "open": "Closed", "pending": "Waiting", "closed": "rejected"}})
    report = run_check(config, environ=manager._environ(),
                       transports={"reamaze": httpx.MockTransport(manager.reamaze.handle)})
    assert report.exit_code == 2
    assert [p.split(" (")[0] for p in report.problems] == [
        "[pairs[0].status] conversation_to_issue: 5 Closed",
        "[pairs[0].status] conversation_to_issue: 'Waiting'"], report.problems
