"""The TOML configuration, validated by strict pydantic models.

Each connection's section is its connector's own model (``connectors/<system>/config.py``);
this module composes them: the Re:amaze brands, and ``[trackers.NAME]`` as a union selected
by ``kind`` over the tracker kinds registered in ``connectors/registry.py``.

Brands: a config has either one ``[reamaze]`` table (the brand is then named ``reamaze``,
``SINGLE_BRAND``) or one or more ``[brands.NAME]`` tables with the same keys; a pair names
its brand with ``brand = "NAME"``, which may be left out when there is only one.

What lives here is the engine's own settings (pairs, state, sync, server, logging) and the
checks between sections.

Secrets are never written in the file: each connection names the environment variable
that holds its token (``api_token_env``), read into a ``SecretStr`` from that variable, from
the file ``NAME_FILE`` names, or from a systemd credential (``read_secret``). Every validation
problem is reported at once as ``[section] key: message``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
import tomllib
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    Field,
    HttpUrl,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

# The connection settings are defined with their connectors; the ``X as X`` names are
# importable from here too, where callers always found them.
from connectors.reamaze.config import ReamazeConfig
from connectors.redmine.config import RedmineConfig as RedmineConfig
from connectors.registry import TRACKER_KINDS, TRACKERS
from connectors.settings import SECRET_FILE_LIMIT as SECRET_FILE_LIMIT
from connectors.settings import HttpSettings as HttpSettings
from connectors.settings import Strict, TrackerSettings
from connectors.settings import read_secret as read_secret
from syncer.config_reverse import ReverseRules, reverse_problems
from syncer.errors import ConfigError
from syncer.markers import MIN_KEY_LENGTH
from syncer.models import TicketState, TicketStatus

DEFAULT_CONFIG_PATH = Path("reamaze-sync.toml")
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def check_template(template: str, allowed: tuple[str, ...]) -> str:
    """Reject at load time what would make str.format fail on every pass."""
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(template)
                  if f is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc}); write {{{{ and }}}} for braces") from None
    bad = sorted({f for f in fields if f not in allowed})
    if bad:
        raise ValueError(f"unknown placeholder(s) {bad}; use {', '.join(allowed)}")
    try:
        template.format(**{name: "x" for name in allowed})
    except (ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"not a valid template ({exc})") from None
    return template


if TYPE_CHECKING:
    # What the engine may rely on of any tracker's section. Validation uses the union of
    # the registered models, selected by ``kind``, which a type checker cannot build.
    TrackerConfig = TrackerSettings
else:
    TrackerConfig = Annotated[Union[tuple(t.config for t in TRACKERS)],  # noqa: UP007
                              Field(discriminator="kind")]


def _tracker_models() -> dict[str, type[TrackerSettings]]:
    """Each tracker model by its ``kind`` tag."""
    return {kind: t.config for kind, t in TRACKER_KINDS.items()}


def tracker_models() -> dict[str, type[TrackerSettings]]:
    """Each tracker kind's config model (what a ``[trackers.NAME]`` table may hold)."""
    return dict(_tracker_models())


def tracker_kinds() -> list[str]:
    return sorted(TRACKER_KINDS)

Direction = Literal["both", "helpdesk_to_tracker", "tracker_to_helpdesk", "none"]
Owner = Literal["helpdesk", "tracker"]


class FieldPolicy(Strict):
    direction: Direction = "both"
    owner: Owner = "tracker"  # wins when both sides changed since the last sync


class MatchRules(Strict):
    """A conversation gets an issue when it matches any non-empty rule."""

    tags: list[str] = []
    channels: list[str] = []
    statuses: list[TicketState] = []

    @property
    def empty(self) -> bool:
        return not (self.tags or self.channels or self.statuses)


class VisibilityPolicy(Strict):
    # A public tracker note goes to the customer only if this is true; otherwise it is
    # copied as an internal note.
    customer_replies_from_tracker: bool = False
    # What to do with an internal note when the tracker cannot keep a comment private.
    internal_to_public_tracker: Literal["skip", "placeholder"] = "skip"
    placeholder_text: str = ("An internal note was added in Re:amaze "
                             "(not copied: this tracker cannot keep it private).")
    # Include the customer's name and email in the issue body.
    include_customer_pii: bool = False


class EditsPolicy(Strict):
    """Copied comments edited or deleted at their source. Re:amaze messages cannot be
    edited or deleted through its API, so a tracker note's change reaches Re:amaze as a new
    internal note saying so (never emailed, whatever the copy was)."""

    tracker_to_helpdesk: bool = True
    # An internal note edited in Re:amaze rewrites its tracker copy (kept private).
    helpdesk_to_tracker: bool = True


