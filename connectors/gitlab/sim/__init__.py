"""The GitLab REST v4 simulator (issues, notes, uploads, pagination, rate limits)."""

from connectors.gitlab.sim.server import GitLabSimulator
from connectors.gitlab.sim.state import SimClock
from connectors.simfaults import SimRequest

__all__ = ["GitLabSimulator", "SimClock", "SimRequest"]
