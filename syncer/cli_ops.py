"""Operator commands on what the sync remembers: `link` and `unlink` (their bodies),
`retry` and `skip` on the dead letter (the failure table `status` shows), and `explain`
(why an item did or did not sync).

Kept out of ``syncer.cli`` so that module stays the group and the sync commands: `retry`,
`skip` and `explain` register themselves on it (``register``), behind its error handling.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from state import LinkConflict, StateMissing, StateOutdated, StateStore
from syncer.config import AppConfig, PairConfig
from syncer.errors import ConfigError, SkippableError, SyncError
from syncer.plan import Plan, Side, SideView
from syncer.refs import RefError, conversation_id, issue_id, looks_like_issue

if TYPE_CHECKING:
    from syncer.app import Engine
    from syncer.cli import Ctx


def read_only_store(url: str, first_run: str) -> StateStore:
    """The state for a command that only reads (`plan`, `explain`): never created by
    it. Without one, nothing is linked and nothing was seen, which an empty in-memory
    store says exactly; ``first_run`` tells the user what that means for the command."""
    try:
        return StateStore(url, read_only=True)
    except StateMissing as exc:
        click.echo(f"note: state database {exc.location} does not exist yet: {first_run}",
                   err=True)
        return StateStore.in_memory()


def choose_pair(cfg: AppConfig, pair: str | None) -> str:
    """``--pair``, or the only pair there is; with several, the option is required."""
    if pair is not None:
        return cfg.pair(pair).name  # an unknown name: configuration error, names listed
    if len(cfg.pairs) == 1:
        return cfg.pairs[0].name
    raise click.UsageError(f"--pair is needed: this configuration has {len(cfg.pairs)} "
                           f"pairs ({', '.join(p.name for p in cfg.pairs)})")


def open_existing(cfg: AppConfig) -> StateStore:
    """The state for a command that changes it, which must not create one where nothing
    has run yet (a missing database: exit 1 naming it). An older schema is fine: any
    writing command upgrades it first."""
    with contextlib.suppress(StateOutdated):
        StateStore(cfg.state.url, read_only=True).close()
    return StateStore(cfg.state.url, lease_seconds=cfg.state.lease_seconds)


def usage(exc: RefError, param: str) -> click.BadParameter:
    return click.BadParameter(str(exc), param_hint=param)


def conversation_of(store: StateStore, pair: str, ref: str, param: str = "OBJECT") -> str:
    """A conversation slug or URL, or an issue (``#77``, ``77``, its URL) standing for the
    conversation it is linked to in ``pair``."""
    try:
        if looks_like_issue(ref):
            number = issue_id(ref, None)
            link = store.get_link_by_issue(pair, number)
            if link is None:
                raise SyncError(f"issue {number} is not linked to a conversation in pair "
                                f"{pair!r}")
            return link.conversation_id
        return conversation_id(ref, None)
    except RefError as exc:
        raise usage(exc, param) from None


# --- link / unlink -------------------------------------------------------------------

def link_conversation(obj: Ctx, conversation: str, issue: str, pair: str | None) -> int:
    """`link`: both objects must exist; a conversation or issue already linked is a
    conflict (exit 1), the same link again changes nothing (exit 0)."""
    name = choose_pair(obj.config(), pair)
    engine = obj.engine(name)
    try:
        runner = engine.runner(engine.config.pair(name))
        if isinstance(runner, ConfigError):
            raise runner
        try:
            cid = conversation_id(conversation, runner.helpdesk.ticket_url(""))
        except RefError as exc:
            raise usage(exc, "CONVERSATION") from None
        try:
            iid = issue_id(issue, runner.tracker.ticket_url(""))
        except RefError as exc:
            raise usage(exc, "ISSUE") from None
        conv = runner.helpdesk.get_ticket(cid)
        iss = runner.tracker.get_ticket(iid)
        existing = engine.store.get_link(name, conv.id)
        if existing is not None and existing.issue_id == iss.id and existing.status == "active":
            click.echo(f"[{name}] {conv.id} is already linked to issue {iss.id}; nothing "
                       "changed")
            return 0
        try:
            engine.store.create_link(name, conv.id, iss.id, Side.HELPDESK)
        except LinkConflict as exc:
            click.echo(f"error: already linked: {exc}; `reamaze-sync unlink` it first",
                       err=True)
            return 1
        click.echo(f"[{name}] linked {conv.id} <-> issue {iss.id}; the next pass syncs them")
        return 0
    finally:
        engine.close()


def unlink_conversation(obj: Ctx, conversation: str, pair: str | None, *, exclude: bool,
                        yes: bool) -> int:
    """`unlink`. A conversation that still matches the pair's rules is linked again the
    next time a pass reads it: to the same issue when the sync created it (its marker),
    else to a new issue. So a plain unlink says so and wants a yes (``--yes``, or an
    answer at a terminal); ``--exclude`` also skips the conversation, which needs no
    confirmation: nothing is created behind the operator's back."""
    from syncer.explain import describe_rules

    cfg = obj.config()
    name = choose_pair(cfg, pair)
    store = open_existing(cfg)
    try:
        cid = conversation_of(store, name, conversation, "CONVERSATION")
        link = store.get_link(name, cid)
        if link is None:
            raise ConfigError(f"[unlink] conversation: {cid!r} is not linked in pair {name!r}")
        issue = f"issue {link.issue_id}" if link.issue_id else "its pending issue"
        if exclude:
            store.delete_link(name, cid)
            store.set_failure_skipped(name, Side.HELPDESK, cid, True)
            click.echo(f"[{name}] unlinked {cid} from {issue} and excluded it: passes leave "
                       f"it alone until `reamaze-sync retry {cid}`")
            return 0
        click.echo(f"warning: if {cid} still matches the rules of pair {name!r} "
                   f"({describe_rules(cfg.pair(name))}), the next pass that reads it (when "
                   f"it changes, or a backfill) links it again: to {issue} if the sync "
                   "created it (found by its marker), otherwise to a NEW issue. "
                   "`unlink --exclude` also keeps it from syncing (undo: `retry`).", err=True)
        if not yes:
            if not sys.stdin.isatty():
                click.echo(f"error: {cid} not unlinked: confirm with --yes, or use --exclude",
                           err=True)
                return 1
            if not click.confirm("Unlink anyway?", default=False, err=True):
                click.echo(f"{cid} not unlinked", err=True)
                return 1
        store.delete_link(name, cid)
        click.echo(f"[{name}] unlinked {cid}")
        return 0
    finally:
        store.close()


# --- retry / skip ----------------------------------------------------------------------

def _retry_pair(store: StateStore, pair: str, wanted: list[str] | None) -> set[str]:
    """Reset the failures of ``pair`` (all, or the conversations ``wanted``); returns the
    ones it reset."""
    failing = {f.object_id for f in store.list_failures(pair) if f.side is Side.HELPDESK}
    done: set[str] = set()
    for cid in sorted(failing) if wanted is None else [w for w in wanted if w in failing]:
        before = store.reset_failure(pair, Side.HELPDESK, cid)
        if before is None:  # cleared by a pass meanwhile: nothing left to retry
            continue
        was = ("was skipped" if before.skipped else
               f"was failing, {before.attempts} attempts: {before.error[:160]}")
        click.echo(f"[{pair}] retry {cid}: {was}; the next pass tries it again")
        done.add(cid)
    if wanted is None:
        done |= _retry_issues(store, pair)
    if wanted is None and not done:
        click.echo(f"[{pair}] nothing to retry")
    return done


def _retry_issues(store: StateStore, pair: str) -> set[str]:
    """The tracker side of the dead letter: issues whose conversation could not be opened
    (reverse creation), reset so the next pass opens it."""
    done: set[str] = set()
    for failure in store.list_failures(pair):
        if failure.side is not Side.TRACKER:
            continue
        before = store.reset_failure(pair, Side.TRACKER, failure.object_id)
        if before is None:
            continue
        was = ("was skipped" if before.skipped else
               f"was failing, {before.attempts} attempts: {before.error[:160]}")
        click.echo(f"[{pair}] retry issue {failure.object_id} (its conversation): {was}; "
                   "the next pass tries it again")
        done.add(f"issue:{failure.object_id}")
    return done


@click.command()
@click.argument("objects", nargs=-1)
@click.option("--pair", help="Only this pair (default: every pair).")
@click.pass_obj
def retry(obj: Ctx, objects: tuple[str, ...], pair: str | None) -> None:
    """Clear failures (all, or the conversations given) so the next pass tries them again
    now, skipped ones and ones past the automatic retry limit included."""
    cfg = obj.config()
    pairs = [cfg.pair(pair).name] if pair is not None else [p.name for p in cfg.pairs]
    store = open_existing(cfg)
    unknown = set(objects)  # refs no pair had a failure for
    try:
        for name in pairs:
            if not objects:
                _retry_pair(store, name, None)
                continue
            wanted: dict[str, str] = {}  # conversation -> the ref that named it
            for ref in objects:
                with contextlib.suppress(SyncError):  # an issue not linked in this pair
                    wanted.setdefault(conversation_of(store, name, ref), ref)
            done = _retry_pair(store, name, list(wanted))
            unknown -= {wanted[cid] for cid in done}
    finally:
        store.close()
    where = f"pair {pairs[0]!r}" if len(pairs) == 1 else "any pair"
    for ref in sorted(unknown):
        click.echo(f"{ref}: not in the failure table of {where}; nothing to retry", err=True)
    sys.exit(1 if unknown else 0)


@click.command()
@click.argument("objects", nargs=-1, required=True)
@click.option("--pair", help="The pair (default: the only one).")
@click.pass_obj
def skip(obj: Ctx, objects: tuple[str, ...], pair: str | None) -> None:
    """Mark conversations skipped: passes leave them alone (and their issues) until
    `retry` takes the skip back."""
    cfg = obj.config()
    name = choose_pair(cfg, pair)
    store = StateStore(cfg.state.url, lease_seconds=cfg.state.lease_seconds)
    try:
        for cid in _unique(conversation_of(store, name, ref) for ref in objects):
            before = {f.object_id: f for f in store.list_failures(name)
                      if f.side is Side.HELPDESK}.get(cid)
            if before is not None and before.skipped:
                click.echo(f"[{name}] skip {cid}: already skipped")
                continue
            store.set_failure_skipped(name, Side.HELPDESK, cid, True)
            link = store.get_link(name, cid)
            was = f" (was failing, {before.attempts} attempts)" if before else ""
            linked = (f"; it stays linked to issue {link.issue_id}, whose changes are not "
                      "synced either" if link is not None and link.issue_id else "")
            click.echo(f"[{name}] skip {cid}: skipped{was}{linked}; passes leave it alone "
                       f"until `reamaze-sync retry {cid}`")
    finally:
        store.close()


# --- explain ---------------------------------------------------------------------------

@click.command()
@click.argument("item")
@click.option("--pair", help="Only this pair (default: the only one, or every enabled pair).")
@click.pass_obj
def explain(obj: Ctx, item: str, pair: str | None) -> None:
    """Why a conversation (slug or URL) or an issue (77, #77 or URL) did or did not sync,
    and what the next pass would do with it. Reads both sides; writes nothing."""
    from syncer.app import build_engine

    cfg = obj.config(pair=pair, connects=True)
    store = read_only_store(cfg.state.url, "explained as on a first run")
    engine = build_engine(cfg, store=store)
    try:
        pairs = ([cfg.pair(pair)] if pair is not None else cfg.pairs if len(cfg.pairs) == 1
                 else engine.pairs())
        blocks = [_explain_in(engine, p, item) for p in pairs]
    finally:
        engine.close()
    click.echo("\n\n".join("\n".join(block) for block in blocks))


def _explain_in(engine: Engine, pair: PairConfig, item: str) -> list[str]:
    """Read what a pass reads for ``item`` in ``pair``, decide as it would, and put it in
    words. Nothing is written: the runner's ``decide`` is the dry-run path of a pass."""
    from syncer.apply import held_plan
    from syncer.explain import Facts, explain_conversation, explain_unlinked_issue
    from syncer.reconcile import matches
    from syncer.runner import MAX_AUTO_RETRIES, Decision

    runner = engine.runner(pair)
    if isinstance(runner, ConfigError):
        raise runner
    store = engine.store
    leaks = store.open_leaks(pair.name)
    # What a pass would see: a leak that is still open pauses internal notes.
    runner.ctx = replace(runner.ctx, internal_paused=bool(leaks))
    header: list[str] = []
    try:
        if looks_like_issue(item):
            iid = issue_id(item, runner.tracker.ticket_url(""))
            link = store.get_link_by_issue(pair.name, iid)
            if link is None:
                return explain_unlinked_issue(pair, runner.tracker.get_ticket(iid))
            cid = link.conversation_id
            header = [f"[{pair.name}] issue {iid} is linked to conversation {cid}"]
        else:
            cid = conversation_id(item, runner.helpdesk.ticket_url(""))
    except RefError as exc:
        raise usage(exc, "ITEM") from None
    conv = runner.helpdesk.get_ticket(cid)
    try:
        decision = runner.decide(conv)
        read_error = None
    except SkippableError as exc:  # what a pass records as this conversation's failure
        decision = Decision(Plan(pair=pair.name))
        read_error = str(exc)
    intents = tuple(i for i in store.pending_intents(pair.name) if i.conversation_id == cid)
    held = {i.key for i in intents if i.status == "pending"}
    failure = next((f for f in store.list_failures(pair.name)
                    if f.side is Side.HELPDESK and f.object_id == cid), None)
    facts = Facts(pair=pair, markers=runner.ctx.markers, conversation=conv,
                  plan=held_plan(decision.plan, held), link=store.get_link(pair.name, cid),
                  views=(decision.conversation, decision.issue), unchanged=decision.unchanged,
                  failure=failure, intents=intents, leaks=tuple(leaks),
                  recovery=runner.recovery, max_retries=MAX_AUTO_RETRIES,
                  tracker_name=runner.ctx.tracker_name, read_error=read_error)
    why = matches(pair, decision.conversation or SideView(ticket=conv))
    return header + explain_conversation(facts, why, store.now())


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def register(group: click.Group, handle_errors: Callable[[Any], Any]) -> None:
    """Add these commands to the `reamaze-sync` group, behind its error handling."""
    for command in (retry, skip, explain):
        if command.callback is not None:
            command.callback = handle_errors(command.callback)
        group.add_command(command)