# Re:amaze needs a date with On Hold (`hold_until`), which a tracker status change has not.
_NO_HOLD = "Re:amaze needs a hold_until date to put a conversation on hold, which a tracker " \
           "status change does not give"
ConversationState = Literal["open", "pending", "on_hold", "closed"]


class StatusMap(Strict):
    """How status moves between a conversation and its issue, both ways.

    Tracker → Re:amaze: an issue that moves to a status named in ``issue_to_conversation``
    (by name or id) sets the conversation to that state; any other move into a closed status
    sets ``on_issue_closed``, and one out of a closed status sets ``on_issue_reopened``
    (only to a conversation that is still closed). Re:amaze → tracker: a conversation that
    closes closes its issue (``on_conversation_closed``), one that leaves closed reopens a
    closed issue (``on_conversation_reopened``), to the status ``conversation_to_issue``
    names for the new state or else the tracker's ``closed_status_id`` /
    ``reopened_status_id``; an open issue follows the open states the table names.
    """

    on_issue_closed: TicketState | None = TicketState.CLOSED
    on_issue_reopened: TicketState | None = TicketState.OPEN
    # Public reply emailed to the customer when the issue closes; empty = none.
    close_reply_template: str = ""
    on_conversation_closed: Literal["close_issue", "nothing"] = "nothing"
    on_conversation_reopened: Literal["reopen_issue", "nothing"] = "nothing"
    issue_to_conversation: dict[str, ConversationState] = {}
    conversation_to_issue: dict[ConversationState, str] = {}

    @field_validator("close_reply_template")
    @classmethod
    def _reply_fields(cls, v: str) -> str:
        return check_template(v, ("subject", "issue_id", "issue_url"))

    @field_validator("on_issue_closed", "on_issue_reopened")
    @classmethod
    def _not_on_hold(cls, v: TicketState | None) -> TicketState | None:
        if v is TicketState.ON_HOLD:
            raise ValueError(_NO_HOLD)
        return v

    @field_validator("issue_to_conversation")
    @classmethod
    def _targets(cls, v: dict[str, str]) -> dict[str, str]:
        held = sorted(k for k, state in v.items() if state == "on_hold")
        if held:
            raise ValueError(f"{', '.join(map(repr, held))}: {_NO_HOLD}")
        if any(not k.strip() for k in v):
            raise ValueError("a tracker status (name or id) may not be blank")
        return v

    @field_validator("conversation_to_issue")
    @classmethod
    def _statuses(cls, v: dict[str, str]) -> dict[str, str]:
        if any(not s.strip() for s in v.values()):
            raise ValueError("a tracker status (name or id) may not be blank")
        return v

    @property
    def sends_to_tracker(self) -> bool:
        return (self.on_conversation_closed == "close_issue"
                or self.on_conversation_reopened == "reopen_issue"
                or bool(self.conversation_to_issue))

    @property
    def names_tracker_statuses(self) -> bool:
        """The table names tracker statuses: the reconciler needs the tracker's list."""
        return bool(self.issue_to_conversation or self.conversation_to_issue)

    def wanted_for(self, status: TicketStatus) -> TicketState | None:
        """The conversation state ``issue_to_conversation`` names for this tracker status."""
        for key, state in self.issue_to_conversation.items():
            if status_named(status, key):
                return TicketState(state)
        return None


def status_named(status: TicketStatus, key: str) -> bool:
    """A tracker status as the config names it: by its id, or by its name (any case)."""
    key = key.strip()
    return key == status.code or key.casefold() == status.name.casefold()


