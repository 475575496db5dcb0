"""How the contract suite drives each tracker: start it, connect to it, act on it as a
person, and inject faults on the wire.

A harness is the only tracker-specific part of the suite. Adding a tracker to the suite is
one class implementing ``TrackerHarness`` plus one entry in ``conftest.HARNESSES``.
Faults are injected by ``FaultyTransport`` in front of whatever serves the API (a
simulator or a real server), so the same fault tests run against both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import httpx
from fakes import FakeClock
from pydantic import SecretStr
from redmine_fixtures import FAST_HTTP, RedmineBackend

from connectors.base import Connector
from connectors.registry import TRACKER_KINDS
from connectors.simfaults import Faults
from syncer.models import NewComment, NewTicket, TicketState, Visibility

BAD_KEY = "0123456789abcdef0123456789abcdef01234567"


class FaultyTransport(httpx.BaseTransport):
    """Answers from ``faults`` where a rule matches, else from ``inner``."""

    def __init__(self, inner: httpx.BaseTransport, faults: Faults,
                 sleep: Callable[[float], None]) -> None:
        self.inner = inner
        self.faults = faults
        self.sleep = sleep
        self.sent = 0  # requests that left the connectors, faulted or not

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        response, _ = self.faults.apply(request, lambda: self._through(request), self.sleep)
        return response

    def _through(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()  # a fault rule may replace it: the connection must be free again
        return response

    def close(self) -> None:
        return None


class TrackerHarness(Protocol):
    """One tracker under test, isolated per test (its own project or repository)."""

    kind: str  # the registry's kind
    # Requests an idle poll of the change feed costs: one listing, and a second where the
    # API needs one to see every change (GitHub: comment edits do not move their issue).
    idle_poll_requests: int
    real: bool  # a real server, not a simulator
    faults: Faults  # on the wire between every connector of this harness and the server
    clock: FakeClock  # the connectors' clock: what they slept, without sleeping

    def connector(self, *, page_size: int | None = None, bad_credentials: bool = False,
                  requests_per_minute: float | None = None) -> Connector:
        """The engine's connector on this test's project, built through the registry."""
        ...

    def person_comment(self, ticket_id: str, body: str) -> None:
        """A person (not the API user) writes a public comment, as in the web interface."""
        ...

    def person_sets_state(self, ticket_id: str, state: TicketState) -> None:
        """Someone closes or reopens the ticket in the tracker's own way."""
        ...

    def person_ticket(self, subject: str, marker: str) -> str:
        """A person files a ticket whose text carries ``marker`` as the engine writes it
        (a copied or forged marker): never to be taken for the engine's own."""
        ...

    def person_comment_with_marker(self, ticket_id: str, marker: str) -> None:
        """A person writes a comment carrying ``marker`` as the engine writes it."""
        ...

    def public_view(self, ticket_id: str) -> list[str]:
        """The comment bodies someone without staff rights sees on the ticket."""
        ...

    def throttle(self, retry_after: int) -> dict[str, Any]:
        """The fault rule (``Faults.add`` keywords) for how this tracker says "slow down,
        come back in ``retry_after`` seconds"."""
        ...

    def let_time_pass(self, seconds: float) -> None:
        """Enough time for the tracker's timestamps to tell before from after."""
        ...

    def ticket_count(self) -> int:
        """Tickets in this test's project, counted behind the connector's back."""
        ...

    def requests(self) -> int:
        """How many requests every connector of this harness has sent so far."""
        ...

    def close(self) -> None: ...


