"""A ``[trackers.NAME]`` section of ``kind = "redmine"``: the server, project and ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, HttpUrl

from connectors.settings import HttpSettings, TrackerSettings


class RedmineConfig(TrackerSettings):
    secret_key: ClassVar[str] = "api_key_env"
    has_labels: ClassVar[bool] = False
    scope_key: ClassVar[str] = "project"
    display_name: ClassVar[str] = "Redmine"

    kind: Literal["redmine"]
    base_url: HttpUrl
    api_key_env: str = "REDMINE_API_KEY"
    project: str = Field(min_length=1, description="project identifier or id")
    tracker_id: int | None = None
    priority_id: int | None = None
    text_formatting: Literal["common_mark", "textile"] = "common_mark"
    closed_status_id: int | None = None  # None: the first status with is_closed
    reopened_status_id: int | None = None  # None: the tracker's default status
    http: HttpSettings = HttpSettings(requests_per_minute=300)
    overlap_seconds: float = Field(2.0, ge=0)

    def scope_name(self) -> str:
        return f"project {self.project!r}"

    @staticmethod
    def user_id_problem(value: str) -> str | None:
        """Why ``value`` cannot be a user id of this tracker (the connector would refuse it
        at the first assignment), or None."""
        return None if value.isascii() and value.isdigit() else "Redmine user ids are numbers"

    @classmethod
    def table_problems(cls, table: Mapping[str, Any]) -> list[tuple[str, str]]:
        closed, reopened = table.get("closed_status_id"), table.get("reopened_status_id")
        if isinstance(closed, int) and closed == reopened:
            return [("reopened_status_id", f"{reopened} is also closed_status_id; reopening "
                     "needs an open status")]
        return []
