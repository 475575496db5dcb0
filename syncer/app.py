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
from syncer.budgets import LearnedBudgets, share_budgets
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
    helpdesks: dict[str, Connector | ConfigError]  # brand name -> its connection
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
    # How each brand counts messages, as its pairs' runs learn it (``syncer.expect``).
    countings: dict[str, Counting] = field(default_factory=dict)

    @property
    def helpdesk(self) -> Connector | ConfigError:
        """The connection of a config's only brand (several: use ``helpdesk_of``)."""
        if len(self.helpdesks) != 1:
            raise LookupError(f"the config has {len(self.helpdesks)} brands; ask for a "
                              "pair's with helpdesk_of(pair)")
        [only] = self.helpdesks.values()
        return only

    def helpdesk_of(self, pair: PairConfig) -> Connector | ConfigError:
        return self.helpdesks[self.config.brand_of(pair)]

    def connections(self) -> dict[str, Connector | ConfigError]:
        """Every connection by service (``AppConfig.brand_service`` or a tracker's name)."""
        return {**{self.config.brand_service(b): c for b, c in self.helpdesks.items()},
                **self.trackers}

    def runner(self, pair: PairConfig) -> PairRunner | ConfigError:
        tracker = self.trackers[pair.tracker]
        helpdesk = self.helpdesk_of(pair)
        if isinstance(self.marker_key, ConfigError):
            return self.marker_key
        if isinstance(helpdesk, ConfigError):
            return helpdesk
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
        return PairRunner(ctx=ctx, store=self.store, helpdesk=helpdesk, tracker=tracker,
                          counting=self.countings.setdefault(self.config.brand_of(pair),
                                                             Counting()),
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
    """``transports`` route a connection to a simulator, keyed by service: "reamaze" for
    the ``[reamaze]`` brand, "reamaze:NAME" for ``[brands.NAME]``
    (``AppConfig.brand_service``), or a tracker's name. Each brand gets its own connection
    (and so its own shared change-feed pages); the request budget is shared per login
    (``syncer.budgets``). ``background``: the process only takes the request budget others
    leave (`backfill`)."""
    env = dict(environ) if environ is not None else None
    transports = transports or {}
    marker_key: bytes | ConfigError
    try:
        marker_key = read_marker_key(config, env)
    except ConfigError as exc:
        marker_key = exc
    helpdesks: dict[str, Connector | ConfigError] = {}
    for brand, bcfg in config.brands.items():
        try:
            token = read_secret(bcfg.api_token_env, config.brand_section(brand),
                                "api_token_env", env)
            # Before the connector is built, so even an error building it cannot show it.
            register_basic_auth(bcfg.login_email, token.get_secret_value())
            helpdesks[brand] = ReamazeConnector.from_config(
                bcfg, token, transport=transports.get(config.brand_service(brand)),
                clock=clock)
        except ConfigError as exc:
            helpdesks[brand] = exc
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
    engine = Engine(config=config, store=store, helpdesks=helpdesks, trackers=trackers,
                    marker_key=marker_key, environ=env, transports=transports, clock=clock)
    engine.budgets = LearnedBudgets.of(config, store, engine.connections())
    engine.budgets.restore()
    if config.sync.share_budgets:
        share_budgets(config, store, engine.connections(),
                      now=clock.monotonic if clock is not None else None, background=background)
    return engine


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
