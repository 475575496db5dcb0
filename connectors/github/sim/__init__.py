"""The GitHub REST simulator (issues, comments, labels, search, rate limits)."""

from connectors.github.sim.server import GitHubSimulator
from connectors.github.sim.state import SimClock
from connectors.simfaults import SimRequest

__all__ = ["GitHubSimulator", "SimClock", "SimRequest"]
