"""`reamaze-sync verify [--pair P] [--fix] [--wait S]`: the daemon's sweep, on demand.

Every active link's conversation and issue are read afresh and decided as a pass would
(``syncer.sweep``), then a few pages of recently active conversations are checked for
rule matches without an issue. What a pass would have to do is drift, listed per
conversation in words; the exit code is 1 when there is any. Without ``--fix`` nothing is
written anywhere: a dry-run pass (no lock, no recovery, no run recorded) on a state store
opened read-only. With ``--fix`` it is a real pass of kind ``verify``: the pair's lock,
intent recovery, then the repairs through the applier, so nothing is written twice.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from state import StateMissing, StateStore
from syncer.config import AppConfig, PairConfig
from syncer.errors import ConfigError
from syncer.runner import PassResult
from syncer.sweep import Checker, Drift, VerifyAll

if TYPE_CHECKING:
    from syncer.app import Engine
    from syncer.cli import Ctx


def _pairs(cfg: AppConfig, pair: str | None) -> list[PairConfig]:
    if pair is not None:
        return [cfg.pair(pair)]
    return [p for p in cfg.pairs if p.enabled]


def _verify_pair(engine: Engine, pair: PairConfig, fix: bool,
                 wait: float | None) -> tuple[PassResult, list[Drift]]:
    runner = engine.runner(pair)
    if isinstance(runner, ConfigError):
        return PassResult(pair=pair.name, error=runner.message), []
    checker = Checker(fix=fix)
    runner.after_feeds = VerifyAll(checker, engine.config.sync.sweep_recent_pages)
    if wait is not None:
        runner.lock_wait = wait
    result = runner.run_once(kind="verify", dry_run=not fix, feeds=False)
    return result, checker.drift


def _report(result: PassResult, drift: list[Drift], fix: bool) -> bool:
    """Print one pair's findings; True when it needs a person (drift left, or a failure)."""
    for d in drift:
        issue = f", issue {d.issue_id}" if d.issue_id else ""
        click.echo(f"[{result.pair}] {d.conversation_id}{issue}:")
        for problem in d.problems:
            click.echo(f"  - {problem}")
        for note in d.notes:
            click.echo(f"  - cannot be repaired: {note}")
    repairable = [d for d in drift if d.problems]
    verified = result.counts.get("links_verified", 0)
    state = "ok" if result.ok else f"ERROR: {result.error}"
    if not repairable:
        found = "no drift"
    elif fix:
        found = (f"drift in {len(repairable)} conversation(s), "
                 f"{result.counts.get('drift_repaired', 0)} repaired")
    else:
        found = f"drift in {len(repairable)} conversation(s); `verify --fix` repairs it"
    if len(drift) > len(repairable):
        found += f"; {len(drift) - len(repairable)} with differences no pass can repair"
    click.echo(f"[{result.pair}] {state}; verified {verified} link(s): {found}")
    for cid, err in sorted(result.failed.items()):
        click.echo(f"  failed {cid}: {err}")
    return not result.clean or (bool(repairable) and not fix)


@click.command()
@click.option("--pair", help="Only this pair (default: the only one, or every enabled pair).")
@click.option("--fix", is_flag=True, help="Repair the drift through the normal sync path "
              "(takes the pair's lock). Without it nothing is written.")
@click.option("--wait", type=click.FloatRange(min=0),
              help="With --fix: seconds to wait for a pair another process is working, "
                   "then give up (exit 1). Default: [state] lock_wait_seconds.")
@click.pass_obj
def verify(obj: Ctx, pair: str | None, fix: bool, wait: float | None) -> None:
    """Re-read every linked conversation and issue (and recently active conversations)
    and report what is out of sync: missing comments, status or label mismatches,
    orphaned links, rule matches without an issue. Exit 1 when drift was found."""
    from syncer.app import build_engine
    from syncer.cli_ops import open_existing

    cfg = obj.config(pair=pair, connects=True)
    try:
        store = open_existing(cfg) if fix else StateStore(cfg.state.url, read_only=True)
    except StateMissing as exc:
        click.echo(f"error: no state database at {exc.location}: nothing is linked yet, "
                   "nothing to verify", err=True)
        sys.exit(1)
    engine = build_engine(cfg, store=store)
    try:
        needs_look = False
        for p in _pairs(cfg, pair):
            result, drift = _verify_pair(engine, p, fix, wait)
            needs_look = _report(result, drift, fix) or needs_look
    finally:
        engine.close()
    sys.exit(1 if needs_look else 0)
