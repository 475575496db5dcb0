"""What every connection's config model shares: strict models, the HTTP settings (pacing,
timeouts, retries), the API address and reading the connection's secret.

Each connector folder owns its config model (``connectors/<system>/config.py``) built from
these parts; ``syncer/config.py`` composes them (trackers by ``kind``, from the registry in
``connectors/registry.py``) and turns validation errors into ``[section] key: message``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from syncer.errors import ConfigError


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


def api_base(base_url: HttpUrl | None, default: str) -> str:
    """The API address requests are joined to: the configured one, else ``default``; without
    a trailing slash, so a path from the API reference can be appended as written."""
    return str(base_url).rstrip("/") if base_url is not None else default.rstrip("/")


class TrackerSettings(Strict):
    """The part of a tracker's config model the engine relies on whatever the kind.

    Fields are declared by each tracker's own model (their order there is the order its
    errors are reported in), so they are only announced here for the type checker.
    """

    # The key of the section naming the environment variable that holds the secret.
    secret_key: ClassVar[str]
    # Whether issues of this kind have labels (``tag_to_label`` is refused otherwise).
    has_labels: ClassVar[bool] = False
    # The setting naming where issues go (``check`` stops at a problem with it).
    scope_key: ClassVar[str]
    # The tracker's name as people write it, in the notes the sync writes.
    display_name: ClassVar[str]

    if TYPE_CHECKING:
        kind: str
        base_url: HttpUrl
        http: HttpSettings
        overlap_seconds: float

    @classmethod
    def kind_tag(cls) -> str:
        """The ``kind`` this model is selected by, read from its ``Literal``."""
        return str(get_args(cls.model_fields["kind"].annotation)[0])

    @classmethod
    def secret_key_in(cls, table: Mapping[str, Any]) -> str:
        """The key naming the secret's variable in a section holding ``table`` (a kind with
        two ways to authenticate names a different secret for each)."""
        return cls.secret_key

    def secret_setting(self) -> str:
        """The key naming the environment variable of the secret this section uses."""
        return self.secret_key_in(vars(self))

    def secret_env(self) -> str:
        """The name of the environment variable holding this tracker's secret."""
        return str(getattr(self, self.secret_setting()))

    def scope_name(self) -> str:
        """Where issues live on the tracker, for messages ("project 'web'")."""
        raise NotImplementedError

    @staticmethod
    def user_id_problem(value: str) -> str | None:
        """Why ``value`` cannot be a user id of this tracker, or None."""
        return None

    @classmethod
    def table_problems(cls, table: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Problems between keys of the tracker's own section, as (key, message), read from
        plain data so they are reported together with field errors elsewhere."""
        return []


SECRET_FILE_LIMIT = 64 * 1024  # a secret is a line; more is a wrong path (a log, a device)


def read_secret(env_var: str, section: str, key: str,
                environ: Mapping[str, str] | None = None) -> SecretStr:
    """The secret the config names ``env_var``, from the first of:

    1. the environment variable ``env_var`` itself;
    2. ``{env_var}_FILE``: the path of a file holding it (container secrets, files of
       mode 0600 instead of values in the environment of every child process);
    3. ``$CREDENTIALS_DIRECTORY/{env_var}``: a systemd credential (``LoadCredential=``).

    1 and 2 together are refused: which one is meant cannot be told, and taking either
    silently runs with a key nobody chose. 3 is what the service manager provides, so an
    explicit 1 or 2 overrides it (a drop-in trying another key). A blank variable counts
    as unset; surrounding whitespace, the trailing newline of a file included, is dropped.
    A file that cannot be used is a configuration error naming the variable and the path,
    never what the file holds.
    """
    env = os.environ if environ is None else environ
    where = f"[{section}] {key}: "
    value = env.get(env_var, "").strip()
    file_var = f"{env_var}_FILE"
    path = env.get(file_var, "")
    if value and path.strip():
        raise ConfigError(f"{where}both {env_var} and {file_var} are set; set only one")
    if value:
        return SecretStr(value)
    if path.strip():
        return SecretStr(_read_secret_file(Path(path), f"{where}{file_var}: {path}"))
    not_set = f"{where}environment variable {env_var} is not set"
    credentials = env.get("CREDENTIALS_DIRECTORY", "")
    if not credentials.strip():
        raise ConfigError(not_set)
    credential = Path(credentials) / env_var
    if not credential.exists():
        raise ConfigError(f"{not_set}, nor {file_var}, and there is no credential {credential}")
    return SecretStr(_read_secret_file(credential, f"{where}credential {env_var}: {credential}"))


def _read_secret_file(path: Path, source: str) -> str:
    """The stripped content of a secret file; ``source`` starts every error about it."""
    try:
        with path.open("rb") as f:
            raw = f.read(SECRET_FILE_LIMIT + 1)
    except FileNotFoundError:
        raise ConfigError(f"{source} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{source} is a directory") from None
    except OSError as exc:  # permission, a path through a file...: the reason, no content
        raise ConfigError(f"{source} cannot be read ({exc.strerror or type(exc).__name__})"
                          ) from None
    if len(raw) > SECRET_FILE_LIMIT:
        raise ConfigError(f"{source} is larger than {SECRET_FILE_LIMIT // 1024} KiB: "
                          "not a secret")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{source} is not UTF-8 text") from None
    if not text:
        raise ConfigError(f"{source} is empty")
    return text
