"""`reamaze-sync status`: what each pair has done and what is waiting."""

from __future__ import annotations

from datetime import datetime

from state import Holder, RunRecord, StateStore
from syncer.config import AppConfig
from syncer.plan import Side


def _age(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "never"
    seconds = int((now - then).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    if seconds < 172800:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def _still_held(run: RunRecord, holder: Holder | None) -> bool:
    """An unfinished run is running only while its process holds the pair: a process
    that died (killed, crashed, host lost) left the run unfinished and holds nothing."""
    if holder is None:
        return False
    return run.holder is None or run.holder == holder.label  # None: an older release's run


def render_status(cfg: AppConfig, store: StateStore, now: datetime) -> str:
    lines: list[str] = []
    for pair in cfg.pairs:
        name = pair.name
        active = store.count_links(name, "active")
        orphaned = store.count_links(name, "orphaned")
        lines.append(f"[{name}] tracker={pair.tracker} enabled={pair.enabled} "
                     f"links={active} orphaned={orphaned}")
        for side in Side:
            cur = store.get_cursor(name, side)
            mark = cur.watermark.isoformat() if cur else "none"
            lines.append(f"  cursor {side.value}: {mark} "
                         f"({_age(now, cur.watermark) if cur else 'never polled'})")
        holder = store.pair_holder(name)
        if holder is not None:
            lines.append(f"  worked by {holder}")
        last = store.last_run(name)
        if last is None:
            lines.append("  last run: never")
        else:
            counts = ", ".join(f"{k}={v}" for k, v in sorted(last.counts.items())) or "-"
            state = ("ok" if last.error is None else "failed") if last.finished else (
                "running" if _still_held(last, holder) else "interrupted")
            lines.append(f"  last run: {last.kind} {_age(now, last.started_at)} {state}; "
                         f"{counts}")
        err = store.last_error_run(name)
        if err is not None:
            lines.append(f"  last error ({_age(now, err.started_at)}): {err.error}")
        pending = store.pending_intents(name)
        lines.append(f"  pending intents: {sum(1 for i in pending if i.status == 'pending')}"
                     f", failed writes: {sum(1 for i in pending if i.status == 'failed')}")
        for leak in store.open_leaks(name):
            lines.append(f"  LEAK: {leak.side.value} {leak.ticket_id} comment "
                         f"{leak.comment_id} (conversation {leak.conversation_id}) is a PUBLIC "
                         f"copy of internal content, found {_age(now, leak.detected_at)}; "
                         "internal notes to the tracker are paused until it is deleted: "
                         f"{leak.detail[:200]}")
        failures = store.list_failures(name)
        if failures:
            lines.append(f"  failing objects: {len(failures)}")
            for f in failures[:10]:
                flag = " (skipped)" if f.skipped else ""
                lines.append(f"    {f.side.value} {f.object_id}: {f.attempts} attempts{flag}: "
                             f"{f.error[:120]}")
    return "\n".join(lines)
