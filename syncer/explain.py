"""Human-readable descriptions of planned actions (for `plan`, `backfill --dry-run`)."""

from __future__ import annotations

from syncer.config import PairConfig
from syncer.plan import (
    Action,
    AddComment,
    Conflict,
    CreateIssue,
    MarkOrphaned,
    PostLinkNote,
    SaveSnapshot,
    Skip,
    UpdateTicket,
)


def describe_rules(policy: PairConfig) -> str:
    """The pair's match rules in words: any one of them gives a conversation an issue."""
    rules = policy.match
    parts = [f"tags {', '.join(rules.tags)}" if rules.tags else "",
             f"channels {', '.join(rules.channels)}" if rules.channels else "",
             f"statuses {', '.join(s.value for s in rules.statuses)}" if rules.statuses else ""]
    return "; ".join(p for p in parts if p) or "no rules: nothing matches"


def _short(text: str, n: int = 60) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def describe_action(action: Action) -> str:
    cid = action.conversation_id
    if isinstance(action, CreateIssue):
        within = (f", {len(action.covered)} message(s) in its description"
                  if action.covered else "")
        return f"{cid}: create issue {action.new.subject!r}{within}"
    if isinstance(action, AddComment):
        where = action.ticket_id or "(new issue)"
        notify = ", emails the customer" if action.new.notify_customer else ""
        return (f"{cid}: add {action.new.visibility.value} comment to {action.target.value} "
                f"{where}{notify}: {_short(action.new.body)!r}")
    if isinstance(action, PostLinkNote):
        return f"{cid}: post internal note with the issue link"
    if isinstance(action, UpdateTicket):
        fields = action.update.model_dump(exclude_none=True, mode="json")
        return f"{cid}: update {action.target.value} {action.ticket_id} {fields} ({action.reason})"
    if isinstance(action, MarkOrphaned):
        return f"{cid}: mark link orphaned ({action.reason})"
    if isinstance(action, SaveSnapshot):
        return f"{cid}: record synced field values"
    if isinstance(action, Skip):
        return f"{cid or action.object_id}: skip {action.object_id}: {action.reason}"
    if isinstance(action, Conflict):
        return (f"{cid}: conflict on {action.field} (helpdesk={action.helpdesk_value}, "
                f"tracker={action.tracker_value}); {action.winner.value} wins")
    raise TypeError(type(action))
