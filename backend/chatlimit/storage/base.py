"""What every storage shares: the Counter protocol and what a count answers.

A Counter executes one strategy for all of a request's limits at once: one atomic step per
request, in process memory (memory.py) or in Redis (redis.py, one EVALSHA round trip on an
asyncio connection, so a slow Redis never blocks the event loop and the headers need no
second trip). Shaped like `limits`' storage/, plus what limits lacks: every limit of a request
in one atomic call, and a bounded memory store.

Token budgets are limits like the others, charged a reservation as their cost (weighted
entries), and a reply in flight holds a Lease; both are decided in the same admission call as
the request limits. When the reply ends, one `settle` call charges what was used instead of
what was reserved, in the window the reservation went into only, and drops the lease.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from limits import RateLimitItem


def ceil_seconds(seconds: float) -> int:
    """Whole seconds, rounding up, after dropping float noise below a millisecond (what
    math.ceil(round(seconds, 3)) gives, without round()'s cost on every header)."""
    whole = math.ceil(seconds)
    return whole - 1 if whole - seconds > 0.9995 else whole


# Quota, Verdict and the limiter's Decision are built on every request: plain slotted
# dataclasses, treated as immutable, since a frozen one's __init__ costs three times as much
# (object.__setattr__ per field).
@dataclass(slots=True)
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
class Lease:
    """A slot for one reply in flight: member `id` of the user's lease set `key`, which holds
    at most `limit` live members. It expires `ttl` seconds after it was taken or last renewed,
    so a replica that dies mid-stream gives its slots back within the TTL."""

    key: str
    id: str
    limit: int
    ttl: float


@dataclass(slots=True)
class Verdict:
    """The outcome of one hit (or peek) over all of a request's limits (and lease)."""

    quotas: tuple[Quota, ...]
    # Index of the limit that refused the request; len(quotas) when no stream slot was free.
    failed: int | None = None
    # Per limit, the window a hit's charge went into (opaque; 0 when nothing was charged):
    # settle() corrects a reservation only while that window is the current one.
    windows: tuple[float, ...] = ()
    streams: Quota | None = None  # free stream slots, when a lease was asked for

    @property
    def allowed(self) -> bool:
        return self.failed is None

    @property
    def refused_streams(self) -> bool:
        return self.failed is not None and self.failed == len(self.quotas)


class StorageUnavailable(Exception):
    """The shared storage did not answer in time; the fail mode decides what happens."""


class Counter(Protocol):
    """One strategy over all of a request's limits. `costs` holds each limit's own cost."""

    async def hit(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], costs: Sequence[int],
        lease: Lease | None = None,
    ) -> Verdict:
        """Charge every limit (in order, until one refuses) and take the lease, atomically."""
        ...

    async def peek(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], lease: Lease | None = None
    ) -> Verdict: ...

    async def settle(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], windows: Sequence[float],
        deltas: Sequence[int], lease: Lease | None = None,
    ) -> tuple[Quota, ...]:
        """Add `deltas` (used minus reserved) to the limits whose window is still the one the
        reservation went into, and drop the lease; answer each limit's quota afterwards."""
        ...

    async def renew(self, lease: Lease) -> bool:
        """Push the lease's expiry one TTL ahead; False when it had already expired."""
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...

    def shard(self, key: str) -> str:
        """The part of the storage that holds `key` and can fail on its own: one Redis Cluster
        primary; "" where the storage stands or falls as a whole."""
        ...
