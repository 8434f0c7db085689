"""The fail mode: what the limiter does while its storage does not answer.

`open` counts in a fallback (this replica's own memory, injected) and marks the answer
degraded; `closed` raises StorageUnavailable, which the web layer turns into a 503. Either way
a storage outage is a designed answer, never a 500, and costs one probe per second instead of
every request waiting out the socket timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from limits import RateLimitItem

from ..observe import Observer
from ..storage import Counter, Lease, MemoryCounter, Quota, StorageUnavailable, Verdict

log = logging.getLogger("chatlimit.limiter")

# While storage is failing, try it again at most this often (the rest go to the fallback).
STORAGE_RETRY_SECONDS = 1.0
# A settlement that cannot reach the storage is tried this many times, this far apart, then
# given up with one log line: its lease expires within the TTL, its reservation stays charged.
SETTLE_ATTEMPTS = 3
SETTLE_RETRY_SECONDS = 0.2


class Breaker:
    """A Counter guarded by the fail mode, with a circuit per storage shard."""

    def __init__(
        self, counter: Counter, fallback: Counter, fail_mode: str = "open",
        observer: Observer | None = None,
    ) -> None:
        self.counter = counter
        self.fallback = fallback
        self.fail_mode = fail_mode
        self.observer = observer or Observer()
        # Per shard of the storage (see Counter.shard), when to probe it again while it fails:
        # one lost Redis Cluster primary must not push the clients of the others into the
        # fail mode. A single Redis or a Sentinel primary is one shard, "".
        self._down: dict[str, float] = {}
        self._unsettled = False  # a settlement was given up; logged once until one succeeds

    def count_now(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], costs: Sequence[int],
        *, peek: bool, lease: Lease | None = None,
    ) -> Verdict | None:
        """The verdict at once, where the storage never waits and is not failing (memory://,
        not a subclass's, which may count differently in its hit()): the hot path needs no
        coroutine then. None otherwise: ask count()."""
        counter = self.counter
        if type(counter) is not MemoryCounter or self._down:
            return None
        if peek:  # as MemoryCounter.peek: a peek reads every limit at a cost of one
            costs = (1,) * len(keys)
        if self.observer.metrics is None:  # nothing records the call
            return counter.check(keys, items, costs, peek=peek, lease=lease)
        started = time.monotonic()
        verdict = counter.check(keys, items, costs, peek=peek, lease=lease)
        self.observer.storage_call("ok", time.monotonic() - started)
        return verdict

    async def count(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], costs: Sequence[int],
        *, peek: bool, lease: Lease | None = None,
    ) -> tuple[Verdict, bool]:
        """The storage's verdict and False, or the fallback's and True (degraded)."""
        verdict = self.count_now(keys, items, costs, peek=peek, lease=lease)
        if verdict is not None:
            return verdict, False
        now = time.monotonic()
        down = self._down
        # Which shard the keys live on matters only while one is down (one script's keys
        # share one slot): the usual answer costs nothing to find.
        shard = self.counter.shard(keys[0]) if down else ""
        retry_at = down.get(shard) if down else None
        if retry_at is None or now >= retry_at:
            if retry_at is not None:
                # One probe at a time: requests arriving while it waits on a hung Redis go
                # straight to the fail mode instead of each waiting out the socket timeout.
                down[shard] = now + STORAGE_RETRY_SECONDS
            try:
                if peek:
                    verdict = await self.counter.peek(keys, items, lease)
                else:
                    verdict = await self.counter.hit(keys, items, costs, lease)
            except StorageUnavailable as exc:
                shard = self.counter.shard(keys[0])
                # The storages name the exception they met (TimeoutError, ConnectionError...).
                self.observer.storage_call("timeout" if "Timeout" in str(exc) else "error",
                                           time.monotonic() - now)
                if not down:
                    self.observer.degraded(True)
                    log.warning(
                        "rate-limit storage unreachable (%s): %s", exc,
                        "failing open with this replica's own memory counts"
                        if self.fail_mode == "open"
                        else "failing closed with 503",
                        extra={"event": "storage_unreachable"},
                    )
                down[shard] = time.monotonic() + STORAGE_RETRY_SECONDS
            else:
                self.observer.storage_call("ok", time.monotonic() - now)
                if down:  # an answer also proves the storage as a whole ("") reachable
                    recovered = [down.pop(s, None) for s in {shard, ""}]
                    if any(r is not None for r in recovered) and not down:
                        self.observer.degraded(False)
                        log.warning("rate-limit storage reachable again: shared limiting "
                                    "resumed", extra={"event": "storage_reachable"})
                return verdict, False
        if self.fail_mode == "closed":
            raise StorageUnavailable("storage unreachable")
        if peek:
            return await self.fallback.peek(keys, items, lease), True
        self.observer.storage_call("fallback")
        return await self.fallback.hit(keys, items, costs, lease), True

    async def settle(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], windows: Sequence[float],
        deltas: Sequence[int], lease: Lease | None, *, degraded: bool,
    ) -> tuple[Quota, ...] | None:
        """Settle where the admission was counted (the fallback when it was degraded). Never
        raises: a storage that stays unreachable costs a log line, not a 500; the lease then
        expires by itself within its TTL. None when it could not be settled."""
        counter = self.fallback if degraded else self.counter
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                quotas = await counter.settle(keys, items, windows, deltas, lease)
            except StorageUnavailable as exc:
                if attempt + 1 == SETTLE_ATTEMPTS:
                    if not self._unsettled:
                        log.warning(
                            "settlement not stored (%s): reservations stay charged and stream "
                            "leases expire within their TTL until the storage answers", exc,
                        )
                    self._unsettled = True
                    return None
                await asyncio.sleep(SETTLE_RETRY_SECONDS)
            else:
                self._unsettled = False
                return quotas
        return None

    async def renew(self, lease: Lease, *, degraded: bool) -> bool:
        """A heartbeat; False when the lease is gone or the storage did not answer."""
        try:
            return await (self.fallback if degraded else self.counter).renew(lease)
        except StorageUnavailable:
            return False
