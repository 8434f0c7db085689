"""Where the counting happens: one atomic step per request, in process memory or in Redis.

slowapi parses the limits and decorates the route; a Counter executes the chosen strategy for
all of a request's limits at once. Against Redis that is one EVALSHA round trip on an asyncio
connection, so a slow Redis never blocks the event loop and the headers need no second trip.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from limits import RateLimitItem

from .redis_clients import redis_client  # one server, Sentinel or Cluster

log = logging.getLogger("chatlimit.counters")

STRATEGY_TAGS = {"fixed-window": "fw", "moving-window": "mw", "sliding-window-counter": "swc"}


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

    @property
    def quota(self) -> Quota:
        """The tightest limit: the one that refused, else the one with least left."""
        if self.failed is not None:
            return self.quotas[self.failed]
        return min(self.quotas, key=lambda q: (q.remaining, -q.reset_after))


class StorageUnavailable(Exception):
    """The shared storage did not answer in time; the fail mode decides what happens."""


class Counter(Protocol):
    kind: str

    async def hit(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], cost: int
    ) -> Verdict: ...

    async def peek(self, keys: Sequence[str], items: Sequence[RateLimitItem]) -> Verdict: ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...

    def shard(self, key: str) -> str:
        """The part of the storage that holds `key` and can fail on its own: one Redis Cluster
        primary; "" where the storage stands or falls as a whole."""
        ...


def storage_key(strategy: str, identity: str, scope: str, item: RateLimitItem) -> str:
    """chatlimit:{address}:user:fw:chat:3/1minute for identity "address:user", and
    chatlimit:{address}:fw:chat:30/1minute for identity "address" (the per-address ceiling).

    The strategy is part of the key, so switching strategies on a shared Redis never meets
    a key of the wrong type. The braces hold the address part only, so a user's keys and their
    address's ceiling share one cluster slot and one script can count them together.
    """
    return key_for(identity, key_suffix(strategy, scope, item))


def key_suffix(strategy: str, scope: str, item: RateLimitItem) -> str:
    """The part of a storage key that depends on the route and limit only: "fw:chat:3/1minute"."""
    tag = STRATEGY_TAGS[strategy]
    return f"{tag}:{scope}:{item.amount}/{item.multiples}{item.GRANULARITY.name}"


def key_for(identity: str, suffix: str) -> str:
    slot, _, rest = identity.partition(":")
    return f"chatlimit:{{{slot}}}:{rest}:{suffix}" if rest else f"chatlimit:{{{slot}}}:{suffix}"


def _window_ms(item: RateLimitItem) -> int:
    return int(item.get_expiry() * 1000)


# ---------------------------------------------------------------------------------------------
# In-process memory: the single-container default.


class MemoryCounter:
    """The three strategies in this process's memory.

    A check never awaits, so one event loop runs each check to completion: exact within the
    process, and blind to every other replica (the bypass this product demonstrates).
    Expired entries are swept at most once a second, so memory returns after each window.
    At most `max_keys` keys are kept: past that, the oldest key goes (its client starts a
    fresh window), so a flood of distinct clients costs bounded memory, not the process.
    """

    kind = "memory"

    def __init__(self, strategy: str, clock: Any = time.monotonic, max_keys: int = 100_000) -> None:
        self._strategy = strategy
        self._clock = clock
        self.max_keys = max_keys
        self.evicted = 0
        self._fixed: dict[str, list[float]] = {}  # key -> [count, expires_at]
        self._moving: dict[str, deque[float]] = {}  # key -> when each hit ages out, oldest first
        self._sliding: dict[str, list[float]] = {}  # key -> [start, count, previous, expires]
        self._next_sweep = 0.0
        self._step = {
            "fixed-window": self._fixed_window,
            "moving-window": self._moving_window,
            "sliding-window-counter": self._sliding_window,
        }[strategy]
        stores: dict[str, dict[str, Any]] = {
            "fixed-window": self._fixed, "moving-window": self._moving,
            "sliding-window-counter": self._sliding,
        }
        self._store = stores[strategy]  # the one this strategy fills

    def __len__(self) -> int:
        return len(self._fixed) + len(self._moving) + len(self._sliding)

    async def hit(self, keys: Sequence[str], items: Sequence[RateLimitItem], cost: int) -> Verdict:
        return self.check(keys, items, cost, peek=False)

    async def peek(self, keys: Sequence[str], items: Sequence[RateLimitItem]) -> Verdict:
        return self.check(keys, items, 1, peek=True)

    async def ping(self) -> bool:
        return True

    def shard(self, key: str) -> str:
        return ""

    async def aclose(self) -> None:
        self._fixed.clear()
        self._moving.clear()
        self._sliding.clear()

    def check(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], cost: int, *, peek: bool
    ) -> Verdict:
        now = self._clock()
        if now >= self._next_sweep:
            self.sweep(now)
        quotas = []
        failed: int | None = None
        for index, (key, item) in enumerate(zip(keys, items, strict=True)):
            quota, allowed = self._step(key, item.amount, item.get_expiry(), cost, peek, now)
            quotas.append(quota)
            if not allowed and not peek:
                failed = index
                break
        if len(self._store) > self.max_keys:
            self._evict()
        return Verdict(tuple(quotas), failed)

    def _evict(self) -> None:
        """Drop the oldest tenth of the keys (dicts keep insertion order: first is oldest).

        In one batch, because finding a dict's first key walks past the slots of keys
        deleted before it: one at a time would make every new client cost O(max_keys).
        """
        store = self._store
        if not self.evicted:
            log.warning("memory:// holds %d keys (MEMORY_MAX_KEYS): dropping the oldest",
                        self.max_keys)
        excess = len(store) - self.max_keys + self.max_keys // 10
        for key in list(itertools.islice(store, excess)):
            del store[key]
        self.evicted += excess

    def sweep(self, now: float) -> None:
        self._next_sweep = now + 1.0
        for key in [k for k, v in self._fixed.items() if v[1] <= now]:
            del self._fixed[key]
        for key in [k for k, v in self._moving.items() if not v or v[-1] <= now]:
            del self._moving[key]
        for key in [k for k, v in self._sliding.items() if v[3] <= now]:
            del self._sliding[key]

    def _fixed_window(
        self, key: str, amount: int, window: float, cost: int, peek: bool, now: float
    ) -> tuple[Quota, bool]:
        entry = self._fixed.get(key)
        if entry is not None and entry[1] <= now:
            entry = None
            if not peek:
                del self._fixed[key]  # re-inserted below, last: the order stays oldest first
        if peek:
            count, reset = (entry[0], entry[1] - now) if entry else (0, 0.0)
        else:
            if entry is None:
                entry = self._fixed[key] = [0, now + window]
            entry[0] += cost
            count, reset = entry[0], entry[1] - now
        return Quota(amount, max(0, int(amount - count)), reset), count <= amount

    def _moving_window(
        self, key: str, amount: int, window: float, cost: int, peek: bool, now: float
    ) -> tuple[Quota, bool]:
        hits = self._moving.get(key)
        if hits is None:
            hits = deque()
            if not peek:
                self._moving[key] = hits
        while hits and hits[0] <= now:
            hits.popleft()
        allowed = len(hits) + cost <= amount
        if allowed and not peek:
            hits.extend([now + window] * cost)
        count = len(hits)
        reset = 0.0
        if count:
            index = 0 if allowed else count - amount + cost - 1
            reset = max(hits[min(index, count - 1)] - now, 0.001)
        return Quota(amount, max(0, amount - count), reset), allowed

    def _sliding_window(
        self, key: str, amount: int, window: float, cost: int, peek: bool, now: float
    ) -> tuple[Quota, bool]:
        state = self._sliding.get(key)
        current = previous = 0.0
        start = now
        if state is not None and now < state[0] + 2 * window:
            if now >= state[0] + window:
                start, previous = state[0] + window, state[1]
            else:
                start, current, previous = state[0], state[1], state[2]
        elapsed = now - start
        weighted = math.floor(previous * (window - elapsed) / window) + current
        allowed = weighted + cost <= amount
        if allowed and not peek:
            current += cost
            weighted += cost
            self._sliding[key] = [start, current, previous, start + 2 * window]
        reset = 0.0
        if allowed:
            if weighted > 0:
                reset = window - elapsed
        else:
            budget = amount - cost - current
            if budget >= 0:
                reset = window - elapsed - (budget + 1) * window / previous
            else:
                reset = window - elapsed
                if current > 0:
                    reset += max(0.0, window - (amount - cost + 1) * window / current)
            reset = max(reset, 0.001)
        return Quota(amount, max(0, int(amount - weighted)), reset), allowed


# ---------------------------------------------------------------------------------------------
# Redis: shared by every replica.

_SCRIPT_FILES = {
    "fixed-window": "fixed_window.lua",
    "moving-window": "moving_window.lua",
    "sliding-window-counter": "sliding_window_counter.lua",
}


def lua_source(strategy: str) -> str:
    return resources.files("chatlimit").joinpath("lua", _SCRIPT_FILES[strategy]).read_text()


def script_commands(strategy: str) -> set[str]:
    """The commands a strategy's script runs inside Redis (lower case)."""
    return {m.lower() for m in re.findall(r"redis\.call\('(\w+)'", lua_source(strategy))}


