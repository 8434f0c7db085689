"""Redis: the three strategies as Lua scripts (lua/), shared by every replica.

Each script is put together from pieces: common.lua (Redis time, stream leases), the strategy's
own step (and settle) functions, then the driver for what the call does: admit.lua for a hit or
a peek, settle.lua when a reply ends, renew.lua for a lease's heartbeat.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from limits import RateLimitItem

from ..strategies import strategy as lookup
from .base import Lease, Quota, StorageUnavailable, Verdict


def _lua(name: str) -> str:
    return resources.files("chatlimit.storage").joinpath("lua", name).read_text()


def lua_source(strategy: str, driver: str = "admit.lua") -> str:
    """The script a strategy runs for `driver` (admit.lua, settle.lua or renew.lua)."""
    own = _lua(lookup(strategy).lua) if driver != "renew.lua" else ""
    return "\n".join((_lua("common.lua"), own, _lua(driver)))


def script_commands(strategy: str) -> set[str]:
    """The commands a strategy's scripts run inside Redis (lower case)."""
    sources = "".join(lua_source(strategy, d) for d in ("admit.lua", "settle.lua", "renew.lua"))
    return {m.lower() for m in re.findall(r"redis\.call\('(\w+)'", sources)}


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

    def __init__(self, client: Any, strategy: str) -> None:
        from redis.exceptions import RedisError

        self._client = client
        self._script = client.register_script(lua_source(strategy))
        self._settle = client.register_script(lua_source(strategy, "settle.lua"))
        self._renew = client.register_script(lua_source(strategy, "renew.lua"))
        # RuntimeError: under uvloop, redis-py writing to a connection whose server just died
        # (a Sentinel failover) gets "unable to perform operation on <TCPTransport closed=True>".
        self._errors: tuple[type[BaseException], ...] = (
            RedisError, OSError, TimeoutError, RuntimeError,
        )

    async def hit(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], costs: Sequence[int],
        lease: Lease | None = None,
    ) -> Verdict:
        # The hot path: the script awaited here, no helper coroutines.
        try:
            reply = await self._script(keys=[lease.key, *keys] if lease else keys,
                                       args=_admit_args(items, costs, lease, peek=False))
        except self._errors as exc:
            raise StorageUnavailable(type(exc).__name__) from None
        return _verdict(reply, items, lease)

    async def peek(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], lease: Lease | None = None
    ) -> Verdict:
        args = _admit_args(items, (1,) * len(items), lease, peek=True)
        reply = await self._call(self._script, [lease.key, *keys] if lease else list(keys), args)
        return _verdict(reply, items, lease)

    async def settle(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], windows: Sequence[float],
        deltas: Sequence[int], lease: Lease | None = None,
    ) -> tuple[Quota, ...]:
        args: list[int | str] = [1, lease.id] if lease else [0, ""]
        for item, window, delta in zip(items, windows, deltas, strict=True):
            args += [item.amount, int(item.get_expiry() * 1000), int(window), delta]
        all_keys = [lease.key, *keys] if lease else list(keys)
        reply = await self._call(self._settle, all_keys, args)
        return tuple(
            Quota(item.amount, int(reply[2 * i]), int(reply[2 * i + 1]) / 1000)
            for i, item in enumerate(items)
        )

    async def renew(self, lease: Lease) -> bool:
        reply = await self._call(self._renew, [lease.key], [lease.id, int(lease.ttl * 1000)])
        return bool(int(reply))

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

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except self._errors as exc:
            raise StorageUnavailable(type(exc).__name__) from None


def _admit_args(items: Sequence[RateLimitItem], costs: Sequence[int], lease: Lease | None,
                *, peek: bool) -> list[int | str]:
    """admit.lua's ARGV: peek, the lease (limit, id, TTL ms), then per limit its amount,
    window (ms) and cost."""
    args: list[int | str] = [1 if peek else 0]
    args += [lease.limit, lease.id, int(lease.ttl * 1000)] if lease else [0, "", 0]
    for item, cost in zip(items, costs, strict=True):
        args += [item.amount, int(item.get_expiry() * 1000), cost]
    return args


def _verdict(reply: Sequence[Any], items: Sequence[RateLimitItem], lease: Lease | None) -> Verdict:
    """admit.lua's answer: the limit that refused (1-based, 0 for none), the lease's free slots
    and reset, then per limit its remaining, reset (ms) and the window it charged."""
    failed = int(reply[0])
    quotas = []
    windows = []
    at = 3
    for item in items:  # a loop: tuple() over generators costs twice as much on every request
        quotas.append(Quota(item.amount, int(reply[at]), int(reply[at + 1]) / 1000))
        windows.append(float(reply[at + 2]))
        at += 3
    streams = Quota(lease.limit, int(reply[1]), int(reply[2]) / 1000) if lease else None
    return Verdict(tuple(quotas), failed - 1 if failed else None, tuple(windows), streams)
