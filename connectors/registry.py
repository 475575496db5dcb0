"""Every kind of tracker the engine can sync with: its config model and how to connect.

This is the one place a tracker is registered. The config's ``[trackers.NAME]`` sections
are validated against the union of these models (selected by ``kind``), and the engine,
``check`` and the daemon's start check connect through ``connect``. A new tracker is its
folder under ``connectors/`` plus one line in ``TRACKERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from connectors.base import Connector
from connectors.github.config import GitHubConfig
from connectors.github.connector import GitHubConnector
from connectors.gitlab.config import GitLabConfig
from connectors.gitlab.connector import GitLabConnector
from connectors.redmine.config import RedmineConfig
from connectors.redmine.connector import RedmineConnector
from connectors.settings import TrackerSettings

# (config, secret, transport=None, clock=None) -> the connector; a connector's
# ``from_config``. The transport routes it to a simulator in tests and the demo.
TrackerFactory = Callable[..., Connector]


class TrackerKind(NamedTuple):
    connect: TrackerFactory
    # The config key naming the secret's environment variable (the model's ``secret_key``).
    secret_key: str
    config: type[TrackerSettings]

    @classmethod
    def of(cls, config: type[TrackerSettings], connect: TrackerFactory) -> TrackerKind:
        return cls(connect=connect, secret_key=config.secret_key, config=config)

    @property
    def kind(self) -> str:
        return self.config.kind_tag()


TRACKERS: tuple[TrackerKind, ...] = (
    TrackerKind.of(RedmineConfig, RedmineConnector.from_config),
    TrackerKind.of(GitHubConfig, GitHubConnector.from_config),
    TrackerKind.of(GitLabConfig, GitLabConnector.from_config),
)

TRACKER_KINDS: dict[str, TrackerKind] = {t.kind: t for t in TRACKERS}
