"""The TOML configuration, validated by strict pydantic models.

Secrets are never written in the file: each connection names the environment variable
that holds its token (``api_token_env``), read into a ``SecretStr``. Every validation
problem is reported at once as ``[section] key: message``.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from syncer.errors import ConfigError
from syncer.models import TicketState

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


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(Strict):
    requests_per_minute: float = Field(60.0, gt=0)
    # For APIs that limit writes tighter than requests (GitHub: ~80 content-creating
    # requests a minute within 5,000 an hour): writes draw from this budget as well as
    # from requests_per_minute. None: requests_per_minute alone limits writes.
    writes_per_minute: float | None = Field(None, gt=0)
    # 1: evenly spaced requests. A larger burst can exceed a server's strict sliding window
    # (the benchmark provoked 429s with 5 at 80/min) for no gain in sustained throughput.
    burst: int = Field(1, ge=1)
    timeout_seconds: float = Field(20.0, gt=0, le=300)
    max_attempts: int = Field(8, ge=1, le=50)
    max_retry_after_seconds: float = Field(300.0, gt=0)

    @field_validator("writes_per_minute")
    @classmethod
    def _writes_within_requests(cls, v: float | None, info: ValidationInfo) -> float | None:
        overall = info.data.get("requests_per_minute")  # absent when it failed itself
        if v is not None and overall is not None and v > overall:
            # Accepting it would promise a write rate the overall budget never delivers.
            raise ValueError("must not exceed requests_per_minute: every write also draws "
                             "from that budget")
        return v


class ReamazeConfig(Strict):
    brand: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="brand subdomain")
    login_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    api_token_env: str = "REAMAZE_API_TOKEN"
    base_url: HttpUrl | None = None
    http: HttpSettings = HttpSettings(requests_per_minute=60)
    overlap_seconds: float = Field(120.0, ge=0)

    def api_base(self) -> str:
        if self.base_url is not None:
            return str(self.base_url).rstrip("/")
        return f"https://{self.brand}.reamaze.io/api/v1"


class RedmineConfig(Strict):
    kind: Literal["redmine"]
    base_url: HttpUrl
    api_key_env: str = "REDMINE_API_KEY"
    project: str = Field(min_length=1, description="project identifier or id")
    tracker_id: int | None = None
    priority_id: int | None = None
    text_formatting: Literal["common_mark", "textile"] = "common_mark"
    closed_status_id: int | None = None  # None: the first status with is_closed
    reopened_status_id: int | None = None  # None: the tracker's default status
    http: HttpSettings = HttpSettings(requests_per_minute=300)
    overlap_seconds: float = Field(2.0, ge=0)


TrackerConfig = Annotated[RedmineConfig, Field(discriminator="kind")]


def tracker_kinds() -> list[str]:
    """The ``kind`` tags of every tracker model, read from the union so it cannot go stale."""
    union = get_args(TrackerConfig)[0]
    members = get_args(union) or (union,)
    return sorted(str(tag) for model in members
                  for tag in get_args(model.model_fields["kind"].annotation))

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


class StatusMap(Strict):
    on_issue_closed: TicketState | None = TicketState.CLOSED
    on_issue_reopened: TicketState | None = TicketState.OPEN
    # Public reply emailed to the customer when the issue closes; empty = none.
    close_reply_template: str = ""
    on_conversation_closed: Literal["close_issue", "nothing"] = "nothing"

    @field_validator("close_reply_template")
    @classmethod
    def _reply_fields(cls, v: str) -> str:
        return check_template(v, ("subject", "issue_id", "issue_url"))


class PairConfig(Strict):
    name: str = Field(pattern=NAME_RE)
    tracker: str
    enabled: bool = True
    interval_seconds: float = Field(60.0, ge=5)
    match: MatchRules = MatchRules(tags=["bug"])
    visibility: VisibilityPolicy = VisibilityPolicy()
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


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class AppConfig(Strict):
    reamaze: ReamazeConfig
    trackers: dict[str, TrackerConfig]
    pairs: list[PairConfig]
    state: StateConfig = StateConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="before")
    @classmethod
    def _state_table(cls, data: Any) -> Any:
        # A default model instance is not validated, so the default state URL would never
        # be resolved against the config folder: validate an empty table instead.
        if isinstance(data, dict) and "state" not in data:
            return {**data, "state": {}}
        return data

    @model_validator(mode="after")
    def _references(self) -> AppConfig:
        # A model validator has no location of its own, so the problems travel as
        # (section, key, message) triples that format_errors prints like field errors.
        problems: list[tuple[str, str, str]] = []
        first_use: dict[str, int] = {}
        known = ", ".join(sorted(self.trackers)) or "none"
        for i, pair in enumerate(self.pairs):
            if pair.tracker not in self.trackers:
                problems.append((f"pairs[{i}]", "tracker",
                                 f"unknown tracker {pair.tracker!r} (known: {known})"))
            if pair.name in first_use:
                problems.append((f"pairs[{i}]", "name", f"{pair.name!r} is already used by "
                                 f"pairs[{first_use[pair.name]}]"))
            else:
                first_use[pair.name] = i
        if problems:
            raise ReferenceProblems(problems)
        return self

    def pair(self, name: str) -> PairConfig:
        for p in self.pairs:
            if p.name == name:
                return p
        raise ConfigError(f"[pairs] name: no pair named {name!r} "
                          f"(known: {', '.join(p.name for p in self.pairs)})")


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


def parse_config(data: dict[str, Any], *, config_dir: Path | None = None) -> AppConfig:
    """``config_dir``: the folder relative paths in ``data`` are read against."""
    context = {"config_dir": config_dir} if config_dir is not None else None
    try:
        return AppConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError("\n".join(format_errors(exc))) from None


def load_config(path: Path) -> AppConfig:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"[config] file: {path} not found (pass --config PATH, "
                          "or copy config.example.toml to ./reamaze-sync.toml)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"[config] file: {path} is not UTF-8") from None
    except OSError as exc:  # a directory, no permission...: still a config problem, exit 2
        raise ConfigError(f"[config] file: {path}: {exc.strerror or type(exc).__name__}"
                          ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"[config] syntax: {path}: {exc}") from None
    return parse_config(data, config_dir=path.absolute().parent)


def read_secret(env_var: str, section: str, key: str,
                environ: Mapping[str, str] | None = None) -> SecretStr:
    env = os.environ if environ is None else environ
    value = env.get(env_var, "")
    if not value.strip():
        raise ConfigError(f"[{section}] {key}: environment variable {env_var} is not set")
    return SecretStr(value.strip())
