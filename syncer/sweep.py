"""The anti-entropy sweep: a slow, budgeted re-read of what the change feeds may miss.

The feeds see what a listing shows. A note edited or deleted, an issue deleted, a tag
added to a conversation whose list position did not move, a change lost with the state:
none of them has to show. The sweep reads every active link's conversation (with its
messages) and issue (with its notes) as a pass reads a changed one, decides with the
pass's own ``decide_link`` and, when something is off, applies through the pass's own
path: the pair's lock, intent recovery, the applier, the dead letter. So it never writes
what a pass would not, and never twice. It also re-reads a page of recently active
conversations for rule matches the feed missed; those go through the feed's own path
(the issue marker is looked for first, so no second issue).

Two users:

* the daemon runs a **slice** after each poll (``SweepSlice``): a page of recently active
  conversations every five minutes, then as many links as the request credit allows
  (``SweepBudget``: ``[sync] sweep_share`` of each connection's ``requests_per_minute``),
  saving its position after each link, so a restart continues where it stopped and every
  link is verified once per round;
* ``reamaze-sync verify`` checks every link once (``VerifyAll``) and reports the drift in
  words; with ``--fix`` it repairs through the same path, without it nothing is written
  (a dry-run pass on a read-only state store).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import structlog

from connectors.base import ListsRecent
from connectors.http import ApiClient
from syncer.apply import held_plan
from syncer.errors import NotFoundError, SkippableError
from syncer.explain import describe_action
from syncer.models import SweepPosition, Ticket
from syncer.plan import (
    GONE,
    AddComment,
    AdoptComment,
    AdoptIssue,
    CreateIssue,
    LinkView,
    MarkOrphaned,
    PostLinkNote,
    RemoveComment,
    SideView,
    Skip,
    UpdateComment,
    UpdateTicket,
)
from syncer.reconcile import matches
from syncer.runner import Decision, PairRunner, PassResult

log = structlog.get_logger("reamaze_sync.sweep")

LINK_BATCH = 50
RECENT_EVERY_SECONDS = 300.0


@dataclass(frozen=True)
class Drift:
    """What is off with one conversation, in words."""

    conversation_id: str
    issue_id: str | None
    problems: tuple[str, ...]  # what a pass would repair
    # What no pass repairs (a note edited after it was copied while the pair does not
    # tell edits: [pairs.edits]); reported, but no reason to fail.
    notes: tuple[str, ...] = ()


def unrepairable_words(decision: Decision) -> list[str]:
    """Differences the plan can only skip, said as such."""
    return [f"{a.object_id} was {a.reason}" for a in decision.plan.actions
            if isinstance(a, Skip) and a.reason.startswith(("edited ", "deleted "))]


def drift_words(link: LinkView, decision: Decision) -> list[str]:
    """What a pass would have to do for this link, said as what is out of sync."""
    words: list[str] = []
    if decision.issue_deleted:
        words.append(f"issue {link.issue_id} is gone: the link is orphaned")
    for a in decision.plan.actions:
        if isinstance(a, AddComment) and a.edit is not None:
            what = "deleted" if a.edit.fingerprint == GONE else "edited"
            words.append(f"{a.edit.source_side.value} comment {a.edit.source_id} was {what} "
                         f"after it was copied; the {a.target.value} has no note saying so")
        elif isinstance(a, UpdateComment):
            words.append(f"{a.edit.source_side.value} comment {a.edit.source_id} was edited "
                         f"after it was copied; its copy {a.comment_id} on the "
                         f"{a.target.value} has the old text")
        elif isinstance(a, AddComment) and not a.source_id:
            words.append(f"a note of the sync is due on the {a.target.value}: "
                         f"{' '.join(a.new.body.split())[:60]!r}")
        elif isinstance(a, AddComment):
            words.append(f"{a.new.visibility.value} message {a.source_id} of the "
                         f"{a.target.other.value} is missing on the {a.target.value}")
        elif isinstance(a, UpdateTicket):
            fields = a.update.model_dump(exclude_none=True, mode="json")
            words.append(f"{a.target.value} {a.ticket_id} differs: should be {fields} "
                         f"({a.reason})")
        elif isinstance(a, PostLinkNote):
            words.append("the internal note with the issue link is missing")
        elif isinstance(a, AdoptComment):
            words.append(f"the link between {a.source_side.value} comment {a.source_id} and "
                         f"its copy {a.target_id} is lost (found by its marker)")
        elif isinstance(a, MarkOrphaned) and not decision.issue_deleted:
            words.append(f"orphaned: {a.reason}")
        elif isinstance(a, CreateIssue | AdoptIssue | RemoveComment):
            words.append(describe_action(a).split(": ", 1)[-1])
    return words


@dataclass
class Checker:
    """Checks links and recent conversations for one pass; repairs only with ``fix``."""

    fix: bool
    drift: list[Drift] = field(default_factory=list)
    # Keys of writes with no confirmed outcome: a dry run (no recovery) leaves them out of
    # the drift, as the applier would hold them.
    held: frozenset[str] = frozenset()

    def check_link(self, runner: PairRunner, link: LinkView, result: PassResult,
                   dry_run: bool) -> None:
        cid = link.conversation_id
        if runner.is_skipped(cid):
            return
        bound = log.bind(pair=runner.pair, conversation_id=cid, object_id=link.issue_id,
                         operation="sweep_verify")
        result.counts["links_verified"] += 1
        try:
            decision = runner.decide_link(link)
        except NotFoundError:
            self._found(bound, Drift(cid, link.issue_id, (
                "the conversation is gone (nothing is deleted; `unlink` forgets the link)",)))
            return
        except SkippableError as exc:
            self._found(bound, Drift(cid, link.issue_id, (f"cannot be read: {exc}",)))
            return
        if dry_run:  # what recovery still looks for is in flight, not missing
            decision = replace(decision, plan=held_plan(decision.plan, self.held))
        words, notes = drift_words(link, decision), unrepairable_words(decision)
        if words or notes:
            self._found(bound, Drift(cid, link.issue_id, tuple(words), tuple(notes)))
        if words and self.fix and not dry_run:
            runner.apply_decision(cid, decision, result)
            result.counts["drift_repaired"] += 1

    def check_recent(self, runner: PairRunner, page: int, result: PassResult,
                     dry_run: bool) -> None:
        """Conversations on one page of the recently active that match the pair's rules
        and have no link."""
        helpdesk = runner.helpdesk
        if not isinstance(helpdesk, ListsRecent):
            return
        for conv in helpdesk.recent_tickets(page):
            runner.check_stop()
            if runner.is_skipped(conv.id) or not self._unlinked_match(runner, conv):
                continue
            bound = log.bind(pair=runner.pair, conversation_id=conv.id,
                             operation="sweep_rules")
            rule = matches(runner.ctx.policy, SideView(ticket=conv))
            self._found(bound, Drift(conv.id, None, (
                f"matches the pair's rules ({rule}) but has no issue",)))
            if self.fix and not dry_run:
                runner.reconcile_conversation(conv, result)
                result.counts["drift_repaired"] += 1

    @staticmethod
    def _unlinked_match(runner: PairRunner, conv: Ticket) -> bool:
        return runner.store.get_link(runner.pair, conv.id) is None and \
            matches(runner.ctx.policy, SideView(ticket=conv)) is not None

    def _found(self, bound: structlog.typing.FilteringBoundLogger, drift: Drift) -> None:
        self.drift.append(drift)
        bound.warning("drift_found", problems=list(drift.problems), unrepairable=list(drift.notes),
                      fix=self.fix)


@dataclass
class VerifyAll:
    """``reamaze-sync verify``: every active link once, then the recent pages."""

    checker: Checker
    recent_pages: int

    def __call__(self, runner: PairRunner, result: PassResult, dry_run: bool) -> None:
        self.checker.held = frozenset(i.key for i in runner.store.pending_intents(runner.pair)
                                      if i.status == "pending")
        after = 0
        while batch := runner.store.links_after(runner.pair, after, LINK_BATCH):
            for link_id, link in batch:
                runner.check_stop()
                self.checker.check_link(runner, link, result, dry_run)
                after = link_id
        for page in range(1, self.recent_pages + 1):
            self.checker.check_recent(runner, page, result, dry_run)


class SweepBudget:
    """Request credit per connection for one pair's sweep.

    Credit accrues at ``share`` of the connection's ``requests_per_minute`` (divided among
    the pairs that share the connection) and is charged what the sweep's work actually
    sent, counted on the connection: requests other pairs send meanwhile are charged too,
    so the share is an upper bound. Work starts only while every connection has credit
    left; one link may overdraw it, and the debt is paid before the next. Credit is
    capped at one interval's worth (at least a minute's), so an idle spell is no licence
    for a burst.
    """

    def __init__(self, apis: Mapping[str, ApiClient], share: float,
                 sharing: Mapping[str, int], interval_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.apis = dict(apis)
        self.per_second = {
            name: share * api.rate_limiter.per_minute / 60.0 / max(1, sharing.get(name, 1))
            for name, api in self.apis.items() if api.rate_limiter is not None}
        horizon = max(60.0, interval_seconds)
        self.cap = {name: rate * horizon for name, rate in self.per_second.items()}
        self.credit = dict.fromkeys(self.per_second, 0.0)
        self.clock = clock
        self._last = clock() - interval_seconds  # the first slice gets one interval's worth
        self.spent: dict[str, int] = dict.fromkeys(self.apis, 0)

    def refill(self) -> None:
        now = self.clock()
        elapsed, self._last = max(0.0, now - self._last), now
        for name, rate in self.per_second.items():
            self.credit[name] = min(self.cap[name], self.credit[name] + rate * elapsed)

    def allows(self) -> bool:
        return bool(self.per_second) and all(c > 0 for c in self.credit.values())

    @contextmanager
    def charging(self) -> Iterator[None]:
        before = {name: api.stats.requests for name, api in self.apis.items()}
        try:
            yield
        finally:
            for name, api in self.apis.items():
                used = api.stats.requests - before[name]
                self.spent[name] += used
                if name in self.credit:
                    self.credit[name] -= used


@dataclass
class SweepSlice:
    """The daemon's sweep: after each poll, as much as the budget allows, from where the
    last slice (of this or an earlier process) stopped."""

    budget: SweepBudget
    recent_pages: int
    checker: Checker = field(default_factory=lambda: Checker(fix=True))
    # One recent page every this many seconds, not every pass: at a 60 s interval a page
    # per pass took a fifteenth of the default share from the links.
    recent_every_seconds: float = RECENT_EVERY_SECONDS
    _recent_at: float | None = field(default=None, init=False)

    def _recent_due(self) -> bool:
        now = self.budget.clock()
        if self._recent_at is not None and now - self._recent_at < self.recent_every_seconds:
            return False
        self._recent_at = now
        return True

    def __call__(self, runner: PairRunner, result: PassResult, dry_run: bool) -> None:
        if dry_run:
            return
        store, pair = runner.store, runner.pair
        self.budget.refill()
        self.checker.drift.clear()  # reported in the log as found; not kept across passes
        pos = store.get_sweep(pair) or SweepPosition()
        if pos.round_started_at is None:
            pos = pos.model_copy(update={"round_started_at": datetime.now(UTC)})
        if self.recent_pages and self.budget.allows() and self._recent_due():
            page = pos.recent_page % self.recent_pages + 1
            with self.budget.charging():
                self.checker.check_recent(runner, page, result, dry_run)
            pos = pos.model_copy(update={"recent_page": page})
            store.save_sweep(pair, pos)
        while self.budget.allows():
            batch = store.links_after(pair, pos.after_link, LINK_BATCH)
            if not batch:
                pos = self._round_finished(runner, pos)
                store.save_sweep(pair, pos)
                break
            for link_id, link in batch:
                if not self.budget.allows():
                    break
                runner.check_stop()
                with self.budget.charging():
                    self.checker.check_link(runner, link, result, dry_run)
                pos = pos.model_copy(update={"after_link": link_id})
                store.save_sweep(pair, pos)  # durable: a restart does not verify it again

    @staticmethod
    def _round_finished(runner: PairRunner, pos: SweepPosition) -> SweepPosition:
        started = pos.round_started_at or datetime.now(UTC)
        took = (datetime.now(UTC) - started).total_seconds()
        if pos.after_link:  # a round over no links at all is not worth a line
            log.info("sweep_round_finished", pair=runner.pair, operation="sweep",
                     round=pos.rounds + 1, seconds=round(took, 1))
        return SweepPosition(rounds=pos.rounds + 1, last_round_seconds=took,
                             recent_page=pos.recent_page)
