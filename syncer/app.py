"""Wiring: configuration in, connectors + state store + one runner per pair out.

A tracker whose credentials are missing or whose config cannot be used does not stop the
engine: its pairs report the error on every pass and the other pairs keep syncing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import httpx

from connectors.base import Connector, DownloadsAttachments
from connectors.http import Clock
from connectors.reamaze.connector import ReamazeConnector
from connectors.registry import TRACKER_KINDS as TRACKER_KINDS  # where callers found it
from state import StateStore
from syncer.budgets import HELPDESK, LearnedBudgets, share_budgets
from syncer.config import AppConfig, PairConfig, read_secret
from syncer.errors import ConfigError
from syncer.expect import Counting
from syncer.markers import MIN_KEY_LENGTH, Markers
from syncer.reconcile import PairContext
from syncer.recovery import RecoveryPolicy
from syncer.relay import FileRelay
from syncer.runner import PairRunner, PassResult
from syncer.secrets import register_basic_auth, register_secret


@dataclass
class Engine:
    config: AppConfig
    store: StateStore
    helpdesk: Connector | ConfigError
    trackers: dict[str, Connector | ConfigError] = field(default_factory=dict)
    marker_key: bytes | ConfigError = b""
    # How the connections were made, so a second, short-lived set can be (the daemon's
    # start check: two attempts, a short timeout; the engine's own keep the http policy).
    environ: Mapping[str, str] | None = None
    transports: Mapping[str, httpx.BaseTransport] = field(default_factory=dict)
    clock: Clock | None = None
    # The connections' learned request rates, saved after every pass that ran.
    budgets: LearnedBudgets | None = None
    # Set by the daemon once its listener serves ``/files/`` (``syncer.relay``).
    relay: FileRelay | None = None
    # How Re:amaze counts messages, as the pairs' runs learn it (``syncer.expect``).
    counting: Counting = field(default_factory=Counting)

    def runner(self, pair: PairConfig) -> PairRunner | ConfigError:
        tracker = self.trackers[pair.tracker]
        if isinstance(self.marker_key, ConfigError):
            return self.marker_key
        if isinstance(self.helpdesk, ConfigError):
            return self.helpdesk
        if isinstance(tracker, ConfigError):
            return tracker
        relay = self.relay
        ctx = PairContext(policy=pair, tracker_caps=tracker.capabilities,
                          markers=Markers(self.marker_key, pair.name),
                          tracker_name=self.config.trackers[pair.tracker].display_name,
                          relay_files=relay is not None
                          and isinstance(tracker, DownloadsAttachments))
        sync = self.config.sync
        recovery = RecoveryPolicy(window=timedelta(seconds=sync.unknown_write_window_seconds),
                                  min_lookups=sync.unknown_write_lookups)
        return PairRunner(ctx=ctx, store=self.store, helpdesk=self.helpdesk, tracker=tracker,
                          counting=self.counting,
                          recovery=recovery, lock_wait=self.config.state.lock_wait_seconds,
                          after_pass=self.budgets.save if self.budgets is not None else None,
                          attachment_max_bytes=int(self.config.sync.attachment_max_mb
                                                   * 1024 * 1024),
                          relay=(lambda a: relay.link(pair.tracker, a)) if ctx.relay_files
                          and relay is not None else None)

    def pairs(self, only: str | None = None) -> list[PairConfig]:
        if only is not None:
            return [self.config.pair(only)]
        return [p for p in self.config.pairs if p.enabled]

    def close(self) -> None:
        self.store.close()


def build_engine(config: AppConfig, *, environ: Mapping[str, str] | None = None,
                 transports: Mapping[str, httpx.BaseTransport] | None = None,
                 clock: Clock | None = None, store: StateStore | None = None,
                 background: bool = False) -> Engine:
    """``transports`` (keyed "reamaze" or a tracker name) route a connection to a simulator.
    ``background``: the process only takes the request budget others leave (`backfill`)."""
    env = dict(environ) if environ is not None else None
    transports = transports or {}
    marker_key: bytes | ConfigError
    try:
        marker_key = read_marker_key(config, env)
    except ConfigError as exc:
        marker_key = exc
    helpdesk: Connector | ConfigError
    try:
        token = read_secret(config.reamaze.api_token_env, "reamaze", "api_token_env", env)
        # Before the connector is built, so even an error building it cannot show the token.
        register_basic_auth(config.reamaze.login_email, token.get_secret_value())
        helpdesk = ReamazeConnector.from_config(config.reamaze, token,
                                                transport=transports.get("reamaze"), clock=clock)
    except ConfigError as exc:
        helpdesk = exc
    trackers: dict[str, Connector | ConfigError] = {}
    for name, tcfg in config.trackers.items():
        kind = TRACKER_KINDS[tcfg.kind]
        try:
            secret = read_secret(tcfg.secret_env(), f"trackers.{name}", tcfg.secret_setting(),
                                 env)
            register_secret(secret.get_secret_value())
            trackers[name] = kind.connect(tcfg, secret, transport=transports.get(name),
                                          clock=clock)
        except ConfigError as exc:
            trackers[name] = exc
    store = store or StateStore(config.state.url, lease_seconds=config.state.lease_seconds)
    budgets = LearnedBudgets.of(config, store, {HELPDESK: helpdesk, **trackers})
    budgets.restore()
    if config.sync.share_budgets:
        share_budgets(config, store, {HELPDESK: helpdesk, **trackers},
                      now=clock.monotonic if clock is not None else None, background=background)
    return Engine(config=config, store=store, helpdesk=helpdesk, trackers=trackers,
                  marker_key=marker_key, environ=env, transports=transports, clock=clock,
                  budgets=budgets)


def read_marker_key(config: AppConfig, environ: Mapping[str, str] | None) -> bytes:
    name = config.sync.marker_key_env
    key = read_secret(name, "sync", "marker_key_env", environ).get_secret_value()
    if len(key) < MIN_KEY_LENGTH:  # the CLI reports this with the config (secret_problems)
        raise ConfigError(f"[sync] marker_key_env: {name} must hold at least "
                          f"{MIN_KEY_LENGTH} characters of random secret")
    register_secret(key)
    return key.encode("utf-8")


def run_all_once(engine: Engine, only: str | None = None, *, lock_wait: float | None = None,
                 **kw: object) -> list[PassResult]:
    """One pass over every enabled pair; one pair's failure never stops the others.
    ``lock_wait``: how long to wait for a busy pair (default: the configured time)."""
    from syncer.runner import run_pairs

    results: list[PassResult] = []
    runners: list[PairRunner] = []
    for pair in engine.pairs(only):
        runner = engine.runner(pair)
        if isinstance(runner, ConfigError):
            if not kw.get("dry_run"):  # a dry run records nothing, not even its failure
                run_id = engine.store.start_run(pair.name, "poll")
                engine.store.finish_run(run_id, {}, runner.message)
            results.append(PassResult(pair=pair.name, error=runner.message))
        else:
            if lock_wait is not None:
                runner.lock_wait = lock_wait
            runners.append(runner)
    return results + run_pairs(runners, **kw)
