"""GitHub Issues (REST): connector, wire models, mapping, change feed, config and, in
``sim/``, a stateful simulator.

Layout: config.py (``[trackers.NAME]`` with ``kind = "github"``), wire.py (JSON shapes),
mapping.py (pure translation), feed.py (change feed), connector.py (the Connector).
"""

from connectors.github.connector import GitHubConnector

__all__ = ["GitHubConnector"]