class PairConfig(Strict):
    name: str = Field(pattern=NAME_RE)
    tracker: str
    # The [brands.NAME] the pair syncs; None: the config's only brand.
    brand: str | None = None
    enabled: bool = True
    interval_seconds: float = Field(60.0, ge=5)
    # `status` calls the pair stale (and exits 1) when no pass succeeded for this long.
    # None: three intervals (a pass may fail twice in a row on a blip without an alarm).
    stale_after_seconds: float | None = Field(None, gt=0)
    match: MatchRules = MatchRules(tags=["bug"])
    visibility: VisibilityPolicy = VisibilityPolicy()
    edits: EditsPolicy = EditsPolicy()
    status: StatusMap = StatusMap()
    title_template: str = "{subject}"
    status_field: FieldPolicy = FieldPolicy(direction="tracker_to_helpdesk", owner="tracker")
    tags_field: FieldPolicy = FieldPolicy(direction="helpdesk_to_tracker", owner="helpdesk")
    assignee_field: FieldPolicy = FieldPolicy(direction="both", owner="tracker")
    tag_to_label: dict[str, str] = {}
    staff_to_user: dict[str, str] = {}  # Re:amaze staff email -> tracker user id
    # How a new issue gets the messages its conversation already has: one note each, or
    # (``transcript``) the public ones written into the issue description, one tracker
    # write instead of one per message. Internal notes, messages with attachments and
    # messages that arrive later always go as notes.
    history: Literal["per_message", "transcript"] = "per_message"
    # Where history starts for this pair: the first pass and `backfill` walk back to here.
    # None = everything.
    since: datetime | None = None
    # Tracker issues that get a Re:amaze conversation (off unless enabled).
    reverse: ReverseRules = ReverseRules()
    # An internal note in each newly linked conversation naming its issue, for the staff.
    # false: none; each new link then costs one Re:amaze write less (a backfill of 10,000
    # conversations, 10,000 requests: at 60 a minute, 2.8 hours).
    link_note: bool = True

    @model_validator(mode="before")
    @classmethod
    def _status_direction(cls, data: Any) -> Any:
        # Closing or reopening issues from Re:amaze used to need a [pairs.status_field]
        # table as well, or it silently did nothing: without one, the direction now follows
        # what [pairs.status] asks for. A table keeps its own (FieldPolicy's default is
        # "both"), and reference_problems reports a direction that contradicts the table.
        if not isinstance(data, dict) or "status_field" in data:
            return data
        table = data.get("status", {})
        if isinstance(table, StatusMap):
            sends = table.sends_to_tracker
        elif isinstance(table, dict):
            sends = _sends_to_tracker(table)
        else:
            return data  # its own field error says what is wrong
        return {**data, "status_field": {
            "direction": "both" if sends else "tracker_to_helpdesk", "owner": "tracker"}}

    @field_validator("since", mode="before")
    @classmethod
    def _since_aware(cls, v: object) -> object:
        if isinstance(v, date) and not isinstance(v, datetime):
            return datetime(v.year, v.month, v.day, tzinfo=UTC)
        if isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
            return f"{v}T00:00:00Z"
        if isinstance(v, datetime) and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v

    @field_validator("since")
    @classmethod
    def _since_has_zone(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v

    @field_validator("title_template")
    @classmethod
    def _template_fields(cls, v: str) -> str:
        return check_template(v, ("subject", "slug", "channel"))

    @field_validator("staff_to_user")
    @classmethod
    def _staff_emails(cls, v: dict[str, str]) -> dict[str, str]:
        # Assignees are matched by the staff member's email: any other key never matches.
        bad = [k for k in v if not re.fullmatch(r"[^@\s]+@[^@\s]+", k)]
        if len(bad) == 1:
            raise ValueError(f"{bad[0]!r} is not an email address (keys are Re:amaze staff "
                             "emails)")
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))} are not email addresses (keys are "
                             "Re:amaze staff emails)")
        return v


def _sends_to_tracker(table: Mapping[str, Any]) -> bool:
    """Whether a [pairs.status] table, as written, asks for status to go to the tracker."""
    return (table.get("on_conversation_closed") == "close_issue"
            or table.get("on_conversation_reopened") == "reopen_issue"
            or bool(table.get("conversation_to_issue")))


_SQLITE_FILE_RE = re.compile(r"(sqlite(?:\+\w+)?:///)([^?]*)(\?.*)?", re.S)


def resolve_path(value: str, info: ValidationInfo) -> str:
    """A path from the config, relative to the config file's folder.

    The working directory is an accident of how the command was started: resolved against
    it, one config run from two folders kept two states and created every issue twice.
    Without a file (a config built from data) there is no folder and the path stays as
    written. ``~`` is expanded, as a shell would have.
    """
    folder = (info.context or {}).get("config_dir")
    path = os.path.expanduser(value)
    if folder is None or os.path.isabs(path):
        return path
    return os.path.normpath(Path(folder) / path)


