"""Sync state: links, comment links, snapshots, cursors, the intent journal, runs and the
dead letter, on SQLite or PostgreSQL."""

from state.core import StateMissing, StateOutdated, utc_now
from state.journal import NewIntent
from state.migrations import CURRENT_VERSION
from state.records import FailureRecord, Intent, RunRecord
from state.store import NewCommentLink, StateStore

__all__ = ["CURRENT_VERSION", "FailureRecord", "Intent", "NewCommentLink", "NewIntent", "RunRecord",
           "StateMissing", "StateOutdated", "StateStore", "utc_now"]
