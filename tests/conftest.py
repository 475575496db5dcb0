"""Hooks for the whole test suite."""

from __future__ import annotations

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
    """Each test starts from the logging configuration the session had: a test that runs
    the CLI in-process configures structlog (a level above info, JSON to a stream), and a
    later test capturing log events would otherwise see nothing."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
