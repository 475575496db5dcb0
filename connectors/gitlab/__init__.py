"""GitLab Issues (REST v4): connector, wire models, mapping, change feed, config and, in
``sim/``, a stateful simulator.

Layout: config.py (``[trackers.NAME]`` with ``kind = "gitlab"``), wire.py (JSON shapes),
mapping.py (pure translation), feed.py (change feed), notes.py (writing notes, the
internal-note read-back), connector.py (the Connector), webhook.py (deliveries).
"""

from connectors.gitlab.connector import GitLabConnector

__all__ = ["GitLabConnector"]
