"""A pair's `since` bounds its history: the first pass and backfills start there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from e2e_support import issue_ids, run_pass, sandbox

from syncer.sandbox import Sandbox


def _seed(sb: Sandbox) -> str:
    return sb.reamaze.add_conversation("Crash on save", "It crashes when I save.",
                                       "carol@customer.example", tags=["bug"])


def test_first_pass_ignores_conversations_older_than_since(tmp_path: Path) -> None:
    """Conversations last changed before the pair's `since` get no issue on the first pass."""
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    sb = sandbox(tmp_path, since=future)
    _seed(sb)
    engine = sb.engine()
    try:
        run_pass(engine)
        assert issue_ids(sb) == []
    finally:
        engine.close()


def test_first_pass_syncs_conversations_changed_after_since(tmp_path: Path) -> None:
    """A conversation changed after `since` is synced by the first pass."""
    sb = sandbox(tmp_path, since="2020-01-01")
    _seed(sb)
    engine = sb.engine()
    try:
        run_pass(engine)
        assert len(issue_ids(sb)) == 1
    finally:
        engine.close()
