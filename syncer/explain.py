"""Plans and states in words: plan lines for `plan` and `backfill --dry-run`, and
`explain`'s account of one conversation (why it did or did not sync).

Everything here is pure: `explain` reads both sides and the state first (the runner's
``decide``, the same decisions a pass makes, with nothing written) and hands the facts
to ``explain_conversation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from state import FailureRecord, Intent, LeakRecord
from syncer.config import PairConfig
from syncer.markers import Markers
from syncer.models import Comment, Ticket
from syncer.plan import (
    GONE,
    Action,
    AddComment,
    AdoptComment,
    AdoptIssue,
    CommentLinkView,
    Conflict,
    CopyEdit,
    CreateIssue,
    LinkView,
    MarkOrphaned,
    OpenConversation,
    Plan,
    PostLinkNote,
    RemoveComment,
    SaveSnapshot,
    Side,
    SideView,
    Skip,
    Untrusted,
    UpdateComment,
    UpdateTicket,
    description_target,
)
from syncer.reconcile import PAUSED
from syncer.reconcile_reverse import contact_for, reverse_match
from syncer.recovery import RecoveryPolicy


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
    if isinstance(action, AdoptIssue):
        return (f"{cid}: adopt issue {action.issue_id}, which the sync created earlier (found "
                "by its marker; the link is recorded again, nothing is sent)")
    if isinstance(action, AdoptComment):
        return (f"{cid}: recognise {action.target_id} on the {action.source_side.other.value} "
                f"side as the copy of {action.source_side.value} comment {action.source_id} "
                "(found by its marker; recorded, nothing sent)")
    if isinstance(action, RemoveComment):
        return (f"{cid}: delete comment {action.comment_id} of {action.target.value} "
                f"{action.ticket_id} ({action.reason})")
    if isinstance(action, Untrusted):
        return f"{cid}: {action.object_id} {action.reason}"
    if isinstance(action, UpdateComment):
        return (f"{cid}: rewrite {action.visibility.value} comment {action.comment_id} of "
                f"{action.target.value} {action.ticket_id}, the copy of edited "
                f"{action.edit.source_side.value} comment {action.edit.source_id}: "
                f"{_short(action.body)!r}")
    if isinstance(action, OpenConversation):
        return f"issue {action.issue_id}: {action.detail}"
    raise TypeError(type(action))


# --- explain ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Facts:
    """What `explain` read about one conversation of one pair; nothing here does I/O."""

    pair: PairConfig
    markers: Markers
    conversation: Ticket
    plan: Plan  # as a pass would carry it out now (held writes held)
    link: LinkView | None
    views: tuple[SideView | None, SideView | None]  # conversation, issue, as read to decide
    unchanged: bool  # neither side changed since the last sync
    failure: FailureRecord | None
    intents: tuple[Intent, ...]  # this conversation's unconfirmed or failed writes
    leaks: tuple[LeakRecord, ...]  # the pair's open leaks
    recovery: RecoveryPolicy
    max_retries: int
    tracker_name: str = "tracker"
    read_error: str | None = None  # reading it to decide failed (as a pass would)


CLOSE_REPLIES_LOOKED_AT = 50  # closings of one issue whose replies explain recognises


def _span(seconds: float) -> str:
    s = int(seconds)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def _link_state(f: Facts) -> list[str]:
    link, cid = f.link, f.conversation.id
    adopt = next((a for a in f.plan.actions if isinstance(a, AdoptIssue)), None)
    if link is None:
        if adopt is not None:
            return [f"not linked in this state, but issue {adopt.issue_id} was created for it "
                    "by the sync (its marker, by the sync's user): the next pass adopts it"]
        return ["not linked to an issue"]
    if link.status == "orphaned":
        return [f"link orphaned: issue {link.issue_id} was deleted; the conversation is no "
                f"longer synced (`reamaze-sync unlink {cid}`, then `link` another issue)"]
    if link.status != "active":
        return [f"link {link.status}: not synced"]
    if link.issue_id is None:
        return ["linked, but its issue create is pending: no answer confirmed it, and "
                "recovery looks for it by its marker at the start of each pass"]
    issue = f.views[1]
    url = f" ({issue.ticket.url})" if issue is not None and issue.ticket.url else ""
    return [f"linked to issue {link.issue_id}{url}"]


def _rules(f: Facts, why: str | None) -> str:
    conv = f.conversation
    if why is not None:
        return f"matches the pair's rules: {why}"
    has = (f"tags {', '.join(conv.tags) or 'none'}, channel "
           f"{conv.collection.id if conv.collection else 'none'}, status {conv.status.state}")
    outcome = ("so it gets no issue" if f.link is None else
               "it stays linked all the same (a link made by hand, or before the rules "
               "changed, keeps syncing)")
    return f"matches no rule of the pair ({describe_rules(f.pair)}); it has {has}: {outcome}"


def _dead_letter(f: Facts) -> list[str]:
    failure, cid = f.failure, f.conversation.id
    if failure is None:
        return []
    if failure.skipped:
        return [f"EXCLUDED: skipped by an operator (`skip` or `unlink --exclude`); passes "
                f"leave it and its issue alone until `reamaze-sync retry {cid}` (below: what "
                "a pass would do then)"]
    if failure.error == PAUSED:
        return ["held back: its internal notes wait until the leak that paused them is "
                "resolved (see `status`)"]
    when = ("the next pass tries it again" if failure.attempts < f.max_retries else
            f"no longer retried automatically: `reamaze-sync retry {cid}`")
    tries = f"{failure.attempts} attempt{'' if failure.attempts == 1 else 's'}"
    return [f"FAILING: {tries} since {failure.first_seen:%Y-%m-%d %H:%M} UTC ({when}): "
            f"{failure.error}"]


def _intents(f: Facts, now: datetime) -> list[str]:
    out = []
    for it in f.intents:
        what = f"{it.kind.replace('_', ' ')} to the {it.target.value}"
        age = _span((now - it.updated_at).total_seconds())
        if it.status == "failed":
            out.append(f"a write failed: {what} ({age} ago): {it.error}; the next pass sends "
                       "it again")
            continue
        window = _span(f.recovery.window.total_seconds())
        out.append(f"HELD: {what} was sent {age} ago and no answer confirmed it (looked for "
                   f"{it.lookups} times). Each pass looks for it first; until it is found, "
                   f"or has been looked for {f.recovery.min_lookups} times and {window} have "
                   "passed, it is not sent again, and the later comments to that side and "
                   "field changes of this conversation wait for it")
    return out


def _messages(f: Facts) -> list[str]:
    conv_view, issue_view = f.views
    cid = f.conversation.id
    links = f.link.comment_links if f.link else ()
    by_source = {(c.source_side, c.source_id): c for c in links}
    by_target = {(c.source_side.other, c.target_id): c for c in links}
    out: list[str] = []
    for side, view in ((Side.HELPDESK, conv_view), (Side.TRACKER, issue_view)):
        if view is None:
            continue
        for c in sorted(view.comments, key=lambda c: (c.created_at, c.id)):
            who = c.author.name or c.author.email or c.author.id or "?"
            head = (f"{side.value} {c.id} ({c.visibility.value}, {who}, "
                    f"{c.created_at:%Y-%m-%d %H:%M}): {_short(c.body, 40)!r}")
            out.append(f"    {head}: {_fate(f, side, c, view, by_source, by_target, cid)}")
    return out


def _fate(f: Facts, side: Side, c: Comment, view: SideView,
          by_source: dict[tuple[Side, str], CommentLinkView],
          by_target: dict[tuple[Side, str], CommentLinkView], cid: str) -> str:
    """What became, or becomes, of one comment."""
    own = c.marker is not None and view.wrote(c) and f.markers.belongs(c.marker, cid)
    note = _sync_note(f, cid, c.marker) if own else None
    if note is not None:
        return f"{note} (the sync's own: never copied)"
    copied_from = by_target.get((side, c.id))
    if copied_from is not None:
        return (f"our copy of {copied_from.source_side.value} comment {copied_from.source_id} "
                "(echo suppressed: never copied back)")
    planned = [a for a in f.plan.actions if _about(a, side, c.id)]
    if planned:
        return "; ".join(_planned(a) for a in planned)
    if own:
        return "our copy, recognised by its marker and author (echo suppressed: never copied)"
    if c.read_only:
        return "read-only (never copied)"
    made = by_source.get((side, c.id))
    if made is not None:
        issue_id = f.link.issue_id if f.link else None
        where = ("into the issue's description"
                 if issue_id and made.target_id == description_target(issue_id)
                 else f"as {made.target_id}")
        return f"copied to the {side.other.value} {where}"
    waiting = next((a.reason for a in f.plan.actions
                    if isinstance(a, Skip) and a.object_id == cid), None)
    if waiting is not None:
        return f"not copied yet ({waiting})"
    if f.link is None or f.link.status != "active":
        return "not copied (the conversation is not synced)"
    return "not copied"


def _sync_note(f: Facts, cid: str, marker: str | None) -> str | None:
    """What a note the sync writes on its own account is, by its marker."""
    if marker == f.markers.link_note(cid):
        return "the sync's note with the issue link"
    issue = f.link.issue_id if f.link else None
    if issue is None:
        return None
    if marker == f.markers.orphan_note(cid, issue):
        return "the sync's note that the issue was deleted"
    for n in range(CLOSE_REPLIES_LOOKED_AT):
        if marker == f.markers.close_reply(cid, issue, n):
            return f"the reply emailed to the customer when the issue closed (closing {n + 1})"
    return None


def _about(action: Action, side: Side, comment_id: str) -> bool:
    edit = getattr(action, "edit", None)
    if isinstance(edit, CopyEdit):
        return edit.source_side is side and edit.source_id == comment_id
    if isinstance(action, AddComment):
        return action.target is side.other and action.source_id == comment_id
    if isinstance(action, Skip | Untrusted):
        return action.object_id == comment_id
    if isinstance(action, AdoptComment):
        return action.source_side is side and action.source_id == comment_id
    if isinstance(action, RemoveComment):
        return action.target is side and action.comment_id == comment_id
    return False


def _planned(action: Action) -> str:
    if isinstance(action, AddComment) and action.edit is not None:
        what = "deleted" if action.edit.fingerprint == GONE else "edited"
        return (f"{what} after it was copied: an internal note saying so goes to "
                f"{action.target.value} {action.ticket_id}")
    if isinstance(action, UpdateComment):
        return f"edited after it was copied: its copy {action.comment_id} is rewritten"
    if isinstance(action, AddComment):
        where = action.ticket_id or "the new issue"
        notify = ", emailing the customer" if action.new.notify_customer else ""
        kind = action.new.visibility.value
        return (f"to be copied to {action.target.value} {where} as "
                f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} comment{notify}")
    if isinstance(action, Skip):
        return f"not copied: {action.reason}"
    if isinstance(action, AdoptComment):
        return (f"its copy {action.target_id} is found by its marker: recorded, nothing sent")
    if isinstance(action, RemoveComment):
        return f"LEAKED: {action.reason}; deleted by the next pass"
    if isinstance(action, Untrusted):
        return action.reason
    return describe_action(action)


def explain_conversation(f: Facts, why: str | None, now: datetime) -> list[str]:
    """The lines `explain` prints for one conversation of one pair."""
    conv = f.conversation
    lines = [f"[{f.pair.name}] conversation {conv.id} {conv.subject!r}"
             + (f" ({conv.url})" if conv.url else "")]
    facts = [*_link_state(f), _rules(f, why), *_dead_letter(f), *_intents(f, now)]
    if f.leaks:
        facts.append(f"internal notes of this pair are PAUSED: {len(f.leaks)} public copies "
                     "of internal content could not be removed (see `status`)")
    if f.unchanged:
        facts.append("unchanged on both sides since its last sync: passes leave it alone "
                     "until one side changes")
    lines += [f"  {line}" for line in facts]
    messages = _messages(f)
    if messages:
        lines += ["  messages:", *messages]
    if f.read_error is not None:
        lines.append(f"  next pass: reading it fails, and the pass records that as its "
                     f"failure: {f.read_error}")
        return lines
    shown = [a for a in f.plan.actions if not isinstance(a, SaveSnapshot)]
    conversation_skip = [a for a in shown if isinstance(a, Skip) and a.object_id == conv.id]
    if conversation_skip:
        lines.append(f"  next pass: nothing for it ({conversation_skip[0].reason})")
    elif not f.plan.writes and not any(isinstance(a, AdoptIssue | AdoptComment | MarkOrphaned
                                                  | Conflict) for a in shown):
        lines.append("  next pass: nothing to send, it is up to date")
    else:
        lines.append("  next pass:" if not (f.failure and f.failure.skipped)
                     else "  once retried, a pass would:")
        lines += [f"    {describe_action(a).removeprefix(conv.id + ': ')}" for a in shown]
    return lines


_CONTACT_FROM = {"custom_field": "from its contact custom field",
                 "issue": "from its Customer line", "fallback_contact": "fallback_contact"}


def explain_unlinked_issue(pair: PairConfig, issue: Ticket) -> list[str]:
    """An issue no conversation of the pair is linked to."""
    lines = [f"[{pair.name}] issue {issue.id} {issue.subject!r}"
             + (f" ({issue.url})" if issue.url else ""),
             "  not linked to any conversation of this pair: an issue is synced only "
             "through its conversation (`reamaze-sync link CONVERSATION "
             f"{issue.id}` links one)"]
    if issue.marker is not None:
        lines.append("  it carries a reamaze-sync marker: the sync created it for a "
                     "conversation whose link this state does not have (a lost, restored or "
                     "other state database); that conversation's next pass adopts it")
    elif (why := reverse_match(pair.reverse, issue)) is not None:
        contact, source = contact_for(pair.reverse, issue)
        lines.append(f"  it matches the pair's reverse rule ({why}): a pass that reads it "
                     "from the tracker's feed opens a Re:amaze conversation for it, for "
                     f"{contact} ({_CONTACT_FROM[source]}), as an internal note")
    return lines
