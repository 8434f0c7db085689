"""Shared test helpers: settings for tests, the strategies, the skip-or-fail rule, the served
app (`ServedApp`: a real `chatlimit serve` on a free port; the `serve` fixture starts them).
Chat traffic (send, burst, count) is in tests/traffic.py."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from chatlimit.settings import Settings
from chatlimit.tools.processes import ServedApp

__all__ = ["ServedApp"]  # the one served-app helper: tests import it from here

IN_CI = os.environ.get("CI") == "true"
ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ["fixed-window", "moving-window", "sliding-window-counter"]


def missing(reason: str) -> None:
    """Skip locally with the reason; under CI=true a missing binary is a failure."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: tests must not skip for a missing binary)")
    pytest.skip(reason)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "storage_uri": "memory://",
        "rate_limit": "3/minute",
        "rate_limit_strategy": "fixed-window",
        "rate_limit_enabled": True,
        "trusted_proxies": "127.0.0.1",
        "instance_name": "test-1",
        "replica_names": "",
        "fail_mode": "open",
    }
    values.update(overrides)
    return Settings(**values)


ClientFactory = Callable[..., TestClient]
ServeFactory = Callable[..., ServedApp]


def descendants(pid: int) -> set[int]:
    """Every descendant of pid, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A Prometheus text exposition as {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items()
               if sample == name and wanted <= have)
