"""Hooks for the whole test suite."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            exitstatus: int, config: pytest.Config) -> None:
    """What the crash matrix covered, on every run that ran it (CI logs show it)."""
    from crash_matrix import SUMMARY

    lines = config.stash.get(SUMMARY, None)
    if lines:
        terminalreporter.section("crash matrix")
        for line in lines:
            terminalreporter.write_line(line)
