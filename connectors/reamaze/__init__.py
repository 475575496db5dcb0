"""Re:amaze: the connector (``connector.ReamazeConnector``) and a faithful simulator of its
REST API (``simulator.ReamazeSimulator``) for tests, the demo and benchmarks."""

from connectors.reamaze.connector import ReamazeConnector

__all__ = ["ReamazeConnector"]
