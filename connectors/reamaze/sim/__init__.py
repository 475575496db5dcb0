"""A faithful, stateful simulator of the Re:amaze REST API (``ReamazeSimulator``), served
through ``httpx.MockTransport`` or loopback, for tests, the demo and benchmarks.

It is no part of the connector: production code never imports it.
"""

from connectors.reamaze.sim.simulator import ReamazeSimulator

__all__ = ["ReamazeSimulator"]
