"""One pass of one pair: read both change feeds, reconcile, apply, advance cursors.

The same code path serves the daemon, ``run --once``, ``backfill`` and ``plan``. Cursor
discipline: the tracker feed is oldest-first, so its cursor is saved after each page
whose work is durable; the Re:amaze feed is newest-first, so its cursor is saved only
when the whole walk is done. An aborted pass (retriable or auth error, stop request)
saves nothing it did not finish. Objects that fail on their own are recorded as failures
(retried at the start of later passes) so one poison conversation never blocks a pair.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog

from connectors.base import (
    Connector,
    FiltersChanges,
    ListsStatuses,
    MessageSource,
    PrefetchesMessages,
    SharesChanges,
    server_now,
)
from state import PairBusy, PairLease, StateStore
from syncer.apply import HELD, Applier, ApplyResult, TrackerWrites
from syncer.errors import NotFoundError, SkippableError, SyncError
from syncer.expect import Counting, counts_internal_notes, is_own_echo
from syncer.models import Attachment, Cursor, Ticket, Visibility
from syncer.partial import conversation_from_snapshot, needs_conversation
from syncer.plan import LinkView, Plan, PostLinkNote, SaveSnapshot, Side, SideView, Skip
from syncer.reconcile import PAUSED, PairContext, is_our_issue, matches, reconcile
from syncer.reconcile_reverse import reverse_link_plan
from syncer.recovery import RecoveryPolicy, recover_intents
from syncer.runner_reverse import readopt_reverse, retry_reverse, reverse_issue
from syncer.secrets import scrub

log = structlog.get_logger("reamaze_sync.runner")

MAX_AUTO_RETRIES = 10
# Trackers such as Redmine show change times in whole seconds; with 1 s of clock skew on
# top, a time is only final once it is this old. Old by the time the tracker's connector
# tells (``connectors.base.server_now``: the clock its feed settles by; the host's unless
# one is injected), never by a clock of the runner's own: against a tracker whose clock is
# behind it every second would look over, and a note written later in the second of our
# read would be taken for the version read.
SETTLE_TIME = timedelta(seconds=2)


@dataclass
class PassResult:
    pair: str
    counts: Counter[str] = field(default_factory=Counter)
    plans: list[Plan] = field(default_factory=list)
    error: str | None = None
    failed: dict[str, str] = field(default_factory=dict)
    busy: bool = False  # not run: another process works the pair (``error`` names it)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def clean(self) -> bool:
        """Finished with nothing for a person to look at: no error, no failed object, no
        copy that came back public (removed or not). The exit code follows this."""
        return self.ok and not self.failed and not any(
            self.counts.get(k) for k in ("leaks_removed", "leaks_unremoved", "leaks_open"))


class StopRequested(Exception):
    pass


# More work for a pass, after its feeds, under the same lock and recovery: the sweep.
# Called with the runner, the pass's result and whether it is a dry run.
PassWork = Callable[["PairRunner", "PassResult", bool], None]


@dataclass(frozen=True)
class Decision:
    """A conversation's plan and what was read to make it: the conversation and the issue
    (linked, or found by its marker) with their comments, when they were read."""

    plan: Plan
    conversation: SideView | None = None
    issue: SideView | None = None
    issue_deleted: bool = False
    # The tracker's time just before the issue was read (None: unknown).
    issue_read_at: datetime | None = None
    unchanged: bool = False  # neither side changed since the last sync: a pass skips it


@dataclass
class PairRunner:
    ctx: PairContext
    store: StateStore
    helpdesk: Connector
    tracker: Connector
    stop_event: threading.Event = field(default_factory=threading.Event)
    progress: Callable[[int], None] | None = None  # called with 1 per conversation read
    # Called with the number of conversations the helpdesk listing announced, if it did.
    progress_total: Callable[[int], None] | None = None
    recovery: RecoveryPolicy = field(default_factory=RecoveryPolicy)
    # Keys of writes whose outcome is still unknown, from this pass's recovery, and the
    # conversations they belong to.
    _held: set[str] = field(default_factory=set, init=False)
    _waiting: set[str] = field(default_factory=set, init=False)
    # How long a pass waits for its pair while another process works it: `run --once` and
    # `backfill` wait; the daemon does not (it tries again at its next interval).
    lock_wait: float = 0.0
    lease: PairLease | None = field(default=None, init=False)  # held during a pass
    # Called after every pass that was not a dry run, the pair released (the engine saves
    # the request rates its connections learned).
    after_pass: Callable[[], None] | None = None
    # The dead letter, read once at the start of a pass instead of once per conversation
    # (an operator's `skip` made during a pass applies from the next one).
    _failing: set[str] = field(default_factory=set, init=False)
    _skipped: set[str] = field(default_factory=set, init=False)
    # Conversations reconciled in this pass -> the version of their issue that work
    # accounts for (None: it cannot vouch for any), see ``_covered``.
    _covered: dict[str, datetime | None] = field(default_factory=dict, init=False)
    # Whether Re:amaze was seen to count internal notes in ``message_count``
    # (``syncer.expect``): learnt from the first conversation that shows it; the engine
    # shares it between the runs of the brand's pairs.
    counting: Counting = field(default_factory=Counting)
    # A backfill's messages read across conversations (``connectors.reamaze.prefetch``),
    # used once ``counting`` says a conversation's count can vouch for them; the
    # times the engine read a conversation after its link note to learn that.
    _prefetch: MessageSource | None = field(default=None, init=False)
    _count_probes: int = field(default=0, init=False)
    # Run after the feeds of every poll (the daemon's sweep slice), or instead of them
    # (``run_once(feeds=False)``: `verify`).
    after_feeds: PassWork | None = None
    # Files of Re:amaze messages up to this size go with their copy to a tracker that
    # takes uploads (``[sync] attachment_max_mb``).
    attachment_max_bytes: int = 10 * 1024 * 1024
    # Tracker files to Re:amaze through the daemon's relay (``syncer.relay``): the
    # attachment with a link Re:amaze can fetch. None: copies name the files instead.
    relay: Callable[[Attachment], Attachment] | None = None

    @property
    def pair(self) -> str:
        return self.ctx.pair

    def _with_statuses(self, ctx: PairContext) -> PairContext:
        """The context with the tracker's statuses, when the pair's status table names
        some (read once per connection: the connector keeps them)."""
        if ctx.tracker_statuses or not ctx.policy.status.names_tracker_statuses:
            return ctx
        if not isinstance(self.tracker, ListsStatuses):
            return ctx
        return replace(ctx, tracker_statuses=tuple(self.tracker.list_statuses()))

    def run_once(self, *, kind: str = "poll", dry_run: bool = False, full: bool = False,
                 since: datetime | None = None, feeds: bool = True,
                 issues: frozenset[str] | None = None) -> PassResult:
        """One pass. ``full`` (backfill) walks all of Re:amaze's history, or back to ``since``,
        instead of starting from the saved cursor.

        A pass that writes holds the pair for its whole length (two processes on one pair
        wrote every issue and note twice); a busy pair is an error result naming its
        holder once ``lock_wait`` runs out. A dry run reads only and takes nothing."""
        if dry_run:
            return self._pass(kind=kind, dry_run=True, full=full, since=since, feeds=feeds,
                              issues=issues)
        try:
            lease = self.store.lease_pair(self.pair, wait_seconds=self.lock_wait)
        except PairBusy as exc:
            log.warning("pair_busy", pair=self.pair, holder=str(exc.holder),
                        waited_seconds=exc.waited)
            return PassResult(pair=self.pair, error=str(exc), busy=True)
        self.lease = lease
        try:
            with self.store.fenced(lease):
                return self._pass(kind=kind, dry_run=False, full=full, since=since,
                                  feeds=feeds, issues=issues)
        finally:
            self.lease = None
            lease.release()
            if self.after_pass is not None:
                self.after_pass()

    def _pass(self, *, kind: str, dry_run: bool, full: bool, since: datetime | None,
              feeds: bool = True, issues: frozenset[str] | None = None) -> PassResult:
        result = PassResult(pair=self.pair)
        run_id = None if dry_run else self.store.start_run(self.pair, kind)
        structlog.contextvars.bind_contextvars(pair=self.pair)
        ctx = self.ctx
        self._covered = {}
        self._prefetch = None
        try:
            self.ctx = self._with_statuses(ctx)
            self._load_dead_letter()
            if not dry_run:
                recovered = recover_intents(self.pair, self.store, self.helpdesk,
                                            self.tracker, self.recovery)
                result.counts.update(recovered.counts)
                self._held, self._waiting = recovered.held, recovered.waiting
                self.ctx = replace(self.ctx, internal_paused=self._open_leaks(result))
                retried = self._retry_failures(result, recovered.resolved, recovered.waiting)
                if self.ctx.policy.reverse.enabled:
                    retry_reverse(self, result, MAX_AUTO_RETRIES)
            else:
                retried = {}
            if issues is not None:  # a webhook's: only these issues' links
                self._targeted_pass(result, dry_run, issues, retried)
            elif feeds:
                done = self._helpdesk_pass(result, dry_run, full, since, retried)
                self._tracker_pass(result, dry_run, done)
            if self.after_feeds is not None and issues is None and (
                    kind == "poll" or not feeds):
                self.after_feeds(self, result, dry_run)
        except StopRequested:
            result.error = "stopped before the pass finished"
            log.info("pass_interrupted")
        except SyncError as exc:
            result.error = str(exc)
            log.error("pass_failed", **exc.log_fields())
        except Exception as exc:  # a bug: record the run as failed, not "running" forever
            result.error = scrub(f"internal error: {exc!r}")
            log.exception("pass_crashed")
        finally:
            self.ctx = ctx
            self._prefetch = None
            structlog.contextvars.unbind_contextvars("pair")
        if result.counts.get("leaks_open") and result.error is None:
            result.error = (f"{result.counts['leaks_open']} copies of internal content are "
                            "public and could not be removed; internal content to the tracker "
                            "is paused until they are gone (see `reamaze-sync status`)")
        if run_id is not None:
            self.store.finish_run(run_id, dict(result.counts), result.error)
        log.info("pass_finished", pair=self.pair, kind=kind, ok=result.ok,
                 **{k: v for k, v in sorted(result.counts.items())})
        return result

    # -- feeds -------------------------------------------------------------------------
    def _helpdesk_pass(self, result: PassResult, dry_run: bool, full: bool,
                       since: datetime | None, retried: dict[str, datetime]) -> set[str]:
        saved = self.store.get_cursor(self.pair, Side.HELPDESK)
        cursor = saved
        start = since or self.ctx.policy.since
        if full or saved is None:
            # A backfill, or a pair's very first pass: history back to the pair's start.
            cursor = Cursor(watermark=start) if start is not None else None
        final: Cursor | None = None
        # The version of each conversation this pass has looked at: once per version is
        # enough (pages shift and repeat one), but one that changed since (a message
        # after a retry's read) is looked at again, or the cursor would move past it.
        seen = dict(retried)
        # Only conversations reconciled against a fresh read of their issue: one re-read
        # unchanged (a walk repeated after an aborted pass) still needs the tracker feed.
        done = set(retried)
        rules = self.ctx.policy.match
        if ((full or saved is None) and isinstance(self.helpdesk, FiltersChanges)
                and not rules.empty and not rules.statuses):
            # A walk through history: only the conversations the rules can match.
            pages = self.helpdesk.iter_changes_where(cursor, tags=rules.tags,
                                                     channels=rules.channels)
            if isinstance(self.helpdesk, PrefetchesMessages) and rules.tags:
                self._prefetch = self.helpdesk.message_prefetch(rules.tags)
        elif isinstance(self.helpdesk, SharesChanges):
            pages = self.helpdesk.iter_changes_for(self.pair, cursor)
        else:
            pages = self.helpdesk.iter_changes(cursor)
        for page in pages:
            if page.total is not None and self.progress_total is not None:
                self.progress_total(page.total)
            for conv in page.tickets:
                self._check_stop()
                result.counts["conversations_seen"] += 1
                if seen.get(conv.id) != conv.updated_at:
                    seen[conv.id] = conv.updated_at
                    # One that failed earlier in this pass is left to the dead letter: a
                    # write of it may still be unknown, held by recovery only from the
                    # next pass on, and would be sent a second time.
                    if conv.id not in result.failed and self._conversation_changed(
                            conv, result, dry_run):
                        done.add(conv.id)
                if self.progress:
                    self.progress(1)
            final = page.checkpoint or final
        # A backfill's walk may end behind the live cursor; never move a cursor backwards.
        if final is not None and not dry_run and (
                saved is None or final.watermark >= saved.watermark):
            self.store.save_cursor(self.pair, Side.HELPDESK, final)
            log.debug("cursor_advanced", side="helpdesk", watermark=final.watermark.isoformat())
        return done

    def _tracker_pass(self, result: PassResult, dry_run: bool, done: set[str]) -> None:
        cursor = self.store.get_cursor(self.pair, Side.TRACKER)
        for page in self.tracker.iter_changes(cursor):
            for issue in page.tickets:
                self._check_stop()
                result.counts["issues_seen"] += 1
                link = self.store.get_link_by_issue(self.pair, issue.id)
                if link is None and self.ctx.policy.reverse.enabled:
                    cid = reverse_issue(self, issue, result, dry_run)
                    if cid is not None:
                        done.add(cid)
                    continue
                if link is None:
                    continue
                if link.conversation_id in done and not self._outdated(link.conversation_id,
                                                                       issue):
                    if not dry_run:
                        self._vouch_for_issue(link, issue)
                    continue
                if link.conversation_id in self._skipped:  # an operator's `skip`
                    result.counts["skipped_by_operator"] += 1
                    continue
                if _unchanged(link, tracker=issue):
                    continue  # not done: a later version in this walk is looked at
                done.add(link.conversation_id)
                self._sync_link(link, result, dry_run, issue=issue)
            if page.checkpoint is not None and not dry_run:
                self.store.save_cursor(self.pair, Side.TRACKER, page.checkpoint)

    def _targeted_pass(self, result: PassResult, dry_run: bool, issues: frozenset[str],
                       retried: dict[str, datetime]) -> None:
        """Only the links of these issues (a webhook said they changed), read afresh on
        both sides. No cursor moves: the feeds still see these changes and find them
        reconciled, so polling stays the source of truth."""
        for issue_id in sorted(issues):
            self._check_stop()
            link = self.store.get_link_by_issue(self.pair, issue_id)
            if link is None or link.status != "active" or link.conversation_id in retried:
                continue
            if link.conversation_id in self._skipped:
                result.counts["skipped_by_operator"] += 1
                continue
            result.counts["issues_seen"] += 1
            self._sync_link(link, result, dry_run)

    def _outdated(self, cid: str, issue: Ticket) -> bool:
        """The conversation was reconciled in this pass, but the feed shows its issue in a
        version that work does not account for: someone changed it after the read, or our
        own writes could not be told from theirs. Looked at again now, or the feed's
        cursor moves past the change. An unsettled version waits: the feed keeps returning
        the issue until its second is over (by the same clock). Without the tracker's time
        nothing says the feed will, so it is looked at now. A conversation that failed
        (the dead letter retries it) or was not reconciled (skipped by an operator) is left
        alone."""
        if cid not in self._covered:
            return False
        covered = self._covered[cid]
        if covered is not None and covered == issue.updated_at:
            return False
        now = self._tracker_now()
        return now is None or _settled(issue.updated_at, now)

    def _vouch_for_issue(self, link: LinkView, issue: Ticket) -> None:
        """The feed shows the issue in the very version this pass's work on the link
        accounts for (our create and notes included): the snapshot records its change
        time, so the link reads as unchanged from then on without reading anything again
        (a new link's snapshot has none until then)."""
        snap = link.snapshot
        covered = self._covered.get(link.conversation_id)
        if (snap is None or covered is None or covered != issue.updated_at
                or not _settled(issue.updated_at, self._tracker_now())):
            return
        stamp = issue.updated_at.isoformat()
        if snap.tracker_updated_at != stamp:
            self.store.save_snapshot(self.pair, link.conversation_id,
                                     snap.model_copy(update={"tracker_updated_at": stamp}))

    def _tracker_now(self) -> datetime | None:
        return server_now(self.tracker)

    def _open_leaks(self, result: PassResult) -> bool:
        """Look again at every copy recorded as public and unremovable: one that is gone or
        private now is resolved, the others are tried again. True while any is left: the
        pair then sends no internal content."""
        sides = {Side.HELPDESK: self.helpdesk, Side.TRACKER: self.tracker}
        still = 0
        for leak in self.store.open_leaks(self.pair):
            side = sides[leak.side]
            bound = log.bind(pair=self.pair, conversation_id=leak.conversation_id,
                             operation="recheck_leak", side=leak.side.value,
                             object_id=leak.ticket_id, comment_id=leak.comment_id)
            try:
                copy = next((c for c in side.list_comments(leak.ticket_id)
                             if c.id == leak.comment_id), None)
                # Only the engine's own note: once the copy is gone, a tracker that reuses
                # ids (Redmine on SQLite) gives its id to the next person's note.
                if copy is not None and copy.visibility is Visibility.PUBLIC and \
                        (copy.author.id or "").casefold() == side.whoami().casefold():
                    side.delete_comment(leak.ticket_id, leak.comment_id)
                    result.counts["leaks_removed"] += 1
            except NotFoundError:
                pass  # the ticket is gone, and the copy with it
            except SyncError as exc:
                still += 1
                bound.critical("visibility_leak_open", detail=leak.detail,
                               **exc.log_fields())
                continue
            self.store.resolve_leak(self.pair, leak.side, leak.ticket_id, leak.comment_id)
            bound.warning("visibility_leak_resolved")
        if still:
            result.counts["leaks_open"] = still
        return still > 0

    def _retry_failures(self, result: PassResult, resolved: set[str],
                        waiting: set[str]) -> dict[str, datetime]:
        """Conversations that failed earlier, and those whose unknown writes recovery just
        resolved (their remaining work waited for that), reconciled again now; each with
        the version of it that was read. One whose writes are still held is not due yet."""
        retried: dict[str, datetime] = {}
        due = {cid: False for cid in sorted(resolved)}
        for failure in self.store.list_failures(self.pair):
            if (failure.side is not Side.HELPDESK or failure.skipped
                    or failure.attempts >= MAX_AUTO_RETRIES):
                continue
            if failure.error == PAUSED and self.ctx.internal_paused:
                continue  # nothing to do until the leak is resolved
            if failure.error == HELD and failure.object_id in waiting:
                continue  # nothing to do until recovery resolves the earlier write
            due[failure.object_id] = True
        for cid, failing in due.items():
            self._check_stop()
            if failing:
                result.counts["failures_retried"] += 1
            try:
                conv = self.helpdesk.get_ticket(cid)
            except NotFoundError:
                self.store.set_failure_skipped(self.pair, Side.HELPDESK, cid, True)
                continue
            # Forced: what failed may have come from the issue (a note copy), so an
            # unchanged conversation is no reason to skip it.
            self._conversation_changed(conv, result, dry_run=False, force=True)
            retried[conv.id] = conv.updated_at
        return retried

    # -- one object ----------------------------------------------------------------------
    def _conversation_changed(self, conv: Ticket, result: PassResult, dry_run: bool,
                              force: bool = False) -> bool:
        """Reconcile one conversation from the feed; False when it was left alone because
        nothing changed since its last sync (its issue may still have)."""
        if conv.id in self._skipped:
            result.counts["skipped_by_operator"] += 1
            return True
        link = self.store.get_link(self.pair, conv.id)
        if link is None:
            if matches(self.ctx.policy, SideView(ticket=conv)) is None:
                if force:  # a failing conversation that no longer matches: nothing to retry
                    self._clear_failure(conv.id)
                return True  # cheap: no message fetch for conversations the pair ignores
            self._run_plan(conv.id, result, dry_run, lambda: self._decide_new(conv))
            return True
        if link.status != "active" or (not force and _unchanged(link, helpdesk=conv)):
            return False
        if not force and is_own_echo(link.snapshot, conv,
                                     counts_internal=self.counting.includes_internal):
            # Only the sync's own writes since the last sync: nothing to read for. The
            # snapshot takes the item's change time, so the link reads as unchanged
            # (`explain`, the sweep) as it would after a read.
            result.counts["own_changes_not_reread"] += 1
            log.debug("own_change_not_reread", conversation_id=conv.id, operation="poll")
            if not dry_run and link.snapshot is not None and conv.updated_at_exact:
                self.store.save_snapshot(self.pair, conv.id, link.snapshot.model_copy(
                    update={"helpdesk_updated_at": conv.updated_at.isoformat()}))
            return False
        self._sync_link(link, result, dry_run, conversation=conv)
        return True

    def _sync_link(self, link: LinkView, result: PassResult, dry_run: bool, *,
                   conversation: Ticket | None = None, issue: Ticket | None = None) -> None:
        self._run_plan(link.conversation_id, result, dry_run,
                       lambda: self._decide_link(link, conversation, issue))

    def _decide_link(self, link: LinkView, conversation: Ticket | None = None,
                     issue: Ticket | None = None) -> Decision:
        if conversation is None and issue is not None and link.issue_id is not None:
            decided = self._decide_from_tracker(link, issue)
            if decided is not None:
                return decided
        conv_view = self._helpdesk_view(link.conversation_id, conversation)
        if link.issue_id is None:
            return Decision(reconcile(self.ctx, conv_view, None, link), conv_view)
        before = self._tracker_now()
        try:
            iss_view = self._view(self.tracker, link.issue_id, issue)
        except NotFoundError:
            return Decision(reconcile(self.ctx, conv_view, None, link, issue_deleted=True),
                            conv_view, issue_deleted=True)
        # A link reverse creation made has a little more to do (its opening message, the
        # issue's details): ``reverse_link_plan`` says what, and how the link then looks.
        seen, extra = reverse_link_plan(self.ctx, conv_view, iss_view, link)
        plan = reconcile(self.ctx, conv_view, iss_view, seen)
        plan = Plan(pair=plan.pair, actions=extra + plan.actions)
        return Decision(_distrust_unsettled(plan, iss_view.ticket, before), conv_view, iss_view,
                        issue_read_at=before,
                        unchanged=_unchanged(link, helpdesk=conv_view.ticket)
                        and _unchanged(link, tracker=iss_view.ticket))

    def _decide_from_tracker(self, link: LinkView, issue: Ticket) -> Decision | None:
        """A link whose issue changed, decided with as few Re:amaze reads as it allows
        (``syncer.partial``); None: read both sides as usual."""
        conversation = conversation_from_snapshot(link)
        if conversation is None or link.issue_id is None:
            return None
        before = self._tracker_now()
        try:
            iss_view = self._view(self.tracker, link.issue_id, issue)
        except NotFoundError:
            return None
        me = self.helpdesk.whoami()
        unread = SideView(ticket=conversation, me=me, from_snapshot=True, comments_read=False)
        plan = reconcile(self.ctx, unread, iss_view, link)
        if not needs_conversation(plan, read_comments=False):
            return Decision(_distrust_unsettled(plan, iss_view.ticket, before), unread, iss_view,
                            issue_read_at=before)
        comments = tuple(self.helpdesk.list_comments(link.conversation_id))
        read = SideView(ticket=conversation, comments=comments, me=me, from_snapshot=True)
        plan = reconcile(self.ctx, read, iss_view, link)
        if needs_conversation(plan, read_comments=True):
            return None
        return Decision(_distrust_unsettled(plan, iss_view.ticket, before), read, iss_view,
                        issue_read_at=before)

    def _decide_new(self, conv: Ticket) -> Decision:
        """A matching conversation without a link: before planning an issue, look for the
        one this pair may have created already (the state lost its link: deleted or
        restored database, another host); only a provably own issue is adopted."""
        view = self._helpdesk_view(conv.id, conv)
        readopted = readopt_reverse(self, view)
        if readopted is not None:  # opened for an issue by reverse creation: not a new one
            plan, view, issue_view = readopted
            return Decision(plan, view, issue_view)
        found = self.tracker.find_ticket_by_marker(self.ctx.markers.issue(conv.id))
        issue: SideView | None = None
        before = self._tracker_now()
        if found is not None:
            issue = self._view(self.tracker, found.id, None)
            if not is_our_issue(self.ctx, conv.id, issue):
                log.warning("marker_not_trusted", conversation_id=conv.id,
                            object_id=found.id, operation="discover_issue",
                            reason="an issue carries this conversation's marker but was not "
                                   "created by the sync's tracker user; not adopted")
                issue = None
        return Decision(reconcile(self.ctx, view, issue, None), view, issue,
                        issue_read_at=before if issue is not None else None)

    @property
    def held(self) -> set[str]:
        """Keys of writes whose outcome this pass's recovery has not resolved."""
        return self._held

    def sync_new_link(self, link: LinkView, result: PassResult) -> None:
        """A link just recorded (reverse creation): synced now, as any link is."""
        self._sync_link(link, result, False)

    def decide_link(self, link: LinkView) -> Decision:
        """Both sides of a link read afresh and decided as a pass would (the sweep)."""
        return self._decide_link(link)

    def apply_decision(self, cid: str, decision: Decision, result: PassResult) -> None:
        """Apply what ``decide_link`` decided, as a pass applies its plans."""
        self._run_plan(cid, result, False, lambda: decision)

    def reconcile_conversation(self, conv: Ticket, result: PassResult) -> None:
        """Reconcile a conversation as the feed would have (the sweep's rule matches)."""
        self._conversation_changed(conv, result, dry_run=False, force=True)

    def is_skipped(self, cid: str) -> bool:
        """An operator's `skip`: passes, and the sweep, leave it alone."""
        return cid in self._skipped

    def check_stop(self) -> None:
        self._check_stop()

    def decide(self, conv: Ticket) -> Decision:
        """What a pass would decide for this conversation now, with what it read, and
        nothing written (`explain`). The same decisions as a pass, but forced: a
        conversation unchanged since its last sync, which a pass leaves alone, is decided
        too (``Decision.unchanged`` says so)."""
        self.ctx = self._with_statuses(self.ctx)
        link = self.store.get_link(self.pair, conv.id)
        if link is None:
            if matches(self.ctx.policy, SideView(ticket=conv)) is None:
                return Decision(reconcile(self.ctx, SideView(ticket=conv), None, None))
            return self._decide_new(conv)
        if link.status != "active":
            return Decision(reconcile(self.ctx, None, None, link))
        return self._decide_link(link, conv)

    def _helpdesk_view(self, cid: str, known: Ticket | None) -> SideView:
        """The conversation with its messages: read ahead by a backfill when its count,
        which includes internal notes, vouches for them; else read on its own."""
        if (known is not None and self._prefetch is not None
                and self.counting.includes_internal):
            comments = self._prefetch.messages_for(known)
            if comments is not None:
                return SideView(ticket=known, comments=tuple(comments),
                                me=self.helpdesk.whoami())
        return self._view(self.helpdesk, cid, known)

    def _learn_how_reamaze_counts(self, cid: str, plan: Plan) -> None:
        """A backfill that reads messages ahead, before it knows whether Re:amaze counts
        internal notes: the conversation it just wrote its (internal) link note in is read
        once more. Its count matching the messages read, the note among them, says so; a
        count of public messages only never does, and after three tries it stops asking."""
        if (self._prefetch is None or self.counting.includes_internal
                or self._count_probes >= 3
                or not any(isinstance(a, PostLinkNote) for a in plan.writes)):
            return
        self._count_probes += 1
        try:
            ticket, comments = self.helpdesk.read_ticket(cid)
        except SkippableError as exc:
            log.warning("count_probe_failed", conversation_id=cid, **exc.log_fields())
            return
        learnt = ticket.listed_comments == len(comments) and any(
            c.visibility is Visibility.INTERNAL for c in comments)
        self.counting.includes_internal = learnt
        log.info("reamaze_counting_learnt" if learnt
                 else "reamaze_counting_unknown", conversation_id=cid,
                 listed=ticket.listed_comments, read=len(comments))

    @staticmethod
    def _view(connector: Connector, ticket_id: str, known: Ticket | None) -> SideView:
        """A ticket with its comments; the ticket from the feed when we have it."""
        if known is not None:
            return SideView(ticket=known, comments=tuple(connector.list_comments(ticket_id)),
                            me=connector.whoami())
        ticket, comments = connector.read_ticket(ticket_id)
        return SideView(ticket=ticket, comments=tuple(comments), me=connector.whoami())

    def _run_plan(self, cid: str, result: PassResult, dry_run: bool,
                  decide: Callable[[], Decision]) -> None:
        try:
            decision = decide()
            plan = decision.plan
        except SkippableError as exc:
            log.error("object_unreadable", conversation_id=cid, **exc.log_fields())
            if not dry_run:
                self.store.record_failure(self.pair, Side.HELPDESK, cid, str(exc))
                self._failing.add(cid)
            result.failed[cid] = str(exc)
            return
        if dry_run:
            if plan.actions:
                result.plans.append(plan)
            result.counts["planned_writes"] += len(plan.writes)
            return
        applied: ApplyResult = Applier(self.pair, self.store, self.helpdesk, self.tracker,
                                       self.ctx.tracker_name, self._held,
                                       attachment_max_bytes=self.attachment_max_bytes,
                                       relay=self.relay).apply(plan)
        result.counts.update(applied.counts)
        result.failed.update(applied.failed)
        if cid not in applied.failed:
            self._covered[cid] = _covered(decision, applied.tracker.get(cid))
            self.counting.includes_internal = self.counting.includes_internal or any(
                isinstance(a, SaveSnapshot) and counts_internal_notes(a.snapshot)
                for a in plan.actions)
            self._learn_how_reamaze_counts(cid, plan)
        if cid in applied.failed:
            self._failing.add(cid)
        elif any(isinstance(a, Skip) and a.reason == PAUSED for a in plan.actions):
            # Its change is past the cursor: the dead letter brings it back once the leak
            # that holds its internal notes is resolved.
            self.store.record_failure(self.pair, Side.HELPDESK, cid, PAUSED)
            self._failing.add(cid)
        elif cid in self._waiting:
            # Likewise: its remaining work (held writes, or the issue itself while its
            # create is looked for) waits for recovery, and must not depend on the pass
            # that resolves the earlier write getting as far as this conversation.
            self.store.record_failure(self.pair, Side.HELPDESK, cid, HELD, attempt=False)
            self._failing.add(cid)
        else:
            self._clear_failure(cid)

    def _load_dead_letter(self) -> None:
        failures = [f for f in self.store.list_failures(self.pair) if f.side is Side.HELPDESK]
        self._failing = {f.object_id for f in failures}
        self._skipped = {f.object_id for f in failures if f.skipped}

    def _clear_failure(self, cid: str) -> None:
        if cid in self._failing:
            self.store.clear_failure(self.pair, Side.HELPDESK, cid)
            self._failing.discard(cid)

    def _check_stop(self) -> None:
        if self.stop_event.is_set():
            raise StopRequested
        if self.lease is not None:  # expired or taken: stop before the next write
            self.lease.check()


def _settled(changed: datetime, now: datetime | None) -> bool:
    """No later change of the issue can show this (whole-second) change time any more, by
    the tracker's time ``now``; never when that is unknown."""
    return now is not None and now - changed >= SETTLE_TIME


def _covered(decision: Decision, wrote: TrackerWrites | None) -> datetime | None:
    """The version of the issue a conversation's reconcile accounts for: every change up to
    it was seen or made by that reconcile, and its second was over when it was read (a
    later change in the same second would show the same time). None when no version can
    be vouched for.

    Without writes it is the version read. With writes it is the version read back after
    them, provided the read-back shows nothing the reconcile neither saw nor wrote (a note,
    a status or an assignee someone changed in between)."""
    read, read_at = decision.issue, decision.issue_read_at
    if wrote is None:
        if read is None or read_at is None or not _settled(read.ticket.updated_at, read_at):
            return None
        return read.ticket.updated_at
    after = wrote.after
    if after is None:
        return None
    if read is not None:
        known = {c.id for c in read.comments}
        was = read.ticket
        if wrote.others - known or (after.status.state, after.assignee, after.tags) != (
                was.status.state, was.assignee, was.tags):
            return None
    elif wrote.others:
        return None
    return after.updated_at if _settled(after.updated_at, wrote.before) else None


def _distrust_unsettled(plan: Plan, issue: Ticket, read_at: datetime | None) -> Plan:
    """Keep a change time out of the snapshot while its second may not be over.

    ``_unchanged`` skips an issue whose change time equals the one recorded at its last
    sync. With whole-second times, a note added later in the same second as our read shows
    the same time, and would be skipped for good; leaving the time out makes the next pass
    look again (the tracker feed returns the issue until its second has settled).
    ``read_at`` is the tracker's time just before the read.
    """
    if _settled(issue.updated_at, read_at):
        return plan
    return Plan(pair=plan.pair, actions=tuple(
        a.model_copy(update={"snapshot": a.snapshot.model_copy(
            update={"tracker_updated_at": None})}) if isinstance(a, SaveSnapshot) else a
        for a in plan.actions))


def _unchanged(link: LinkView, *, helpdesk: Ticket | None = None,
               tracker: Ticket | None = None) -> bool:
    """True when the object's change time equals the one recorded at its last sync."""
    snap = link.snapshot
    if snap is None:
        return False
    if helpdesk is not None:
        # A list item without ``updated_at`` has its newest message's time, which a status
        # or tag change or an internal note does not move: the feed yields it only when
        # what it shows changed (``change_key``), so it is reconciled.
        return helpdesk.updated_at_exact and \
            snap.helpdesk_updated_at == helpdesk.updated_at.isoformat()
    if tracker is not None:
        return snap.tracker_updated_at == tracker.updated_at.isoformat()
    return False


def run_pairs(runners: Iterable[PairRunner], **kw: object) -> list[PassResult]:
    """Run each pair once; one pair's failure never stops the others."""
    results = []
    for runner in runners:
        try:
            results.append(runner.run_once(**kw))  # type: ignore[arg-type]
        except Exception as exc:  # a bug in one pair must not take the others down
            log.exception("pair_crashed", pair=runner.pair)
            results.append(PassResult(pair=runner.pair, error=scrub(f"internal error: {exc!r}")))
    return results
