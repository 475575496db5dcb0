"""Authenticating as a GitHub App installation against the GitHub simulator: the JWT, the
token exchange, renewal before expiry and after a revocation, the bot's identity, ``check``,
refusals that name the app, and secrets kept out of every error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from github_support import GitHubWorld
from pydantic import SecretStr, ValidationError

from connectors.github.config import GitHubConfig
from connectors.github.connector import GitHubConnector
from connectors.github.sim.apps import new_private_key
from syncer.config import parse_config
from syncer.errors import AuthError, ConfigError, RejectedError
from syncer.models import NewComment, NewTicket, Visibility
from syncer.secrets import scrub


class Wall:
    """One clock for the connector's JWTs and the simulator's token expiry."""

    def __init__(self) -> None:
        self.current = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


class AppWorld(GitHubWorld):
    def __init__(self, permissions: dict[str, str] | None = None) -> None:
        self.wall = Wall()
        super().__init__()
        self.sim.apps.wall = self.wall
        self.app_id, self.installation_id, self.pem = self.sim.add_app(
            "acme-support-sync", self.repo, permissions=permissions)

    def app_connector(self, pem: str | None = None, **overrides: Any) -> GitHubConnector:
        cfg = self.config(app_id=self.app_id, installation_id=self.installation_id,
                          **overrides)
        return GitHubConnector.from_config(cfg, SecretStr(pem or self.pem),
                                           transport=self.transport(), clock=self.clock,
                                           now=self.wall)

    def exchange_count(self) -> int:
        return sum(1 for e in self.exchanges if e.request.url.path.endswith("/access_tokens"))


def new_ticket(marker: str = "rs-app-1") -> NewTicket:
    return NewTicket(subject="Crash on save", description="It crashes.", marker=marker)


def test_an_app_writes_as_its_bot_with_one_token_exchange() -> None:
    w = AppWorld()
    conn = w.app_connector()
    created = conn.create_ticket(new_ticket())
    conn.create_comment(created.id, NewComment(body="A reply", marker="rs-app-c1",
                                               visibility=Visibility.PUBLIC))
    issue = w.sim.state.issue(w.repo, int(created.id))
    assert issue.author == "acme-support-sync[bot]"
    assert conn.whoami() == "acme-support-sync[bot]"
    # The engine recognises its own issue by marker *and* author: the bot login must match.
    assert conn.find_ticket_by_marker("rs-app-1") is not None
    assert w.exchange_count() == 1
    api_calls = [e for e in w.exchanges if not e.request.url.path.startswith("/app")]
    assert all(e.request.headers["authorization"].startswith("Bearer ghs_") for e in api_calls)
    assert all(e.request.headers["x-github-api-version"] == "2022-11-28" for e in w.exchanges)


def test_the_token_is_renewed_before_it_expires_and_never_used_expired() -> None:
    w = AppWorld()
    conn = w.app_connector()
    conn.get_ticket(conn.create_ticket(new_ticket()).id)
    assert w.exchange_count() == 1
    w.wall.advance(minutes=54)  # six minutes left: still good
    conn.get_ticket("1")
    assert w.exchange_count() == 1
    w.wall.advance(minutes=2)  # four minutes left: renewed first
    conn.get_ticket("1")
    assert w.exchange_count() == 2
    assert not [e for e in w.exchanges if e.response.status_code == 401]


def test_a_revoked_token_is_replaced_once_and_the_request_repeated() -> None:
    w = AppWorld()
    conn = w.app_connector()
    conn.create_ticket(new_ticket())
    w.sim.apps.tokens.clear()  # revoked on GitHub's side
    assert conn.get_ticket("1").subject == "Crash on save"
    assert w.exchange_count() == 2
    assert [e.response.status_code for e in w.exchanges[-3:]] == [401, 201, 200]


def test_a_wrong_private_key_is_an_auth_error_naming_the_app() -> None:
    w = AppWorld()
    other, _ = new_private_key()
    conn = w.app_connector(pem=other)
    with pytest.raises(AuthError) as raised:
        conn.get_ticket("1")
    text = str(raised.value)
    assert f"GitHub App {w.app_id}" in text and "private key is wrong" in text
    assert "BEGIN PRIVATE KEY" not in text


def test_an_uninstalled_app_is_an_auth_error_not_a_missing_issue() -> None:
    w = AppWorld()
    cfg = w.config(app_id=w.app_id, installation_id=w.installation_id + 1000)
    conn = GitHubConnector.from_config(cfg, SecretStr(w.pem), transport=w.transport(),
                                       clock=w.clock, now=w.wall)
    with pytest.raises(AuthError, match="installation does not exist"):
        conn.get_ticket("1")


def test_a_write_is_never_sent_when_the_exchange_fails() -> None:
    w = AppWorld()
    conn = w.app_connector()
    w.sim.faults.add(502, method="POST", path_prefix="/app/installations/")
    conn.create_ticket(new_ticket())  # retried at once: the create was never sent
    assert len(w.sim.state.issues) == 1
    assert [e.response.status_code for e in w.exchanges] == [502, 201, 201]


def test_check_names_the_missing_issues_permission() -> None:
    assert "GitHub App installation" in AppWorld().app_connector().check()
    w = AppWorld(permissions={"issues": "read", "metadata": "read"})
    with pytest.raises(RejectedError, match="Issues: Read and write"):
        w.app_connector().check()


def test_installation_tokens_and_the_key_never_show_in_errors() -> None:
    w = AppWorld()
    conn = w.app_connector()
    conn.create_ticket(new_ticket())
    assert conn.app_auth is not None and conn.app_auth.token is not None
    token = conn.app_auth.token
    assert token not in scrub(f"failed with {token}")
    body = w.pem.splitlines()[1]
    assert body not in scrub(w.pem)


def test_config_needs_both_app_id_and_installation_id_and_names_the_key() -> None:
    with pytest.raises(ValidationError, match="installation_id is required with app_id"):
        GitHubConfig.model_validate({"kind": "github", "repo": "a/b", "app_id": 1})
    cfg = GitHubConfig.model_validate({"kind": "github", "repo": "a/b", "app_id": 1,
                                       "installation_id": 2})
    assert cfg.secret_setting() == "app_private_key_env"
    assert cfg.secret_env() == "GITHUB_APP_PRIVATE_KEY"
    plain = GitHubConfig.model_validate({"kind": "github", "repo": "a/b"})
    assert plain.secret_setting() == "token_env" and plain.secret_env() == "GITHUB_TOKEN"


def test_a_missing_app_key_is_reported_under_its_own_setting() -> None:
    data = {"reamaze": {"brand": "acme", "login_email": "bot@acme.example"},
            "trackers": {"gh": {"kind": "github", "repo": "acme/web", "app_id": 7,
                                "installation_id": 9}},
            "pairs": [{"name": "web", "tracker": "gh"}]}
    env = {"REAMAZE_API_TOKEN": "t", "REAMAZE_SYNC_MARKER_KEY": "0123456789abcdef0123",
           "GITHUB_TOKEN": "a token the app section does not use"}
    with pytest.raises(ConfigError) as info:
        parse_config(data, need_secrets=True, environ=env)
    assert str(info.value).splitlines() == [
        "[trackers.gh] app_private_key_env: environment variable GITHUB_APP_PRIVATE_KEY is "
        "not set (used by pair 'web')"]