class StateConfig(Strict):
    # Validated even when left out, so the default file is resolved like a written one.
    url: str = Field("sqlite:///reamaze-sync.db", validate_default=True)
    # How long `run --once` and `backfill` wait for a pair another process is working
    # before exiting 1 with the holder's name; the daemon never waits (it skips the pass).
    lock_wait_seconds: float = Field(60.0, ge=0)
    # PostgreSQL: how long a pair stays taken after its holder's last renewal (renewed
    # every third of it), i.e. how long a crashed holder keeps others out.
    lease_seconds: float = Field(30.0, ge=1, le=3600)
    # The daemon prunes after its passes: completed intents older than this (they prove
    # nothing the links and the remote markers do not) and each pair's runs beyond the
    # latest keep_runs (its last successful and last failed run always stay).
    keep_done_intents_days: float = Field(7.0, gt=0)
    keep_runs: int = Field(100, ge=1)

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str, info: ValidationInfo) -> str:
        if not re.match(r"^(sqlite|postgresql(\+\w+)?)://", v):
            raise ValueError("must start with sqlite:// or postgresql://")
        sqlite_file = _SQLITE_FILE_RE.fullmatch(v)
        if sqlite_file is None:
            return v
        scheme, path, query = sqlite_file.groups()
        # Empty or ":memory:": in memory; "file:" with uri=true: a URI SQLite resolves.
        if path in ("", ":memory:") or path.startswith("file:"):
            return v
        return f"{scheme}{resolve_path(path, info)}{query or ''}"


class SyncSettings(Strict):
    """How the engine protects what it writes (the same for every pair)."""

    # The environment variable holding this installation's marker key: a random secret
    # (at least 16 characters) that makes the markers on everything the engine writes
    # unguessable. Every process and host syncing the same pairs must use the same key,
    # and it must survive the state database: it is how the engine recognises its own
    # issues and comments after the state was lost.
    marker_key_env: str = "REAMAZE_SYNC_MARKER_KEY"
    # A write whose answer never came is held (never sent again) until it was looked for
    # this many times, on separate passes...
    unknown_write_lookups: int = Field(3, ge=1, le=100)
    # ...and this long after it was sent: a slow server may still commit it.
    unknown_write_window_seconds: float = Field(600.0, ge=0)
    # The daemon's anti-entropy sweep (re-reads linked conversations and issues to repair
    # what the change feeds missed) may use at most this share of each connection's
    # requests_per_minute; 0 turns it off. 0.25 verifies about 10,000 links a day at the
    # default budgets (Re:amaze 60 a minute, 2 requests a link).
    sweep_share: float = Field(0.25, ge=0, le=0.9)
    # Pages (30 conversations each) of recently active conversations the sweep re-reads,
    # one page per pass, for a rule match the feed missed (a tag added without a change
    # the listing shows); 0: none.
    sweep_recent_pages: int = Field(2, ge=0, le=100)
    # Files of Re:amaze messages up to this size are uploaded with their copy to trackers
    # that take uploads (Redmine, GitLab); larger ones, and every file of an internal note
    # (a tracker's files have no private flag), go as a link.
    attachment_max_mb: float = Field(10.0, ge=0, le=1024)
    # Every process using a credential (the daemon, a `backfill` beside it, another daemon
    # on the same state) books its requests in one budget kept in the state database, so
    # together they stay within the configured rate; false: each process spends it all.
    share_budgets: bool = True


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for an IPv6 address) as (host, port); ValueError says why."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9.-]+):(\d{1,5})", value)
    if match is None:
        raise ValueError("expected HOST:PORT, e.g. \"127.0.0.1:9464\" (an IPv6 address in "
                         "brackets: \"[::1]:9464\")")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not between 1 and 65535")
    if match.group(1) is not None:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    return host, port


class ServerConfig(Strict):
    """The daemon's HTTP listener for health checks and Prometheus metrics (off unless
    ``listen`` is set). It has no authentication: bind it to loopback or a private
    network."""

    listen: str | None = None
    # /readyz fails for a pair whose last successful pass finished longer ago than this
    # many of its intervals (more than one: a pass takes time, and one failed pass is
    # not yet an outage).
    stale_after_intervals: float = Field(3.0, gt=1, le=1000)
    # Where Re:amaze reaches this listener (e.g. https://sync.example.com, through a
    # reverse proxy): set, the daemon relays tracker files to Re:amaze under signed links
    # (``syncer.relay``) that stop working after relay_link_minutes. Unset: a copy names
    # each file, with the tracker's link for staff.
    relay_url: HttpUrl | None = None
    relay_link_minutes: float = Field(60.0, gt=0, le=24 * 60)

    @model_validator(mode="after")
    def _relay_needs_listener(self) -> ServerConfig:
        if self.relay_url is not None and self.listen is None:
            raise ValueError("relay_url needs [server] listen: the files are served by the "
                             "daemon's listener")
        return self

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            parse_listen(v)
        return v

    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen is not None else None


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


# The name of the brand a ``[reamaze]`` table configures.
SINGLE_BRAND = "reamaze"
BrandName = Annotated[str, StringConstraints(pattern=NAME_RE)]


