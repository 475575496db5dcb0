"""Sync state: links, comment links, snapshots, cursors, the intent journal, runs and the
dead letter, on SQLite or PostgreSQL."""

from state.core import StateMissing, StateOutdated, utc_now
from state.journal import NewIntent
from state.locks import Holder, LeaseLost, PairBusy, PairLease
from state.migrations import CURRENT_VERSION
from state.records import FailureRecord, Intent, LeakRecord, LearnedRateRecord, RunRecord
from state.store import LinkConflict, NewCommentLink, StateStore

__all__ = ["CURRENT_VERSION", "FailureRecord", "Holder", "Intent", "LeakRecord",
           "LearnedRateRecord", "LeaseLost", "LinkConflict", "NewCommentLink", "NewIntent",
           "PairBusy", "PairLease", "RunRecord",
           "StateMissing", "StateOutdated", "StateStore", "utc_now"]
