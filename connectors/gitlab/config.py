"""Settings of a GitLab tracker connection (``[trackers.NAME]`` with ``kind = "gitlab"``).

gitlab.com by default; a self-managed instance through ``base_url``
(``https://HOST/api/v4``). ``project`` is the numeric id or the full path
(``group/subgroup/project``). The budgets default to GitLab.com's published limits
(trackers.md §2.6): 2,000 API requests a minute per user, and note creation on issues
limited to 60 a minute (issue creation to 200), so writes are paced at 60 a minute.
Self-managed instances configure their own limits; lower or raise ``[…http]`` to match.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal
from urllib.parse import quote

from pydantic import Field, HttpUrl

from connectors.settings import HttpSettings, TrackerSettings

_USERNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")


class GitLabConfig(TrackerSettings):
    secret_key: ClassVar[str] = "token_env"
    has_labels: ClassVar[bool] = True
    scope_key: ClassVar[str] = "project"
    display_name: ClassVar[str] = "GitLab"

    kind: Literal["gitlab"]
    base_url: HttpUrl = HttpUrl("https://gitlab.com/api/v4")
    # A personal, project or group access token (sent as PRIVATE-TOKEN).
    token_env: str = "GITLAB_TOKEN"
    project: str = Field(pattern=r"^(?:[0-9]+|[A-Za-z0-9_.][A-Za-z0-9_.-]*"
                                 r"(?:/[A-Za-z0-9_.][A-Za-z0-9_.-]*)+)$",
                         description="numeric id or full path (group/project) of the project")
    # The env var holding the webhook's secret token: with it (and `[server] listen`), the
    # daemon takes Issue Hook / Note Hook deliveries at /webhooks/NAME.
    webhook_secret_env: str | None = None
    http: HttpSettings = HttpSettings(requests_per_minute=2000, writes_per_minute=60)
    overlap_seconds: float = Field(2.0, ge=0)

    @staticmethod
    def user_id_problem(value: str) -> str | None:
        """GitLab users are named by username here (assignees are looked up by it)."""
        return None if _USERNAME_RE.match(value) else "GitLab user ids are usernames (e.g. dana)"

    def scope_name(self) -> str:
        return f"project {self.project}"

    def project_ref(self) -> str:
        """The ``:id`` of API paths: the number, or the URL-encoded path."""
        return quote(self.project, safe="")

    def web_base(self) -> str:
        """Where people see the issues: the instance itself."""
        return str(self.base_url).rstrip("/").removesuffix("/api/v4")