class AppConfig(Strict):
    # The ``[reamaze]`` table as written (None when the brands are named): read a pair's
    # settings through ``brands`` and ``brand_of``, which know both forms.
    reamaze: ReamazeConfig | None
    # Every brand by name: the ``[brands.NAME]`` tables, or the ``[reamaze]`` table as
    # SINGLE_BRAND (``_single_brand``; dumped back as ``[reamaze]`` alone).
    brands: dict[BrandName, ReamazeConfig] = {}
    trackers: dict[str, TrackerConfig]
    pairs: list[PairConfig]
    state: StateConfig = StateConfig()
    logging: LoggingConfig = LoggingConfig()
    sync: SyncSettings = SyncSettings()
    server: ServerConfig = ServerConfig()

    @model_validator(mode="before")
    @classmethod
    def _state_table(cls, data: Any) -> Any:
        # A default model instance is not validated, so the default state URL would never
        # be resolved against the config folder: validate an empty table instead.
        if isinstance(data, dict) and "state" not in data:
            data = {**data, "state": {}}
        # [reamaze] is required unless the brands are named (``Field required`` otherwise).
        if isinstance(data, dict) and "brands" in data and "reamaze" not in data:
            data = {**data, "reamaze": None}
        return data

    @model_validator(mode="after")
    def _references(self) -> AppConfig:
        # A model validator has no location of its own, so the problems travel as
        # (section, key, message) triples that format_errors prints like field errors.
        problems = reference_problems(self.model_dump())
        if problems:
            raise ReferenceProblems(problems)
        return self

    @model_validator(mode="after")
    def _single_brand(self) -> AppConfig:
        # Filled in after validation, so a [reamaze] table's errors keep its own name; the
        # model is frozen to its users, not to its own validator.
        if self.reamaze is not None and not self.brands:
            self.__dict__["brands"] = {SINGLE_BRAND: self.reamaze}
        return self

    @field_serializer("brands")
    def _dump_brands(self, brands: dict[str, ReamazeConfig]) -> dict[str, ReamazeConfig]:
        # What the file said: a dump validates again (``_references`` reads one).
        if self.reamaze is not None and list(brands) == [SINGLE_BRAND] \
                and brands[SINGLE_BRAND] is self.reamaze:
            return {}
        return brands

    def brand_of(self, pair: PairConfig) -> str:
        """The name of the brand ``pair`` syncs (validated: it exists)."""
        if pair.brand is not None:
            return pair.brand
        [only] = self.brands  # several brands without a pair's brand are refused at load
        return only

    def brand_section(self, brand: str) -> str:
        """Where the brand is configured, for messages: ``reamaze`` or ``brands.NAME``."""
        return "reamaze" if self.reamaze is not None else f"brands.{brand}"

    def brand_service(self, brand: str) -> str:
        """The brand's connection among the services (transports, budgets, metrics):
        ``reamaze`` for a ``[reamaze]`` table, ``reamaze:NAME`` for ``[brands.NAME]`` (a
        tracker name cannot hold a colon, so the two never collide)."""
        return "reamaze" if self.reamaze is not None else f"reamaze:{brand}"

    def pair(self, name: str) -> PairConfig:
        for p in self.pairs:
            if p.name == name:
                return p
        raise ConfigError(_no_such_pair(name, [p.name for p in self.pairs]))


def _no_such_pair(name: str, known: list[str]) -> str:
    return f"[pairs] name: no pair named {name!r} (known: {', '.join(known)})"


def _tables(value: Any) -> dict[str, Any]:
    return {k: v for k, v in value.items() if isinstance(v, dict)} if isinstance(
        value, dict) else {}


