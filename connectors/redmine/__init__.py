"""Redmine (REST JSON, 5.0+): connector, wire models, mapping and a faithful simulator.

Layout: wire.py (JSON shapes), mapping.py (pure translation, markers), feed.py (change
feed), guard.py + notes.py (private-note safety), connector.py (the Connector), and the
simulator in the ``sim`` package.
"""

from connectors.redmine.connector import RedmineConnector

__all__ = ["RedmineConnector"]
