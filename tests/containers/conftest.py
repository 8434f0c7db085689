"""Prints the container stand's timings at the end of the run (CI reports them)."""

from __future__ import annotations

import pytest

from .stand import TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("container stand timings")
    for step, seconds in TIMINGS:
        terminalreporter.write_line(f"{seconds:7.1f} s  {step}")
    total = sum(seconds for _, seconds in TIMINGS)
    terminalreporter.write_line(f"container stand: {total:.1f} s in all")
