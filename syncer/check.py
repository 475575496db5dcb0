"""`reamaze-sync check`: the configuration tried against the state and every service it uses.

What it finds comes in three kinds, and the exit code says which was the worst:

* settings a server does not have (a Redmine ``tracker_id``, the project, a staff email
  Re:amaze does not know...): configuration errors, listed together as
  ``[section] key: message``, exit 2 like every other configuration error;
* a connection that fails (unreachable host, refused credentials, 404 at the base URL):
  one ``FAIL`` line per connection, exit 1;
* a state database that does not exist yet or has an older schema: normal before the
  first run or after an upgrade, reported on the ``[state]`` line only.

A check is someone waiting at a terminal, so it fails fast: each connection is built from
a copy of its settings with ``CHECK_ATTEMPTS`` attempts, a short timeout and a short clamp
on ``Retry-After``. The daemon's own policy (up to ``max_attempts`` with backoff, over a
minute in all) is not touched. The cause of a network failure is read from the exception
chain, where the HTTP layer keeps the original error.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

from connectors.base import ListsStatuses
from connectors.http import ApiClient, Clock, scrub_url
from connectors.reamaze.connector import ReamazeConnector
from connectors.registry import TRACKER_KINDS
from state import StateMissing, StateOutdated, StateStore
from syncer.config import (
    AppConfig,
    HttpSettings,
    PairConfig,
    StatusMap,
    TrackerConfig,
    read_secret,
)
from syncer.errors import (
    ConfigError,
    NotFoundError,
    RateLimitedError,
    RetriableError,
    SyncError,
)
from syncer.models import TicketState, TicketStatus, User
from syncer.reconcile_status import find_status

CHECK_ATTEMPTS = 2  # a second try rides out a blip; more only keeps the operator waiting
CHECK_TIMEOUT_SECONDS = 10.0
CHECK_MAX_RETRY_AFTER_SECONDS = 5.0
# A check sends about ten requests, once: they may leave together even where the
# daemon's budget spaces them a second apart.
CHECK_BURST = 10
_SHOWN = 12


@dataclass
class CheckReport:
    lines: list[str] = field(default_factory=list)  # one per state / connection, stdout
    problems: list[str] = field(default_factory=list)  # configuration errors
    failed: bool = False  # a connection failed

    @property
    def exit_code(self) -> int:
        return 2 if self.problems else 1 if self.failed else 0


@runtime_checkable
class UsesApiClient(Protocol):
    api: ApiClient


@runtime_checkable
class ChecksSettings(Protocol):
    def setting_problems(self) -> list[tuple[str, str]]: ...


@runtime_checkable
class ListsUsers(Protocol):
    def list_users(self) -> list[User]: ...


def quick(settings: HttpSettings) -> HttpSettings:
    """The check's copy of a connection's HTTP settings."""
    return settings.model_copy(update={
        "max_attempts": min(settings.max_attempts, CHECK_ATTEMPTS),
        "timeout_seconds": min(settings.timeout_seconds, CHECK_TIMEOUT_SECONDS),
        "max_retry_after_seconds": min(settings.max_retry_after_seconds,
                                       CHECK_MAX_RETRY_AFTER_SECONDS),
        "burst": max(settings.burst, CHECK_BURST),
    })


class Attempts:
    """The URL of the request in flight and how many times it has been sent so far.

    Fed by the HTTP client's request hook, which sees every attempt: the retries happen
    inside the connection, out of the check's sight.
    """

    def __init__(self) -> None:
        self.url: str | None = None
        self.count = 0

    def __call__(self, request: httpx.Request) -> None:
        url = scrub_url(request.url)
        self.count = self.count + 1 if url == self.url else 1
        self.url = url

    def watch(self, conn: object) -> None:
        if isinstance(conn, UsesApiClient):
            conn.api.client.event_hooks["request"].append(self)

    @property
    def suffix(self) -> str:
        return f" ({self.count} attempt{'s' if self.count != 1 else ''})" if self.count else ""


def network_cause(exc: BaseException, host: str) -> str | None:
    """What went wrong on the way to the server, in words, or None if it was no network
    problem. Walks ``__cause__``/``__context__``: the HTTP layer raises its own error
    type, the socket or TLS error that explains it is further down the chain."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10 and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for err in chain:
        if isinstance(err, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted ({err.verify_message})"
        if isinstance(err, ssl.SSLError):
            return f"TLS handshake failed ({err.reason or err.strerror or err})"
        if isinstance(err, socket.gaierror):
            return f"DNS lookup of {host} failed ({err.strerror})"
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        if isinstance(err, httpx.ConnectTimeout):
            return "no connection within the timeout"
        if isinstance(err, httpx.TimeoutException):
            return "no answer within the timeout"
    for err in chain:
        if isinstance(err, OSError) and err.strerror:
            return err.strerror
        if isinstance(err, httpx.TransportError):
            return f"{type(err).__name__}: {err}"
    return None


def describe_failure(exc: SyncError, attempts: Attempts, base_url: str,
                     hint_404: str | None = None) -> str:
    """The FAIL line of a connection: the URL, what happened and how often it was tried."""
    url = attempts.url or base_url
    if isinstance(exc, RetriableError) and not isinstance(exc, RateLimitedError) \
            and exc.status is None:
        cause = network_cause(exc, urlsplit(url).hostname or url) or exc.message
        return f"cannot reach {url}: {cause}{attempts.suffix}"
    if isinstance(exc, NotFoundError) and hint_404 is not None and attempts.url is not None:
        return f"{url} answered 404 Not Found: {hint_404}{attempts.suffix}"
    if isinstance(exc, RetriableError) and exc.status is not None:
        return f"{url} answered HTTP {exc.status} ({exc.message}){attempts.suffix}"
    return f"{exc}{attempts.suffix}"


def state_report(url: str) -> str:
    """One line on the state database, read without creating or migrating it: a missing
    database is normal before the first run, an older schema is upgraded by `run`."""
    try:
        store = StateStore(url, read_only=True)
    except StateMissing as exc:
        return f"[state] ok: {exc.location} does not exist yet (fine for a first run: `run` " \
               "creates it)"
    except StateOutdated as exc:
        return (f"[state] ok: {exc.location} (schema version {exc.version}; the next `run` "
                f"upgrades it to {exc.current})")
    try:
        return f"[state] ok: {store.location} (schema version {store.schema_version})"
    finally:
        store.close()


def _listing(values: list[str]) -> str:
    shown = ", ".join(values[:_SHOWN]) or "none"
    return shown + (f", … ({len(values) - _SHOWN} more)" if len(values) > _SHOWN else "")


def status_table_problems(table: StatusMap, statuses: list[TicketStatus],
                          tracker: str) -> list[str]:
    """``key: message`` for each tracker status a pair's status table names that the
    tracker does not have, or that cannot do what the table asks of it."""
    known = _listing([f"{s.code} {s.name}" for s in statuses])
    out: list[str] = []
    for key in table.issue_to_conversation:
        if find_status(statuses, key) is None:
            out.append(f"issue_to_conversation: {key!r} is not a status of tracker "
                       f"{tracker!r} (known: {known})")
    for state, key in table.conversation_to_issue.items():
        found = find_status(statuses, key)
        if found is None:
            out.append(f"conversation_to_issue: {key!r} (for {state!r}) is not a status of "
                       f"tracker {tracker!r} (known: {known})")
        elif state != "closed" and found.state is TicketState.CLOSED:
            opened = _listing([f"{s.code} {s.name}" for s in statuses
                               if s.state is not TicketState.CLOSED])
            out.append(f"conversation_to_issue: {found.code} {found.name} (for {state!r}) is "
                       f"a closed status; a conversation that is {state} needs an open one "
                       f"(open: {opened})")
    return out


def _close(conn: object) -> None:
    if isinstance(conn, UsesApiClient):
        conn.api.client.close()


def run_check(cfg: AppConfig, *, environ: Mapping[str, str] | None = None,
              transports: Mapping[str, httpx.BaseTransport] | None = None,
              clock: Clock | None = None) -> CheckReport:
    """Check the state and the connections of every enabled pair. ``transports`` (keyed
    by service: "reamaze", "reamaze:NAME" or a tracker name) and ``clock`` as for
    ``build_engine``."""
    report = CheckReport()
    try:
        report.lines.append(state_report(cfg.state.url))
    except ConfigError as exc:  # a newer schema, or a database that cannot be opened
        report.lines.append("[state] FAIL see the configuration errors")
        report.problems.append(f"[state] url: {exc.message}")
    transports = transports or {}
    enabled = [(i, p) for i, p in enumerate(cfg.pairs) if p.enabled]
    for brand in cfg.brands:
        users = [(i, p) for i, p in enabled if cfg.brand_of(p) == brand]
        section = cfg.brand_section(brand)
        if not users and cfg.reamaze is None:
            report.lines.append(f"[{section}] skipped: no enabled pair uses it")
            continue
        _check_reamaze(cfg, brand, users, report, environ,
                       transports.get(cfg.brand_service(brand)), clock)
    for name, tcfg in cfg.trackers.items():
        users = [(i, p) for i, p in enabled if p.tracker == name]
        if not users:
            report.lines.append(f"[trackers.{name}] skipped: no enabled pair uses it")
            continue
        _check_tracker(name, tcfg, users, report, environ, transports.get(name), clock)
    return report


def _check_reamaze(cfg: AppConfig, brand: str, pairs: list[tuple[int, PairConfig]],
                   report: CheckReport, environ: Mapping[str, str] | None,
                   transport: httpx.BaseTransport | None, clock: Clock | None) -> None:
    """One brand: the ``[reamaze]`` table, or a ``[brands.NAME]`` (checked only when an
    enabled pair syncs it; the single ``[reamaze]`` brand always is, as before)."""
    bcfg, section = cfg.brands[brand], cfg.brand_section(brand)
    try:
        token = read_secret(bcfg.api_token_env, section, "api_token_env", environ)
    except ConfigError as exc:
        report.problems.append(exc.message)
        return
    settings = bcfg.model_copy(update={"http": quick(bcfg.http)})
    conn = ReamazeConnector.from_config(settings, token, transport=transport, clock=clock)
    attempts = Attempts()
    attempts.watch(conn)
    base = bcfg.api_base()
    try:
        report.lines.append(f"[{section}] ok: {conn.check()}")
        mapped = [(i, p) for i, p in pairs if p.staff_to_user]
        if mapped:
            staff = sorted({u.email.lower() for u in conn.list_users() if u.email})
            for i, pair in mapped:
                report.problems += [
                    f"[pairs[{i}]] staff_to_user: {email!r} is not a Re:amaze staff email "
                    f"(known: {_listing(staff)})"
                    for email in pair.staff_to_user if email.lower() not in staff]
        report.problems += _reverse_channel_problems(conn, pairs)
    except SyncError as exc:
        report.lines.append(f"[{section}] FAIL "
                            f"{describe_failure(exc, attempts, base, _hint(base))}")
        report.failed = True
    finally:
        _close(conn)


def _reverse_channel_problems(conn: ReamazeConnector,
                              pairs: list[tuple[int, PairConfig]]) -> list[str]:
    """The channel reverse creation opens conversations in must exist (a create there
    would be refused for every issue)."""
    wanted = [(i, p) for i, p in pairs if p.reverse.enabled and p.reverse.category]
    if not wanted:
        return []
    channels = sorted(c.id for c in conn.list_collections())
    return [f"[pairs[{i}].reverse] category: {p.reverse.category!r} is not a Re:amaze "
            f"channel (known: {_listing(channels)})"
            for i, p in wanted if p.reverse.category not in channels]


def _hint(base: str) -> str:
    """Why Re:amaze may answer 404 at the start of its API."""
    if urlsplit(base).path.rstrip("/").endswith("/api/v1"):
        # Re:amaze answers 404 for a brand it does not know.
        return "is the brand right? (Re:amaze answers 404 for an unknown brand)"
    return (f"the Re:amaze API is under /api/v1, so base_url should probably be "
            f"\"{base.rstrip('/')}/api/v1\"")


def _check_tracker(name: str, tcfg: TrackerConfig, pairs: list[tuple[int, PairConfig]],
                   report: CheckReport, environ: Mapping[str, str] | None,
                   transport: httpx.BaseTransport | None, clock: Clock | None) -> None:
    section = f"trackers.{name}"
    kind = TRACKER_KINDS[tcfg.kind]
    try:
        secret = read_secret(tcfg.secret_env(), section, tcfg.secret_setting(), environ)
    except ConfigError as exc:
        report.problems.append(exc.message)
        return
    conn = kind.connect(tcfg.model_copy(update={"http": quick(tcfg.http)}), secret,
                        transport=transport, clock=clock)
    attempts = Attempts()
    attempts.watch(conn)
    try:
        # Settings first: a project the server lacks would fail check() itself.
        found = conn.setting_problems() if isinstance(conn, ChecksSettings) else []
        report.problems += [f"[{section}] {k}: {m}" for k, m in found]
        if any(k == tcfg.scope_key for k, _ in found):
            report.lines.append(f"[{section}] FAIL see the configuration errors")
            return
        report.lines.append(f"[{section}] ok: {conn.check()}")
        mapped = [(i, p) for i, p in pairs if p.staff_to_user]
        if mapped and isinstance(conn, ListsUsers):
            users = {u.id: u.name for u in conn.list_users()}
            known = _listing([f"{uid} {uname}" for uid, uname in users.items()])
            for i, pair in mapped:
                report.problems += [
                    f"[pairs[{i}]] staff_to_user: user {uid} (for {email!r}) does not exist or "
                    f"is not a member of {tcfg.scope_name()} (known: {known})"
                    for email, uid in pair.staff_to_user.items() if uid not in users]
        named = [(i, p) for i, p in pairs if p.status.names_tracker_statuses]
        if named and isinstance(conn, ListsStatuses):
            statuses = conn.list_statuses()
            for i, pair in named:
                report.problems += [f"[pairs[{i}].status] {m}" for m in
                                    status_table_problems(pair.status, statuses, name)]
    except SyncError as exc:
        report.lines.append(f"[{section}] FAIL "
                            f"{describe_failure(exc, attempts, str(tcfg.base_url))}")
        report.failed = True
    finally:
        _close(conn)