class RedmineHarness:
    """Redmine, on the simulator or on a real server (``RedmineBackend``)."""

    kind = "redmine"
    idle_poll_requests = 1

    def __init__(self, backend: RedmineBackend) -> None:
        self.backend = backend
        self.real = backend.sim is None
        self.project = backend.new_project("c")
        self.clock = FakeClock(on_sleep=backend.sleep if backend.sim is not None else None)
        self.faults = Faults()
        self.transport = FaultyTransport(backend.transport, self.faults, lambda _s: None)
        self._users: dict[str, tuple[str, Connector]] = {}

    def _build(self, key: str, **http: Any) -> Connector:
        cfg = TRACKER_KINDS[self.kind].config.model_validate({
            "kind": self.kind, "base_url": self.backend.url, "project": self.project,
            "http": FAST_HTTP.model_copy(update=http)})
        extra: dict[str, Any] = ({"now": self.backend.sim.clock.now}
                                 if self.backend.sim is not None else {})
        return TRACKER_KINDS[self.kind].connect(cfg, SecretStr(key), transport=self.transport,
                                                clock=self.clock, **extra)

    def connector(self, *, page_size: int | None = None, bad_credentials: bool = False,
                  requests_per_minute: float | None = None) -> Connector:
        http: dict[str, Any] = {}
        if requests_per_minute is not None:
            http = {"requests_per_minute": requests_per_minute, "burst": 1}
        conn = self._build(BAD_KEY if bad_credentials else self.backend.admin_key, **http)
        if page_size is not None:
            feed = conn.feed  # type: ignore[attr-defined]
            feed.settings = dataclasses.replace(feed.settings, page_size=page_size)
        return conn

    def _user(self, role: str) -> tuple[str, Connector]:
        """A user of the project with ``role``: its API key, and a connector acting as it."""
        if role not in self._users:
            user, _ = self.backend.new_user(self.project, role)
            self._users[role] = (user["api_key"], self._build(user["api_key"]))
        return self._users[role]

    def person_comment(self, ticket_id: str, body: str) -> None:
        # As in the web form: no marker, unlike the connector's own notes.
        with self.backend.raw(self._user("Developer")[0]) as raw:
            raw.put(f"/issues/{ticket_id}.json",
                    json={"issue": {"notes": body}}).raise_for_status()

    def person_sets_state(self, ticket_id: str, state: TicketState) -> None:
        status_id = 5 if state is TicketState.CLOSED else 1  # Closed, New (default data)
        self.backend.admin.put_issue(ticket_id, status_id=status_id)

    def person_ticket(self, subject: str, marker: str) -> str:
        return self._user("Developer")[1].create_ticket(NewTicket(
            subject=subject, description="copied", marker=marker)).id

    def person_comment_with_marker(self, ticket_id: str, marker: str) -> None:
        self._user("Developer")[1].create_comment(ticket_id, NewComment(
            body="copied", visibility=Visibility.PUBLIC, marker=marker))

    def public_view(self, ticket_id: str) -> list[str]:
        # A Reporter: no view_private_notes, as a customer-facing account would have.
        return [c.body for c in self._user("Reporter")[1].list_comments(ticket_id)]

    def throttle(self, retry_after: int) -> dict[str, Any]:
        # Redmine has no rate limit of its own: a proxy in front of it answers 429.
        return {"status": 429, "retry_after": str(retry_after)}

    def let_time_pass(self, seconds: float) -> None:
        self.backend.sleep(seconds)

    def ticket_count(self) -> int:
        listing = self.backend.admin.http.get("/issues.json", params={
            "project_id": self.project, "status_id": "*", "limit": 1}).json()
        return int(listing["total_count"])

    def requests(self) -> int:
        return self.transport.sent

    def close(self) -> None:
        self.backend.close()


class GitHubHarness:
    """GitHub Issues on the simulator (no real server can be started here): a repository
    of its own, the sync bot and a developer with write access."""

    kind = "github"
    idle_poll_requests = 2
    real = False
    api = "https://api.github.com"

    def __init__(self) -> None:
        from connectors.github.sim import GitHubSimulator

        self.sim = GitHubSimulator()
        self.bot = self.sim.add_user("sync-bot", kind="Bot")
        self.dev = self.sim.add_user("dev-dana")
        self.repo = self.sim.add_repo("acme/app")
        for user in (self.bot, self.dev):
            self.sim.grant(self.repo, user.login, "write")
        self.clock = FakeClock(on_sleep=self.sim.clock.advance)
        self.faults = Faults()
        self.transport = FaultyTransport(self.sim.transport(), self.faults, lambda _s: None)

    def _build(self, token: str, **http: Any) -> Connector:
        cfg = TRACKER_KINDS[self.kind].config.model_validate({
            "kind": self.kind, "repo": self.repo.full_name,
            "http": FAST_HTTP.model_copy(update=http)})
        return TRACKER_KINDS[self.kind].connect(cfg, SecretStr(token), transport=self.transport,
                                                clock=self.clock)

    def connector(self, *, page_size: int | None = None, bad_credentials: bool = False,
                  requests_per_minute: float | None = None) -> Connector:
        http: dict[str, Any] = {}
        if requests_per_minute is not None:
            http = {"requests_per_minute": requests_per_minute, "burst": 1}
        conn = self._build(BAD_KEY if bad_credentials else str(self.bot.token), **http)
        if page_size is not None:
            feed = conn.feed  # type: ignore[attr-defined]
            feed.settings = dataclasses.replace(feed.settings, page_size=page_size)
        return conn

    def person_comment(self, ticket_id: str, body: str) -> None:
        self.sim.add_comment(self.repo, self.dev.login, int(ticket_id), body)

    def person_sets_state(self, ticket_id: str, state: TicketState) -> None:
        self.sim.set_state(self.repo, self.dev.login, int(ticket_id),
                           "closed" if state is TicketState.CLOSED else "open")

    def person_ticket(self, subject: str, marker: str) -> str:
        return self._build(str(self.dev.token)).create_ticket(NewTicket(
            subject=subject, description="copied", marker=marker)).id

    def person_comment_with_marker(self, ticket_id: str, marker: str) -> None:
        self._build(str(self.dev.token)).create_comment(ticket_id, NewComment(
            body="copied", visibility=Visibility.PUBLIC, marker=marker))

    def public_view(self, ticket_id: str) -> list[str]:
        # Every GitHub comment is public: what the developer's token lists, anyone sees.
        return [c.body for c in self._build(str(self.dev.token)).list_comments(ticket_id)]

    def throttle(self, retry_after: int) -> dict[str, Any]:
        # The secondary limit on content creation (trackers.md §1.6).
        return {"status": 403, "retry_after": str(retry_after),
                "headers": {"x-ratelimit-remaining": "4000"}}

    def let_time_pass(self, seconds: float) -> None:
        self.sim.clock.advance(seconds)

    def ticket_count(self) -> int:
        return sum(1 for issue in self.sim.state.issues.values()
                   if issue.repo_id == self.repo.id)

    def requests(self) -> int:
        return self.transport.sent

    def close(self) -> None:
        return None


