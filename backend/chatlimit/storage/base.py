"""What every storage shares: the Counter protocol and what a count answers.

A Counter executes one strategy for all of a request's limits at once: one atomic step per
request, in process memory (memory.py) or in Redis (redis.py, one EVALSHA round trip on an
asyncio connection, so a slow Redis never blocks the event loop and the headers need no
second trip). Shaped like `limits`' storage/, plus what limits lacks: every limit of a request
in one atomic call, and a bounded memory store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from limits import RateLimitItem


def ceil_seconds(seconds: float) -> int:
    """Whole seconds, rounding up, after dropping float noise below a millisecond."""
    return math.ceil(round(seconds, 3))


@dataclass(frozen=True, slots=True)
class Quota:
    """One limit as the caller stands now."""

    limit: int
    remaining: int
    reset_after: float  # seconds until the quota next grows

    def as_dict(self) -> dict[str, int]:
        return {
            "limit": self.limit,
            "remaining": self.remaining,
            "reset_after": ceil_seconds(self.reset_after),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one hit (or peek) over all of a request's limits."""

    quotas: tuple[Quota, ...]
    failed: int | None = None  # index of the limit that refused the request

    @property
    def allowed(self) -> bool:
        return self.failed is None


class StorageUnavailable(Exception):
    """The shared storage did not answer in time; the fail mode decides what happens."""


class Counter(Protocol):
    """One strategy over all of a request's limits. `costs` holds each limit's own cost."""

    async def hit(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], costs: Sequence[int]
    ) -> Verdict: ...

    async def peek(self, keys: Sequence[str], items: Sequence[RateLimitItem]) -> Verdict: ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...

    def shard(self, key: str) -> str:
        """The part of the storage that holds `key` and can fail on its own: one Redis Cluster
        primary; "" where the storage stands or falls as a whole."""
        ...
