"""Re:amaze: the connector (``connector.ReamazeConnector``) and, in ``sim/``, a faithful
simulator of its REST API for tests, the demo and benchmarks."""

from connectors.reamaze.connector import ReamazeConnector

__all__ = ["ReamazeConnector"]
