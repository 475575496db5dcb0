"""A GitHub simulator with the users the tests need, and connectors built on it the way
the engine builds them (``GitHubConnector.from_config``), with every exchange recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from fakes import FakeClock
from pydantic import SecretStr

from connectors.github import GitHubConnector
from connectors.github.config import GitHubConfig
from connectors.github.sim import GitHubSimulator
from connectors.github.sim.state import GhRepo, GhUser
from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.app import Engine, build_engine
from syncer.config import parse_config
from syncer.sandbox import BRAND, LOGIN, MARKER_KEY, REAMAZE_TOKEN

REPO = "acme/app"
STAFF = "jane@acme.example"
API = "https://api.github.com"


@dataclass
class Exchange:
    request: httpx.Request
    response: httpx.Response


@dataclass
class GitHubWorld:
    sim: GitHubSimulator = field(default_factory=GitHubSimulator)
    exchanges: list[Exchange] = field(default_factory=list)
    clock: FakeClock = field(default_factory=FakeClock)

    def __post_init__(self) -> None:
        self.bot: GhUser = self.sim.add_user("sync-bot", kind="Bot")
        self.dev: GhUser = self.sim.add_user("dev-dana")
        self.repo: GhRepo = self.sim.add_repo(REPO)
        self.sim.grant(self.repo, self.bot.login, "write")
        self.sim.grant(self.repo, self.dev.login, "write")
        # The simulator's clock follows the client's sleeps (retry-after, budgets).
        self.clock.on_sleep = self.sim.clock.advance

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            response = self.sim.handle(request)
            response.read()
            self.exchanges.append(Exchange(request, response))
            return response

        return httpx.MockTransport(handle)

    def config(self, **overrides: Any) -> GitHubConfig:
        data: dict[str, Any] = {"kind": "github", "repo": REPO,
                                "http": {"requests_per_minute": 100_000, "burst": 1000,
                                         "max_attempts": 4}}
        data.update(overrides)
        return GitHubConfig.model_validate(data)

    def connector(self, user: GhUser | None = None, **overrides: Any) -> GitHubConnector:
        token = (user or self.bot).token
        return GitHubConnector.from_config(self.config(**overrides), SecretStr(token),
                                           transport=self.transport(), clock=self.clock)

    def person(self, user: GhUser | None = None) -> httpx.Client:
        """A person on GitHub, acting through the API as the web UI would."""
        who = user or self.dev
        return httpx.Client(base_url=API, transport=self.sim.transport(),
                            headers={"Authorization": f"Bearer {who.token}"})

    def writes(self) -> list[Exchange]:
        """Writes to the repository (a GitHub App's token exchanges are not)."""
        return [e for e in self.exchanges if e.request.method in ("POST", "PATCH", "DELETE")
                and not e.request.url.path.startswith("/app/")]


class World:
    """Re:amaze and GitHub simulators and the engine's config for one pair between them."""

    def __init__(self, state_url: str = "sqlite://", *, tracker: dict[str, Any] | None = None,
                 server: dict[str, Any] | None = None, app: bool = False,
                 **pair: Any) -> None:
        self.gh = GitHubWorld()
        secret = ("GITHUB_TOKEN", self.gh.bot.token)
        if app:  # the sync authenticates as a GitHub App installation instead
            app_id, installation_id, pem = self.gh.sim.add_app("acme-sync", self.gh.repo)
            tracker = {"app_id": app_id, "installation_id": installation_id, **(tracker or {})}
            secret = ("GITHUB_APP_PRIVATE_KEY", pem)
        self.reamaze = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN,
                                        login_name="Sync Bot")
        self.reamaze.add_staff(STAFF, "Jane Support")
        pair_cfg: dict[str, Any] = {"name": "bugs", "tracker": "gh", "interval_seconds": 5,
                                    "title_template": "[Re:amaze] {subject}"}
        pair_cfg.update(pair)
        self.config = parse_config({
            "state": {"url": state_url},
            "reamaze": {"brand": BRAND, "login_email": LOGIN,
                        "base_url": f"https://{BRAND}.reamaze.io/api/v1",
                        "http": {"requests_per_minute": 100_000, "burst": 1000}},
            "trackers": {"gh": {"kind": "github", "repo": REPO, "http": {
                "requests_per_minute": 100_000, "burst": 1000}, **(tracker or {})}},
            "pairs": [pair_cfg],
            "server": server or {},
        })
        self.environ = {"REAMAZE_API_TOKEN": REAMAZE_TOKEN, secret[0]: secret[1],
                        "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY}

    def engine(self) -> Engine:
        return build_engine(self.config, environ=self.environ, transports={
            "reamaze": httpx.MockTransport(self.reamaze.handle), "gh": self.gh.transport()})

    def issues(self) -> list[Any]:
        return sorted(self.gh.sim.state.issues.values(), key=lambda i: i.number)

    def comments(self, number: int) -> list[str]:
        return [c.body for c in sorted(self.gh.sim.state.comments.values(), key=lambda c: c.id)
                if c.number == number]

    def everything_on_github(self) -> str:
        return "\n".join([f"{i.title}\n{i.body}" for i in self.issues()]
                         + [c.body for c in self.gh.sim.state.comments.values()])


def on_request(method: str, path: str, action: Callable[[httpx.Request], None]) -> dict[str, Any]:
    """Fault-rule keywords running ``action`` before a matching request is answered."""
    return {"method": method, "path": path, "action": action}
