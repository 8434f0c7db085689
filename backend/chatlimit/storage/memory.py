"""memory://: the three strategies in this process's memory, the single-container default."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from limits import RateLimitItem

from ..strategies import strategy as lookup
from .base import Lease, Quota, Verdict

log = logging.getLogger("chatlimit.storage.memory")

# (key, amount, window, cost, reading, now) -> (quota, allowed, window the charge went into)
Step = Callable[[str, int, float, int, bool, float], tuple[Quota, bool, float]]
Settle = Callable[[str, float, float, int, float], None]


class MemoryCounter:
    """The three strategies in this process's memory.

    A check never awaits, so one event loop runs each check to completion: exact within the
    process, and blind to every other replica (the bypass this product demonstrates).
    At most `max_keys` keys are kept: past that, the oldest key goes (its client starts a
    fresh window), so a flood of distinct clients costs bounded memory, not the process.

    Laid out for a million users (bench users curve, docs/benchmarks.md):
    - One table per window length, each in the order its entries expire (a new window is
      inserted last), so the sweep, at most once a second, stops at the first live entry:
      it costs the keys that expired, not the keys held (a full scan of two million keys
      took 54 ms, every second).
    - Fixed and sliding window entries are tuples of numbers, which CPython's garbage
      collector stops tracking: lists were walked by every full collection (two million of
      them: 0.20 s each, against 0.002 s for the tuples).
    """

    def __init__(self, strategy: str, clock: Any = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self.max_keys = max_keys
        self.evicted = 0
        self._keys = 0  # in all tables
        # window length -> {key: entry}, oldest window first. Entries, by strategy:
        # fw (count, expires at); mw deque of when each hit ages out, oldest first;
        # swc (start, count, previous count, expires at).
        self._tables: dict[float, dict[str, Any]] = {}
        self._leases: dict[str, dict[str, float]] = {}  # key -> {lease id: expires at}
        self._next_sweep = 0.0
        tag = lookup(strategy).tag
        self._step: Step = getattr(self, f"_step_{tag}")
        self._settle: Settle = getattr(self, f"_settle_{tag}")
        self._expires: Callable[[Any], float] = _EXPIRES[tag]

    def __len__(self) -> int:
        return self._keys + len(self._leases)

    def _table(self, window: float) -> dict[str, Any]:
        table = self._tables.get(window)
        if table is None:
            table = self._tables[window] = {}
        return table

    async def hit(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], costs: Sequence[int],
        lease: Lease | None = None,
    ) -> Verdict:
        return self.check(keys, items, costs, peek=False, lease=lease)

    async def peek(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], lease: Lease | None = None
    ) -> Verdict:
        return self.check(keys, items, (1,) * len(keys), peek=True, lease=lease)

    async def settle(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], windows: Sequence[float],
        deltas: Sequence[int], lease: Lease | None = None,
    ) -> tuple[Quota, ...]:
        """As settle.lua does."""
        now = self._clock()
        if lease is not None:
            held = self._leases.get(lease.key)
            if held is not None:
                held.pop(lease.id, None)
                if not held:
                    del self._leases[lease.key]
        quotas = []
        for key, item, window, delta in zip(keys, items, windows, deltas, strict=True):
            if delta:
                self._settle(key, item.get_expiry(), window, delta, now)
            quotas.append(self._step(key, item.amount, item.get_expiry(), 1, True, now)[0])
        return tuple(quotas)

    async def renew(self, lease: Lease) -> bool:
        """As renew.lua does: an expired lease is not brought back."""
        now = self._clock()
        held = self._leases.get(lease.key)
        if held is None or held.get(lease.id, now) <= now:
            return False
        held[lease.id] = now + lease.ttl
        return True

    async def ping(self) -> bool:
        return True

    def shard(self, key: str) -> str:
        return ""

    async def aclose(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget every count (slowapi's Limiter.reset())."""
        self._tables.clear()
        self._keys = 0
        self._leases.clear()

    def check(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], costs: Sequence[int], *,
        peek: bool, lease: Lease | None = None,
    ) -> Verdict:
        """As admit.lua does: the lease is looked at first and taken last; limits are charged
        in order until one refuses; the limits after it are only read (a refused request uses
        up nothing more), so the answer still knows every limit that would refuse the next
        request."""
        now = self._clock()
        if now >= self._next_sweep:
            self.sweep(now)
        quotas = []
        windows = []
        failed: int | None = None
        streams = None
        if lease is not None:
            streams = self._lease_state(lease, now, peek)
            if streams.remaining < 1 and not peek:
                failed = len(keys)
        step = self._step
        for index, key in enumerate(keys):
            item = items[index]
            quota, allowed, window = step(
                key, item.amount, item.get_expiry(), costs[index], peek or failed is not None, now
            )
            quotas.append(quota)
            windows.append(window)
            if not allowed and failed is None and not peek:
                failed = index
        if lease is not None and streams is not None and not peek and failed is None:
            self._leases.setdefault(lease.key, {})[lease.id] = now + lease.ttl
            streams = Quota(streams.limit, streams.remaining - 1, streams.reset_after)
        if self._keys > self.max_keys:
            self._evict()
        return Verdict(tuple(quotas), failed, tuple(windows), streams)

    def _lease_state(self, lease: Lease, now: float, peek: bool) -> Quota:
        held = self._leases.get(lease.key, {})
        live = [expires for expires in held.values() if expires > now]
        if not peek and len(live) < len(held):
            self._leases[lease.key] = {i: e for i, e in held.items() if e > now}
        reset = min(live) - now if live else 0.0
        return Quota(lease.limit, max(0, lease.limit - len(live)), reset)

    def _evict(self) -> None:
        """Drop the oldest tenth of the keys: each table's first entries are its oldest.

        In one batch, because finding a dict's first key walks past the slots of keys
        deleted before it: one at a time would make every new client cost O(max_keys).
        """
        if not self.evicted:
            log.warning("memory:// holds %d keys (MEMORY_MAX_KEYS): dropping the oldest",
                        self.max_keys)
        excess = self._keys - self.max_keys + self.max_keys // 10
        expires = self._expires
        # The oldest across the tables: by when each entry's window began.
        fronts = [[(expires(entry) - window, key, table)
                   for key, entry in itertools.islice(table.items(), excess)]
                  for window, table in self._tables.items()]
        for _, key, table in itertools.islice(heapq.merge(*fronts), excess):
            del table[key]
        self._keys -= excess
        self.evicted += excess

    def sweep(self, now: float) -> None:
        """Drop the entries that expired: each table from its front, up to its first live one."""
        self._next_sweep = now + 1.0
        expires = self._expires
        for table in self._tables.values():
            gone = []
            for key, entry in table.items():
                if expires(entry) > now:
                    break
                gone.append(key)
            for key in gone:
                del table[key]
            self._keys -= len(gone)
        for key in [k for k, v in self._leases.items() if max(v.values(), default=0) <= now]:
            del self._leases[key]

    def _step_fw(
        self, key: str, amount: int, window: float, cost: int, peek: bool, now: float
    ) -> tuple[Quota, bool, float]:
        table = self._tables.get(window) or self._table(window)
        entry = table.get(key)
        if entry is not None and entry[1] <= now:
            entry = None
            if not peek:
                del table[key]  # re-inserted below, last: the table stays in expiry order
                self._keys -= 1
        count, reset = (entry[0], entry[1] - now) if entry else (0, 0.0)
        allowed = count + cost <= amount
        if peek or not allowed:  # a cost is charged only when it fits, as in fixed_window.lua
            return Quota(amount, max(0, int(amount - count)), reset), allowed, 0.0
        if entry is None:
            expires = now + window
            self._keys += 1
        else:
            expires = entry[1]
        count += cost
        table[key] = (count, expires)
        # Whole numbers, and the charge fitted: what is left is never below zero.
        return Quota(amount, amount - count, expires - now), True, expires

    def _settle_fw(self, key: str, window: float, since: float, delta: int, now: float) -> None:
        table = self._table(window)
        entry = table.get(key)
        if entry is not None and entry[1] == since and entry[1] > now:
            table[key] = (max(0, entry[0] + delta), entry[1])

    def _step_mw(
        self, key: str, amount: int, window: float, cost: int, peek: bool, now: float
    ) -> tuple[Quota, bool, float]:
        table = self._table(window)
        hits = table.get(key)
        if hits is None:
            hits = deque()
        while hits and hits[0] <= now:
            hits.popleft()
        allowed = len(hits) + cost <= amount
        if allowed and not peek and cost:
            hits.extend([now + window] * cost)
            # Last in its table, which stays in the order its newest hits age out.
            if table.pop(key, None) is None:
                self._keys += 1
            table[key] = hits
        count = len(hits)
        reset = 0.0
        if count:
            index = 0 if allowed else count - amount + cost - 1
            reset = max(hits[min(index, count - 1)] - now, 0.001)
        return Quota(amount, max(0, amount - count), reset), allowed, 0.0

    def _settle_mw(self, key: str, window: float, since: float, delta: int, now: float) -> None:
        raise ValueError("moving-window has no weighted entries to settle")

    def _step_swc(
        self, key: str, amount: int, window: float, cost: int, peek: bool, now: float
    ) -> tuple[Quota, bool, float]:
        table = self._table(window)
        state = table.get(key)
        current = previous = 0.0
        start = now
        if state is not None and now < state[0] + 2 * window:
            if now >= state[0] + window:
                start, previous = state[0] + window, state[1]
                # The window moves on every call, peeks and refused hits included (as in
                # limits): the next window then keeps this phase instead of starting anew.
                # Re-inserted last: its start is within a window of the newest entries',
                # so the sweep's early stop keeps it at most a window past its expiry.
                del table[key]
                table[key] = (start, 0, previous, start + 2 * window)
            else:
                start, current, previous = state[0], state[1], state[2]
        elapsed = now - start
        weighted = math.floor(previous * (window - elapsed) / window) + current
        allowed = weighted + cost <= amount
        if allowed and not peek:
            current += cost
            weighted += cost
            if state is None:
                self._keys += 1
            elif state[0] + 2 * window <= now:  # both its windows had ended: in again, last
                del table[key]
            table[key] = (start, current, previous, start + 2 * window)
        reset = 0.0
        if allowed:
            if weighted > 0:
                # Until the weighted count next drops: the previous window's share loses a
                # request, or, when it has none left to lose, the current window ends.
                reset = window - elapsed
                share = math.floor(previous * (window - elapsed) / window)
                if share > 0:
                    reset = max(reset - share * window / previous, 0.001)
        else:
            budget = amount - cost - current
            if budget >= 0:
                reset = window - elapsed - (budget + 1) * window / previous
            else:
                reset = window - elapsed
                if current > 0:
                    reset += max(0.0, window - (amount - cost + 1) * window / current)
            reset = max(reset, 0.001)
        return Quota(amount, max(0, int(amount - weighted)), reset), allowed, start

    def _settle_swc(
        self, key: str, window: float, since: float, delta: int, now: float
    ) -> None:
        table = self._table(window)
        state = table.get(key)
        if state is not None and state[0] == since and now < since + window:
            table[key] = (state[0], max(0, state[1] + delta), state[2], state[3])


# When an entry's last window ends, by strategy tag (see MemoryCounter._tables).
_EXPIRES: dict[str, Callable[[Any], float]] = {
    "fw": lambda entry: entry[1],
    "mw": lambda hits: hits[-1] if hits else 0.0,
    "swc": lambda entry: entry[3],
}
