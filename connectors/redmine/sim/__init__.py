"""A faithful, stateful simulator of Redmine's REST JSON API (``RedmineSimulator``), served
through ``httpx.MockTransport`` or loopback, for tests, the demo and benchmarks.

Layout: simulator.py (routes), state.py (issues, journals, users), rules.py (what the
server accepts and changes), render.py (JSON out), data.py (seed data); the request log
and fault injection are `connectors.simfaults`, shared by every simulator.
It is no part of the connector: production code never imports it.
"""

from connectors.redmine.sim.simulator import RedmineSimulator

__all__ = ["RedmineSimulator"]
