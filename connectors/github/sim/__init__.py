"""The GitHub REST simulator (issues, comments, labels, search, rate limits)."""

from connectors.github.sim.server import GitHubSimulator, SimRequest
from connectors.github.sim.state import SimClock

__all__ = ["GitHubSimulator", "SimClock", "SimRequest"]
