"""This replica's decisions over the last minute, for GET /api/stats and the page's live chart.

Kept whether or not METRICS is on: the page must not need Prometheus. A ring of fixed
buckets, so recording is an index and an add, and memory stays a few dozen integers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

WINDOW_SECONDS = 60
BUCKET_SECONDS = 5
BUCKETS = WINDOW_SECONDS // BUCKET_SECONDS
COLUMNS = ("allowed", "blocked", "shadow")


class Recent:
    """allowed / blocked / shadow counts in BUCKETS buckets of BUCKET_SECONDS each."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._stamp = [-1] * BUCKETS  # which bucket number each slot holds
        self._counts = [[0, 0, 0] for _ in range(BUCKETS)]

    def record(self, column: int) -> None:
        """column: 0 allowed, 1 blocked, 2 shadow (allowed, but the limit would refuse it)."""
        number = int(self.clock() // BUCKET_SECONDS)
        slot = number % BUCKETS
        counts = self._counts[slot]
        if self._stamp[slot] != number:
            self._stamp[slot] = number
            counts[0] = counts[1] = counts[2] = 0
        counts[column] += 1

    def summary(self) -> dict[str, object]:
        """Oldest bucket first; the last one is the bucket in progress."""
        now = int(self.clock() // BUCKET_SECONDS)
        series: dict[str, list[int]] = {name: [] for name in COLUMNS}
        for number in range(now - BUCKETS + 1, now + 1):
            slot = number % BUCKETS
            counts = self._counts[slot] if self._stamp[slot] == number else [0, 0, 0]
            for name, value in zip(COLUMNS, counts, strict=True):
                series[name].append(value)
        totals = {name: sum(values) for name, values in series.items()}
        return {"window_seconds": WINDOW_SECONDS, "bucket_seconds": BUCKET_SECONDS,
                **totals, "series": series}
