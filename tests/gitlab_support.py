"""A GitLab simulator with the users the tests need, and connectors built on it the way
the engine builds them (``GitLabConnector.from_config``), with every exchange recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from fakes import FakeClock
from pydantic import SecretStr

from connectors.gitlab import GitLabConnector
from connectors.gitlab.config import GitLabConfig
from connectors.gitlab.sim import GitLabSimulator
from connectors.gitlab.sim.state import DEVELOPER, GUEST, REPORTER, GlNote, GlProject, GlUser
from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.app import Engine, build_engine
from syncer.config import parse_config
from syncer.sandbox import BRAND, LOGIN, MARKER_KEY, REAMAZE_TOKEN

PROJECT = "acme/app"
STAFF = "jane@acme.example"
API = "https://gitlab.com/api/v4"


@dataclass
class Exchange:
    request: httpx.Request
    response: httpx.Response


@dataclass
class GitLabWorld:
    sim: GitLabSimulator = field(default_factory=GitLabSimulator)
    exchanges: list[Exchange] = field(default_factory=list)
    clock: FakeClock = field(default_factory=FakeClock)

    def __post_init__(self) -> None:
        self.bot: GlUser = self.sim.add_user("sync-bot", bot=True)
        self.dev: GlUser = self.sim.add_user("dev-dana")
        self.guest: GlUser = self.sim.add_user("guest-gus")
        self.project: GlProject = self.sim.add_project(PROJECT)
        self.sim.grant(self.project, self.bot.username, REPORTER)
        self.sim.grant(self.project, self.dev.username, DEVELOPER)
        self.sim.grant(self.project, self.guest.username, GUEST)
        # The simulator's clock follows the client's sleeps (retry-after, budgets).
        self.clock.on_sleep = self.sim.clock.advance

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            response = self.sim.handle(request)
            response.read()
            self.exchanges.append(Exchange(request, response))
            return response

        return httpx.MockTransport(handle)

    def config(self, **overrides: Any) -> GitLabConfig:
        data: dict[str, Any] = {"kind": "gitlab", "project": PROJECT,
                                "http": {"requests_per_minute": 100_000, "burst": 1000,
                                         "max_attempts": 4}}
        data.update(overrides)
        return GitLabConfig.model_validate(data)

    def connector(self, user: GlUser | None = None, **overrides: Any) -> GitLabConnector:
        token = (user or self.bot).token
        return GitLabConnector.from_config(self.config(**overrides), SecretStr(token),
                                           transport=self.transport(), clock=self.clock)

    def person(self, user: GlUser | None = None) -> httpx.Client:
        """A person on GitLab, acting through the API as the web UI would."""
        who = user or self.dev
        return httpx.Client(base_url=API, transport=self.sim.transport(),
                            headers={"PRIVATE-TOKEN": who.token})

    def writes(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.request.method in ("POST", "PUT", "DELETE")]

    def notes(self, iid: int, *, system: bool = False) -> list[GlNote]:
        return sorted((n for n in self.sim.state.notes.values()
                       if n.project_id == self.project.id and n.iid == iid
                       and n.system == system), key=lambda n: n.id)


class World:
    """Re:amaze and GitLab simulators and the engine's config for one pair between them."""

    def __init__(self, state_url: str = "sqlite://", *, tracker: dict[str, Any] | None = None,
                 server: dict[str, Any] | None = None, gl: GitLabWorld | None = None,
                 **pair: Any) -> None:
        self.gl = gl or GitLabWorld()
        self.reamaze = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN,
                                        login_name="Sync Bot")
        self.reamaze.add_staff(STAFF, "Jane Support")
        pair_cfg: dict[str, Any] = {"name": "bugs", "tracker": "gl", "interval_seconds": 5,
                                    "title_template": "[Re:amaze] {subject}"}
        pair_cfg.update(pair)
        self.config = parse_config({
            "state": {"url": state_url},
            "reamaze": {"brand": BRAND, "login_email": LOGIN,
                        "base_url": f"https://{BRAND}.reamaze.io/api/v1",
                        "http": {"requests_per_minute": 100_000, "burst": 1000}},
            "trackers": {"gl": {"kind": "gitlab", "project": PROJECT, "http": {
                "requests_per_minute": 100_000, "burst": 1000}, **(tracker or {})}},
            "pairs": [pair_cfg],
            "server": server or {},
        })
        self.environ = {"REAMAZE_API_TOKEN": REAMAZE_TOKEN, "GITLAB_TOKEN": self.gl.bot.token,
                        "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY}

    def engine(self) -> Engine:
        return build_engine(self.config, environ=self.environ, transports={
            "reamaze": httpx.MockTransport(self.reamaze.handle), "gl": self.gl.transport()})

    def issues(self) -> list[Any]:
        return sorted(self.gl.sim.state.issues.values(), key=lambda i: i.iid)

    def everything_public_on_gitlab(self) -> str:
        return "\n".join([f"{i.title}\n{i.description}" for i in self.issues()]
                         + [n.body for n in self.gl.sim.state.notes.values() if not n.internal])
