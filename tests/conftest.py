"""Hooks for the whole test suite."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            exitstatus: int, config: pytest.Config) -> None:
    """What the crash matrix covered, on every run that ran it (CI logs show it)."""
    from crash_matrix import SUMMARY

    lines = config.stash.get(SUMMARY, None)
    if lines:
        terminalreporter.section("crash matrix")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _structlog_config_per_test() -> Iterator[None]:
    """Each test starts with every log level let through and leaves the configuration as
    it found it. Tests that run the CLI in-process configure structlog (a level above
    info, JSON to a stream); a later test capturing log events (``capture_logs`` replaces
    the processors, not the level filter) would otherwise see nothing, depending on which
    tests ran before it."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**saved)