def round_trips(commandstats: dict[str, Any], strategy: str) -> int:
    """Client round trips in an INFO commandstats snapshot taken after CONFIG RESETSTAT.

    Redis counts the commands a script runs as calls too; chatlimit's client never sends those
    itself, so whatever is not one of them (nor the measuring connection's own CONFIG and
    INFO) went over the wire.
    """
    inside = script_commands(strategy)
    total = 0
    for name, stats in commandstats.items():
        command = name.removeprefix("cmdstat_").split("|")[0]
        if command not in inside and command not in ("config", "info"):
            total += int(stats["calls"])
    return total


class RedisCounter:
    """The three strategies in Redis, each a Lua script: one EVALSHA per request."""

    kind = "redis"

    def __init__(self, client: Any, strategy: str) -> None:
        from redis.exceptions import RedisError

        self._client = client
        self._script = client.register_script(lua_source(strategy))
        # RuntimeError: under uvloop, redis-py writing to a connection whose server just died
        # (a Sentinel failover) gets "unable to perform operation on <TCPTransport closed=True>".
        self._errors: tuple[type[BaseException], ...] = (
            RedisError, OSError, TimeoutError, RuntimeError,
        )

    async def hit(self, keys: Sequence[str], items: Sequence[RateLimitItem], cost: int) -> Verdict:
        return await self._run(keys, items, cost, peek=False)

    async def peek(self, keys: Sequence[str], items: Sequence[RateLimitItem]) -> Verdict:
        return await self._run(keys, items, 1, peek=True)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except self._errors:
            return False

    async def aclose(self) -> None:
        await self._client.aclose()

    def shard(self, key: str) -> str:
        shard_of = getattr(self._client, "shard_of", None)  # a Redis Cluster client
        return str(shard_of(key)) if shard_of else ""

    async def _run(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], cost: int, *, peek: bool
    ) -> Verdict:
        args: list[int] = [cost, 1 if peek else 0]
        for item in items:
            args += [item.amount, _window_ms(item)]
        try:
            reply = await self._script(keys=list(keys), args=args)
        except self._errors as exc:
            raise StorageUnavailable(type(exc).__name__) from None
        failed = int(reply[0])
        quotas = tuple(
            Quota(item.amount, int(reply[1 + 2 * i]), int(reply[2 + 2 * i]) / 1000)
            for i, item in enumerate(items[: (len(reply) - 1) // 2])
        )
        return Verdict(quotas, failed - 1 if failed else None)


def build_counter(
    storage_uri: str, strategy: str, *, connect_timeout: float = 0.25, socket_timeout: float = 0.25,
    memory_max_keys: int = 100_000,
) -> Counter:
    scheme = storage_uri.partition("://")[0].lower()
    if scheme == "memory":
        return MemoryCounter(strategy, max_keys=memory_max_keys)
    from .resp import LeanRedis  # one plain server: the lean pipelined client (see resp.py)

    timeouts = {"connect_timeout": connect_timeout, "socket_timeout": socket_timeout}
    client = LeanRedis.from_uri(storage_uri, **timeouts) or redis_client(storage_uri, **timeouts)
    return RedisCounter(client, strategy)