def _pair_tables(data: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    pairs = data.get("pairs")
    return [(i, p) for i, p in enumerate(pairs) if isinstance(p, dict)] if isinstance(
        pairs, list) else []


def _tracker_model(table: Any) -> type[TrackerSettings] | None:
    kind = table.get("kind") if isinstance(table, dict) else None
    return _tracker_models().get(kind) if isinstance(kind, str) else None


def reference_problems(data: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Problems between sections, as (section, key, message).

    They are read from plain data (the file as parsed, or a valid model dumped) so that a
    field error elsewhere does not hide them: the operator fixes everything in one go.
    Values of the wrong type are skipped here; their field errors already say so.
    """
    problems: list[tuple[str, str, str]] = []
    trackers = data.get("trackers") if isinstance(data.get("trackers"), dict) else {}
    assert isinstance(trackers, dict)
    known = ", ".join(sorted(trackers)) or "none"
    first_use: dict[str, int] = {}
    brands, problems = _brand_names(data)
    for i, pair in _pair_tables(data):
        name, tracker = pair.get("name"), pair.get("tracker")
        if isinstance(tracker, str) and tracker not in trackers:
            problems.append((f"pairs[{i}]", "tracker",
                             f"unknown tracker {tracker!r} (known: {known})"))
        if brands is not None:
            problems += _pair_brand_problems(f"pairs[{i}]", pair.get("brand"), brands)
        if isinstance(name, str):
            if name in first_use:
                problems.append((f"pairs[{i}]", "name", f"{name!r} is already used by "
                                 f"pairs[{first_use[name]}]"))
            else:
                first_use[name] = i
        problems += _status_problems(f"pairs[{i}]", pair)
        model = _tracker_model(trackers.get(tracker)) if isinstance(tracker, str) else None
        if model is not None:
            problems += _pair_against_tracker(f"pairs[{i}]", pair, str(tracker), model)
        problems += reverse_problems(f"pairs[{i}]", pair, str(tracker), model)
    for name, table in _tables(trackers).items():
        model = _tracker_model(table)
        if model is not None:
            problems += [(f"trackers.{name}", k, m) for k, m in model.table_problems(table)]
    return problems


def _brand_names(data: Mapping[str, Any]) -> tuple[list[str] | None,
                                                 list[tuple[str, str, str]]]:
    """The brands pairs may name (None: the brand tables themselves are wrong, or there
    are none to check against), and what is wrong with the brand tables."""
    single, named = data.get("reamaze"), data.get("brands")
    if isinstance(single, dict):
        if named:
            return None, [("config", "brands", "cannot be used together with [reamaze]: "
                           "configure one brand as [reamaze], or every brand as "
                           "[brands.NAME]")]
        return [SINGLE_BRAND], []
    if single is None and named == {}:
        return None, [("config", "brands", "no brand: add a [brands.NAME] table for each "
                       "Re:amaze brand (or one [reamaze] table)")]
    return (sorted(named) if isinstance(named, dict) and named else None), []


def _pair_brand_problems(section: str, brand: Any,
                         brands: list[str]) -> list[tuple[str, str, str]]:
    known = ", ".join(brands)
    if brand is None and len(brands) > 1:
        return [(section, "brand", f"missing: the config has several brands, name one "
                 f"(known: {known})")]
    if isinstance(brand, str) and brand not in brands:
        return [(section, "brand", f"unknown brand {brand!r} (known: {known})")]
    return []


_TO_TRACKER = ("both", "helpdesk_to_tracker")
_TO_HELPDESK = ("both", "tracker_to_helpdesk")


def _status_problems(section: str, pair: dict[str, Any]) -> list[tuple[str, str, str]]:
    """[pairs.status] settings that the pair's status direction, or each other, rule out:
    each would otherwise do nothing without a word."""
    table, field = pair.get("status"), pair.get("status_field")
    if not isinstance(table, dict):
        return []
    problems: list[tuple[str, str, str]] = []
    where = f"{section}.status"
    direction = field.get("direction") if isinstance(field, dict) else None
    if isinstance(direction, str) and direction not in _TO_TRACKER:
        for key, value in (("on_conversation_closed", "close_issue"),
                           ("on_conversation_reopened", "reopen_issue")):
            if table.get(key) == value:
                problems.append((where, key, f"{value!r} sends status to the tracker, but "
                                 f"[{section}.status_field] direction is {direction!r}; set it "
                                 "to \"both\" or \"helpdesk_to_tracker\" (or leave it out)"))
        if table.get("conversation_to_issue"):
            problems.append((where, "conversation_to_issue", "sets tracker statuses, but "
                             f"[{section}.status_field] direction is {direction!r}; set it to "
                             "\"both\" or \"helpdesk_to_tracker\" (or leave it out)"))
    if isinstance(direction, str) and direction not in _TO_HELPDESK:
        for key in ("issue_to_conversation", "close_reply_template"):
            if table.get(key):
                problems.append((where, key, "acts when the issue changes, but "
                                 f"[{section}.status_field] direction is {direction!r}; set it "
                                 "to \"both\" or \"tracker_to_helpdesk\""))
    mapped = table.get("conversation_to_issue")
    if (isinstance(mapped, dict) and "closed" in mapped
            and table.get("on_conversation_closed", "nothing") != "close_issue"):
        problems.append((where, "conversation_to_issue", "names a status for \"closed\", but "
                         "on_conversation_closed is \"nothing\"; set it to \"close_issue\" "
                         "or remove the entry"))
    return problems


def _pair_against_tracker(section: str, pair: dict[str, Any], tracker: str,
                          model: type[TrackerSettings]) -> list[tuple[str, str, str]]:
    """What a pair asks of its tracker that this kind of tracker cannot do."""
    problems: list[tuple[str, str, str]] = []
    staff = pair.get("staff_to_user")
    for email, user in (staff.items() if isinstance(staff, dict) else ()):
        why = model.user_id_problem(user) if isinstance(user, str) else None
        if why is not None:
            problems.append((section, "staff_to_user", f"{email!r} maps to {user!r}, but {why} "
                             f"(tracker {tracker!r})"))
    if pair.get("tag_to_label") and not model.has_labels:
        problems.append((section, "tag_to_label", f"tracker {tracker!r} is a "
                         f"{model.kind_tag()} tracker, which has no labels; remove the "
                         "mapping"))
    return problems


def selection_problems(data: Mapping[str, Any], pair: str | None) -> list[str]:
    """``--pair NAME`` must name a pair of the file."""
    names = [p["name"] for _, p in _pair_tables(data) if isinstance(p.get("name"), str)]
    return [] if pair is None or pair in names else [_no_such_pair(pair, names)]


def secret_problems(data: Mapping[str, Any], pair: str | None,
                    environ: Mapping[str, str] | None = None) -> list[str]:
    """Missing, blank or unreadable secrets of the connections a command will use: those
    of the pair ``pair``, or (None) of every enabled pair; a disabled pair's tracker needs
    no key. Each is looked for where ``read_secret`` looks (the variable, ``NAME_FILE``,
    a systemd credential).

    Read from the file as parsed, so they are reported together with its field errors
    even when those keep the model from being built.
    """
    pairs = [p for _, p in _pair_tables(data)]
    used = ([p for p in pairs if p.get("name") == pair] if pair is not None
            else [p for p in pairs if p.get("enabled", True) is not False])
    if not used:
        return []
    problems: list[str] = []
    named = data.get("brands")
    if isinstance(named, dict) and named and not isinstance(data.get("reamaze"), dict):
        problems += _brand_secret_problems(_tables(named), used, environ)
    else:
        reamaze = data.get("reamaze") if isinstance(data.get("reamaze"), dict) else {}
        assert isinstance(reamaze, dict)
        env_var = reamaze.get("api_token_env", _TOKEN_ENV_DEFAULT)
        if isinstance(env_var, str):
            problems += _missing(env_var, "reamaze", "api_token_env", "", environ)
    sync = data.get("sync") if isinstance(data.get("sync"), dict) else {}
    assert isinstance(sync, dict)
    key_var = sync.get("marker_key_env", SyncSettings.model_fields["marker_key_env"].default)
    if isinstance(key_var, str):
        problems += _missing(key_var, "sync", "marker_key_env", "", environ,
                             min_length=MIN_KEY_LENGTH)
    users: dict[str, list[str]] = {}
    for p in used:
        if isinstance(p.get("tracker"), str):
            users.setdefault(p["tracker"], []).append(str(p.get("name")))
    for name, table in _tables(data.get("trackers")).items():
        model = _tracker_model(table)
        if name not in users or model is None:
            continue
        key = model.secret_key_in(table)
        env_var = table.get(key, model.model_fields[key].default)
        if isinstance(env_var, str):
            problems += _missing(env_var, f"trackers.{name}", key, _used_by(users[name]),
                                 environ)
    return problems


_TOKEN_ENV_DEFAULT = ReamazeConfig.model_fields["api_token_env"].default


def _used_by(names: list[str]) -> str:
    return (f" (used by pair {names[0]!r})" if len(names) == 1
            else f" (used by pairs {', '.join(map(repr, names))})")


def _brand_secret_problems(brands: dict[str, dict[str, Any]], used: list[dict[str, Any]],
                           environ: Mapping[str, str] | None) -> list[str]:
    """The API token of each named brand a used pair syncs (a pair without ``brand``
    syncs the only one; one naming no known brand is reported by reference_problems)."""
    users: dict[str, list[str]] = {}
    for p in used:
        brand = p.get("brand")
        if brand is None and len(brands) == 1:
            [brand] = brands
        if isinstance(brand, str) and brand in brands:
            users.setdefault(brand, []).append(str(p.get("name")))
    problems: list[str] = []
    for name, table in brands.items():
        env_var = table.get("api_token_env", _TOKEN_ENV_DEFAULT)
        if name in users and isinstance(env_var, str):
            problems += _missing(env_var, f"brands.{name}", "api_token_env",
                                 _used_by(users[name]), environ)
    return problems


def _missing(env_var: str, section: str, key: str, suffix: str,
             environ: Mapping[str, str] | None, *, min_length: int = 1) -> list[str]:
    try:
        value = read_secret(env_var, section, key, environ).get_secret_value()
    except ConfigError as exc:
        return [exc.message + suffix]
    if len(value) < min_length:
        return [f"[{section}] {key}: {env_var} must hold at least {min_length} characters of "
                "random secret (e.g. the output of "
                "`python3 -c 'import secrets; print(secrets.token_hex(32))'`)"]
    return []


class ReferenceProblems(ValueError):
    """Cross-section errors found after the fields validated, each with its location."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"[{s}] {k}: {m}" for s, k, m in problems))


def _location(loc: tuple[int | str, ...]) -> tuple[str, str]:
    """('pairs', 0, 'match', 'tags', 1) -> ('pairs[0].match', 'tags[1]').

    List indices stick to the name before them, and the discriminator tag pydantic inserts
    after a tracker's name (``trackers.main.redmine.project``) is dropped.
    """
    names: list[str] = []
    for pos, item in enumerate(loc):
        if isinstance(item, int):
            names[-1:] = [f"{names[-1]}[{item}]"] if names else [f"[{item}]"]
        elif pos == 2 and loc[0] == "trackers" and item in tracker_kinds():
            continue
        else:
            names.append(str(item))
    if not names:
        return "config", "(root)"
    return ".".join(names[:-1]) or "config", names[-1]


def format_errors(exc: ValidationError) -> list[str]:
    """One ``[section] key: message`` line per problem, in the order pydantic found them."""
    lines: list[str] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        error = ctx.get("error")
        if isinstance(error, ReferenceProblems):
            lines.extend(f"[{s}] {k}: {m}" for s, k, m in error.problems)
            continue
        section, key = _location(loc)
        msg = err["msg"].removeprefix("Value error, ")
        if loc[:1] == ("brands",) and loc[-1:] == ("[key]",) and len(loc) == 3:
            # A brand table's name (``[brands.NAME]``) is wrong, not a key inside it.
            section, key = _location(loc[:-1])
            msg = f"not a valid name ({msg})"
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found") and loc[:1] == (
                "trackers",):
            # Name the missing/unknown field itself, and list what would have been accepted.
            section, key = ".".join(map(str, loc)), "kind"
            known = ", ".join(tracker_kinds())
            msg = (f"unknown tracker kind {ctx['tag']!r} (known: {known})"
                   if err["type"] == "union_tag_invalid" else f"missing (known kinds: {known})")
        lines.append(f"[{section}] {key}: {msg}")
    return lines


def parse_config(data: dict[str, Any], *, config_dir: Path | None = None,
                 pair: str | None = None, need_secrets: bool = False,
                 environ: Mapping[str, str] | None = None) -> AppConfig:
    """Validate ``data``; every problem found is in the one ``ConfigError``.

    ``config_dir``: the folder relative paths are read against. ``pair``: the pair a
    command was asked to work on (``--pair``), which must exist. ``need_secrets``: the
    command will connect, so the secrets of the pairs it uses (``pair``, or every enabled
    pair) must be set in ``environ`` (default: the process environment).
    """
    context = {"config_dir": config_dir} if config_dir is not None else None
    lines: list[str] = []
    cfg: AppConfig | None = None
    try:
        cfg = AppConfig.model_validate(data, context=context)
    except ValidationError as exc:
        lines += format_errors(exc)
        if not _reached_references(exc):
            lines += [f"[{s}] {k}: {m}" for s, k, m in reference_problems(data)]
    lines += selection_problems(data, pair)
    if need_secrets:
        lines += secret_problems(data, pair, environ)
    if lines or cfg is None:
        raise ConfigError("\n".join(lines))
    return cfg


def _reached_references(exc: ValidationError) -> bool:
    """Whether the model's own cross-checks ran (they only run once every field is valid)."""
    return any(isinstance((e.get("ctx") or {}).get("error"), ReferenceProblems)
               for e in exc.errors())


def load_config(path: Path, *, pair: str | None = None, need_secrets: bool = False,
                environ: Mapping[str, str] | None = None) -> AppConfig:
    """The file at ``path``; the options are ``parse_config``'s."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"[config] file: {path} not found (pass --config PATH or set "
                          "REAMAZE_SYNC_CONFIG; `reamaze-sync init` writes a commented "
                          "example)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"[config] file: {path} is not UTF-8") from None
    except OSError as exc:  # a directory, no permission...: still a config problem, exit 2
        raise ConfigError(f"[config] file: {path}: {exc.strerror or type(exc).__name__}"
                          ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"[config] syntax: {path}: {exc}") from None
    return parse_config(data, config_dir=path.absolute().parent, pair=pair,
                        need_secrets=need_secrets, environ=environ)