class GitLabHarness:
    """GitLab Issues on the simulator: a project of its own, the sync bot (Reporter, the
    least role that keeps internal notes), a developer and a Guest who stands for the
    public (GitLab shows internal notes to Reporters and up only)."""

    kind = "gitlab"
    idle_poll_requests = 1
    real = False

    def __init__(self) -> None:
        from connectors.gitlab.sim import GitLabSimulator
        from connectors.gitlab.sim.state import DEVELOPER, GUEST, REPORTER

        self.sim = GitLabSimulator()
        self.bot = self.sim.add_user("sync-bot", bot=True)
        self.dev = self.sim.add_user("dev-dana")
        self.guest = self.sim.add_user("guest-gus")
        self.project = self.sim.add_project("acme/app")
        self.sim.grant(self.project, self.bot.username, REPORTER)
        self.sim.grant(self.project, self.dev.username, DEVELOPER)
        self.sim.grant(self.project, self.guest.username, GUEST)
        self.clock = FakeClock(on_sleep=self.sim.clock.advance)
        self.faults = Faults()
        self.transport = FaultyTransport(self.sim.transport(), self.faults, lambda _s: None)

    def _build(self, token: str, **http: Any) -> Connector:
        cfg = TRACKER_KINDS[self.kind].config.model_validate({
            "kind": self.kind, "project": self.project.path,
            "http": FAST_HTTP.model_copy(update=http)})
        return TRACKER_KINDS[self.kind].connect(cfg, SecretStr(token), transport=self.transport,
                                                clock=self.clock)

    def connector(self, *, page_size: int | None = None, bad_credentials: bool = False,
                  requests_per_minute: float | None = None) -> Connector:
        http: dict[str, Any] = {}
        if requests_per_minute is not None:
            http = {"requests_per_minute": requests_per_minute, "burst": 1}
        conn = self._build(BAD_KEY if bad_credentials else self.bot.token, **http)
        if page_size is not None:
            feed = conn.feed  # type: ignore[attr-defined]
            feed.settings = dataclasses.replace(feed.settings, page_size=page_size)
        return conn

    def person_comment(self, ticket_id: str, body: str) -> None:
        self.sim.add_note(self.project, self.dev.username, int(ticket_id), body)

    def person_sets_state(self, ticket_id: str, state: TicketState) -> None:
        self.sim.set_state(self.project, self.dev.username, int(ticket_id),
                           "closed" if state is TicketState.CLOSED else "opened")

    def person_ticket(self, subject: str, marker: str) -> str:
        return self._build(self.dev.token).create_ticket(NewTicket(
            subject=subject, description="copied", marker=marker)).id

    def person_comment_with_marker(self, ticket_id: str, marker: str) -> None:
        self._build(self.dev.token).create_comment(ticket_id, NewComment(
            body="copied", visibility=Visibility.PUBLIC, marker=marker))

    def public_view(self, ticket_id: str) -> list[str]:
        return [c.body for c in self._build(self.guest.token).list_comments(ticket_id)]

    def throttle(self, retry_after: int) -> dict[str, Any]:
        # GitLab.com's throttles (trackers.md §2.6): 429 with Retry-After.
        return {"status": 429, "retry_after": str(retry_after)}

    def let_time_pass(self, seconds: float) -> None:
        self.sim.clock.advance(seconds)

    def ticket_count(self) -> int:
        return sum(1 for issue in self.sim.state.issues.values()
                   if issue.project_id == self.project.id)

    def requests(self) -> int:
        return self.transport.sent

    def close(self) -> None:
        return None
