"""structlog, configured once: JSON lines for daemons and pipes, readable on a terminal.

A redaction processor runs last before rendering so no secret reaches any output: values
under secret-looking keys are masked, and registered secret values are replaced wherever
they appear in a string.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

SECRET_KEY_RE = re.compile(r"(authorization|token|api_key|apikey|password|secret|cookie)",
                           re.IGNORECASE)
_registered: set[str] = set()


def register_secret(value: str) -> None:
    """Make sure this exact value never appears in a log line."""
    if len(value) >= 4:
        _registered.add(value)


def _scrub_text(text: str) -> str:
    for secret in _registered:
        if secret in text:
            text = text.replace(secret, "***")
    return re.sub(r"(?i)(authorization:\s*)(basic|bearer)\s+\S+", r"\1\2 ***", text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, dict):
        return {k: ("***" if SECRET_KEY_RE.search(str(k)) else _scrub(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


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
