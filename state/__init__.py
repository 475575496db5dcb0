"""Sync state: links, comment links, snapshots, cursors, the intent journal, runs and the
dead letter, on SQLite or PostgreSQL."""

from state.core import utc_now
from state.migrations import CURRENT_VERSION
from state.records import FailureRecord, Intent, RunRecord
from state.store import StateStore

__all__ = ["CURRENT_VERSION", "FailureRecord", "Intent", "RunRecord", "StateStore", "utc_now"]
