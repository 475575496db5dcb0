"""Reverse creation in a pass: an issue from the tracker feed without a link.

The runner calls these for issues no link knows (``reverse_issue``) and, at the start of
a pass, for issues whose conversation create failed or waited (``retry_reverse``: the
dead letter's tracker side, since the feed's cursor has moved past them). Deciding is
``syncer.reconcile_reverse``'s, writing ``syncer.apply_reverse``'s; once the link is
recorded the conversation is synced at once through the runner's own path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from syncer.apply import HELD
from syncer.apply_reverse import adopt_conversation, open_conversation
from syncer.errors import AuthError, FatalError, NotFoundError, RedirectError, SkippableError
from syncer.markers import reverse_key
from syncer.models import Ticket
from syncer.plan import OpenConversation, Plan, Side, SideView, Skip
from syncer.reconcile_reverse import (
    AdoptConversation,
    CreateConversation,
    opens_with_the_sync,
    readopt,
    reconcile_reverse,
    reverse_issue_of,
    reverse_match,
)

if TYPE_CHECKING:
    from syncer.runner import PairRunner, PassResult

log = structlog.get_logger("reamaze_sync.reverse")


def reverse_issue(runner: PairRunner, issue: Ticket, result: PassResult, dry_run: bool,
                  *, retrying: bool = False) -> str | None:
    """Open (or adopt) the conversation of an unlinked issue matching the reverse rule and
    sync it; returns its id once linked."""
    ctx, store, pair = runner.ctx, runner.store, runner.pair
    if reverse_match(ctx.policy.reverse, issue) is None:
        if retrying:  # no longer matches: nothing to retry
            store.clear_failure(pair, Side.TRACKER, issue.id)
        return None
    key = ctx.markers.reverse_conversation(issue.id)
    if key in runner.held:
        # An earlier create has no confirmed outcome: wait for recovery, never send twice.
        if not dry_run:
            store.record_failure(pair, Side.TRACKER, issue.id, HELD, attempt=False)
        return None
    bound = log.bind(pair=pair, issue_id=issue.id, operation="reverse_create")
    try:
        # One request per new conversation: what no duplicates cost when the state lost
        # the link (a restored database, another host).
        action = reconcile_reverse(ctx, issue, runner.helpdesk.find_ticket_by_marker(key))
        if dry_run:
            if isinstance(action, CreateConversation | AdoptConversation):
                plan = Plan(pair=pair, actions=(OpenConversation(
                    conversation_id=reverse_key(issue.id), issue_id=issue.id,
                    detail=_describe(action)),))
                result.plans.append(plan)
                result.counts["planned_writes"] += isinstance(action, CreateConversation)
            return None
        if isinstance(action, CreateConversation):
            opened = open_conversation(pair, store, runner.helpdesk, action)
            cid = opened.conversation_id
            result.counts["conversations_created"] += 1
            if opened.opening_public:
                result.counts["openings_public"] += 1
        elif isinstance(action, AdoptConversation):
            adopt_conversation(pair, store, action)
            cid = action.conversation_id
            result.counts["conversations_adopted"] += 1
        else:
            return None
    except (AuthError, RedirectError):
        raise
    except (SkippableError, FatalError) as exc:
        bound.error("operation_failed", **exc.log_fields())
        attempts = store.record_failure(pair, Side.TRACKER, issue.id, str(exc))
        result.failed[reverse_key(issue.id)] = f"{type(exc).__name__}: {exc} (attempt " \
                                               f"{attempts})"
        return None
    store.clear_failure(pair, Side.TRACKER, issue.id)
    link = store.get_link(pair, cid)
    if link is not None:
        runner.sync_new_link(link, result)
    return cid


def readopt_reverse(runner: PairRunner, view: SideView
                    ) -> tuple[Plan, SideView, SideView | None] | None:
    """A conversation without a link that reverse creation opened (the state lost its
    link): its plan is to be linked to its issue again, never to get an issue of its own;
    with what was read. None for any other conversation. Costs a request only for a
    conversation that starts with the opening text (its ``data`` is read)."""
    if not opens_with_the_sync(view):
        return None
    full = runner.helpdesk.get_ticket(view.ticket.id)
    iid = reverse_issue_of(runner.ctx, full)
    if iid is None:
        return None
    conversation = view.model_copy(update={"ticket": full})
    try:
        issue, comments = runner.tracker.read_ticket(iid)
    except NotFoundError:
        return Plan(pair=runner.pair, actions=(Skip(
            conversation_id=full.id, object_id=iid,
            reason=f"opened for issue {iid}, which is gone; it gets no issue of its own"),)
        ), conversation, None
    issue_view = SideView(ticket=issue, comments=tuple(comments), me=runner.tracker.whoami())
    log.warning("conversation_adopted", pair=runner.pair, object_id=full.id, issue_id=iid,
                reason="opened for this issue (found by its key); the state had lost its link")
    return readopt(runner.ctx, conversation, issue_view), conversation, issue_view


def retry_reverse(runner: PairRunner, result: PassResult, max_retries: int) -> None:
    """Issues whose conversation create failed or waited on recovery, tried again."""
    for failure in runner.store.list_failures(runner.pair):
        if (failure.side is not Side.TRACKER or failure.skipped
                or failure.attempts >= max_retries):
            continue
        runner.check_stop()
        if runner.store.get_link_by_issue(runner.pair, failure.object_id) is not None:
            runner.store.clear_failure(runner.pair, Side.TRACKER, failure.object_id)
            continue
        try:
            issue = runner.tracker.get_ticket(failure.object_id)
        except NotFoundError:
            runner.store.set_failure_skipped(runner.pair, Side.TRACKER, failure.object_id, True)
            continue
        result.counts["failures_retried"] += 1
        reverse_issue(runner, issue, result, dry_run=False, retrying=True)


def _describe(action: CreateConversation | AdoptConversation) -> str:
    if isinstance(action, AdoptConversation):
        return (f"adopt conversation {action.conversation_id}, made earlier for this issue "
                "(found by its key; the link is recorded again)")
    return (f"open a Re:amaze conversation ({action.reason}; contact "
            f"{action.new.contact_email} from {action.contact_from}); its first message "
            "content-free, the details in an internal note, nothing emailed")
