"""structlog, configured once: JSON lines for daemons and pipes, readable on a terminal.

A redaction processor runs last before rendering so no secret reaches any output: values
under secret-looking keys are masked, and every string goes through ``syncer.secrets.scrub``,
the same function that cleans error text before it is printed or stored.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

from syncer.secrets import register_secret as register_secret  # older callers import it here
from syncer.secrets import scrub

# api[-_]?key also catches header names such as X-Redmine-API-Key.
SECRET_KEY_RE = re.compile(r"(authorization|token|api[-_]?key|password|secret|cookie)",
                           re.IGNORECASE)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: ("***" if SECRET_KEY_RE.search(str(k)) else _scrub(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else (an exception, a request, a model) is rendered by its repr/str, which
    # may carry a secret: render it here, where it can still be scrubbed.
    return scrub(str(value))


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if SECRET_KEY_RE.search(key) and key != "event":
            event_dict[key] = "***"
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure_logging(level: str = "info",
                      fmt: Literal["auto", "json", "console"] = "auto",
                      stream: Any = None) -> None:
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (structlog.processors.JSONRenderer() if use_json
                     else structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
