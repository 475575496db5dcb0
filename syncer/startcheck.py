"""The daemon's start check: every connection its pairs use, tried once, briefly.

A daemon started with a wrong token used to run on, logging the same refusal every
interval, and exit 0 when stopped. Now it looks first, as `check` does (two attempts, a
short timeout, ``syncer.check.quick``), and sorts what it finds by what retrying would do:

* *broken*: a refused credential, a base URL that answers 404 or redirects, a setting the
  server does not have (project, tracker, statuses), a missing permission. Retrying does
  not help; a person must fix the configuration, the environment or the server's roles;
* *unreachable*: a 5xx, a 429, a timeout, a refused connection. An outage at start is no
  reason not to start: the pair's passes retry on schedule.

The daemon refuses to start when every pair it was asked to run is broken; a broken pair
among healthy ones is reported and still scheduled (its passes fail and say so, and it
recovers by itself once the server side is fixed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from connectors.base import Connector
from connectors.http import CallStats
from connectors.reamaze.connector import ReamazeConnector
from connectors.registry import TRACKER_KINDS
from syncer.app import Engine
from syncer.check import Attempts, ChecksSettings, UsesApiClient, describe_failure, quick
from syncer.config import PairConfig, read_secret
from syncer.errors import ConfigError, RetriableError, SyncError


@dataclass
class Verdict:
    """One connection's answer: ``broken`` lines are ``[section] key: message``."""

    broken: list[str] = field(default_factory=list)
    unreachable: str | None = None
    calls: CallStats | None = None  # what asking cost (the daemon's metrics count it)


@dataclass
class StartCheck:
    broken: dict[str, list[str]] = field(default_factory=dict)  # pair -> problems
    unreachable: dict[str, list[str]] = field(default_factory=dict)  # pair -> outages
    calls: dict[str, CallStats] = field(default_factory=dict)  # service -> requests sent

    def all_broken(self, pairs: list[PairConfig]) -> bool:
        return bool(pairs) and all(p.name in self.broken for p in pairs)


def _share_budget(conn: Connector, running: object) -> None:
    """The check draws from the running connection's budgets: the servers count its
    requests against the same account, and the daemon's budget gauges must show them."""
    if isinstance(conn, UsesApiClient) and isinstance(running, UsesApiClient):
        conn.api.rate_limiter = running.api.rate_limiter
        conn.api.write_limiter = running.api.write_limiter


def _try(section: str, conn: Connector, base_url: str, settings: bool) -> Verdict:
    verdict = Verdict()
    attempts = Attempts()
    attempts.watch(conn)
    try:
        if settings and isinstance(conn, ChecksSettings):
            verdict.broken += [f"[{section}] {key}: {message}"
                               for key, message in conn.setting_problems()]
            if verdict.broken:
                return verdict
        conn.check()
    except RetriableError as exc:
        verdict.unreachable = f"[{section}] {describe_failure(exc, attempts, base_url)}"
    except SyncError as exc:
        verdict.broken.append(f"[{section}] connection: "
                              f"{describe_failure(exc, attempts, base_url)}")
    finally:
        if isinstance(conn, UsesApiClient):
            verdict.calls = conn.api.stats
            conn.api.client.close()
    return verdict


def _reamaze(engine: Engine, brand: str) -> Verdict:
    cfg, section = engine.config.brands[brand], engine.config.brand_section(brand)
    token = read_secret(cfg.api_token_env, section, "api_token_env", engine.environ)
    conn = ReamazeConnector.from_config(
        cfg.model_copy(update={"http": quick(cfg.http)}), token,
        transport=engine.transports.get(engine.config.brand_service(brand)), clock=engine.clock)
    _share_budget(conn, engine.helpdesks[brand])
    return _try(section, conn, cfg.api_base(), settings=False)


def _tracker(engine: Engine, name: str) -> Verdict:
    tcfg = engine.config.trackers[name]
    kind = TRACKER_KINDS[tcfg.kind]
    secret = read_secret(tcfg.secret_env(), f"trackers.{name}", tcfg.secret_setting(),
                         engine.environ)
    conn = kind.connect(tcfg.model_copy(update={"http": quick(tcfg.http)}), secret,
                        transport=engine.transports.get(name), clock=engine.clock)
    _share_budget(conn, engine.trackers.get(name))
    return _try(f"trackers.{name}", conn, str(tcfg.base_url), settings=True)


def check_at_start(engine: Engine, pairs: list[PairConfig]) -> StartCheck:
    """Try each connection the ``pairs`` use once and say, per pair, what is wrong."""
    result = StartCheck()
    verdicts: dict[str, Verdict] = {}
    for pair in pairs:
        runner = engine.runner(pair)
        if isinstance(runner, ConfigError):  # a secret or the marker key: nothing to try
            result.broken[pair.name] = [runner.message]
            continue
        cfg, brand = engine.config, engine.config.brand_of(pair)
        # By section (a brand's and a tracker's never clash), counted by service.
        tries = [(cfg.brand_section(brand), cfg.brand_service(brand),
                  partial(_reamaze, engine, brand)),
                 (f"trackers.{pair.tracker}", pair.tracker,
                  partial(_tracker, engine, pair.tracker))]
        for conn, service, attempt in tries:
            if conn not in verdicts:
                try:
                    verdicts[conn] = attempt()
                except ConfigError as exc:
                    verdicts[conn] = Verdict(broken=[exc.message])
                calls = verdicts[conn].calls
                if calls is not None:
                    result.calls[service] = calls
            verdict = verdicts[conn]
            if verdict.broken:
                result.broken.setdefault(pair.name, []).extend(verdict.broken)
            if verdict.unreachable is not None:
                result.unreachable.setdefault(pair.name, []).append(verdict.unreachable)
    return result
