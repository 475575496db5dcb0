"""Settings of a GitHub tracker connection (``[trackers.NAME]`` with ``kind = "github"``).

github.com by default; GitHub Enterprise Server through ``base_url``
(``https://HOST/api/v3``). The budgets default to GitHub's own limits (trackers.md §1.6): a
token has 5,000 requests an hour (83 a minute), and content creation is limited to 80 a
minute and 500 an hour, so writes are paced at 8 a minute — what GitHub allows for good.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, HttpUrl, model_validator

from connectors.settings import HttpSettings, TrackerSettings

_LOGIN = r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$"
_LOGIN_RE = re.compile(_LOGIN)


class GitHubConfig(TrackerSettings):
    secret_key: ClassVar[str] = "token_env"
    has_labels: ClassVar[bool] = True
    scope_key: ClassVar[str] = "repo"  # the setting naming where issues go
    display_name: ClassVar[str] = "GitHub"

    kind: Literal["github"]
    base_url: HttpUrl = HttpUrl("https://api.github.com")
    token_env: str = "GITHUB_TOKEN"
    # A GitHub App installation instead of a token: the app's id, the installation's id
    # (in the URL of the installation's settings page) and the variable holding the app's
    # private key (PEM). Writes then show as ``APP-SLUG[bot]``.
    app_id: int | None = Field(None, gt=0)
    installation_id: int | None = Field(None, gt=0)
    app_private_key_env: str = "GITHUB_APP_PRIVATE_KEY"
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
                      description="OWNER/NAME of the repository issues go to")
    # How an issue closed from Re:amaze (conversation closed) is closed on GitHub.
    close_reason: Literal["completed", "not_planned"] = "completed"
    # The env var holding the secret of the repository's webhook: with it (and
    # `[server] listen`), the daemon takes deliveries at /webhooks/NAME and syncs the issue
    # at once; polling stays the source of truth.
    webhook_secret_env: str | None = None
    http: HttpSettings = HttpSettings(requests_per_minute=80, writes_per_minute=8)
    overlap_seconds: float = Field(2.0, ge=0)

    @model_validator(mode="after")
    def _app_needs_installation(self) -> GitHubConfig:
        if (self.app_id is None) != (self.installation_id is None):
            missing = "installation_id" if self.installation_id is None else "app_id"
            raise ValueError(f"{missing} is required with "
                             f"{'app_id' if missing == 'installation_id' else 'installation_id'}"
                             " (a GitHub App authenticates with both)")
        return self

    @classmethod
    def secret_key_in(cls, table: Mapping[str, Any]) -> str:
        return "app_private_key_env" if table.get("app_id") is not None else cls.secret_key

    @property
    def uses_app(self) -> bool:
        return self.app_id is not None

    @staticmethod
    def user_id_problem(value: str) -> str | None:
        """GitHub users are named by login (assignees are logins)."""
        return None if _LOGIN_RE.match(value) else "GitHub user ids are logins (e.g. octocat)"

    def scope_name(self) -> str:
        return f"repository {self.repo}"

    def web_base(self) -> str:
        """Where people see the issues: github.com, or the Enterprise host itself."""
        api = str(self.base_url).rstrip("/")
        if api == "https://api.github.com":
            return "https://github.com"
        return api.removesuffix("/api/v3")
