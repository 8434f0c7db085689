"""Redis: the three strategies as Lua scripts (lua/), shared by every replica."""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from limits import RateLimitItem

from ..strategies import strategy as lookup
from .base import Quota, StorageUnavailable, Verdict


def lua_source(strategy: str) -> str:
    lua = lookup(strategy).lua
    return resources.files("chatlimit.storage").joinpath("lua", lua).read_text()


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

    def __init__(self, client: Any, strategy: str) -> None:
        from redis.exceptions import RedisError

        self._client = client
        self._script = client.register_script(lua_source(strategy))
        # RuntimeError: under uvloop, redis-py writing to a connection whose server just died
        # (a Sentinel failover) gets "unable to perform operation on <TCPTransport closed=True>".
        self._errors: tuple[type[BaseException], ...] = (
            RedisError, OSError, TimeoutError, RuntimeError,
        )

    async def hit(
        self, keys: Sequence[str], items: Sequence[RateLimitItem], costs: Sequence[int]
    ) -> Verdict:
        return await self._run(keys, items, costs, peek=False)

    async def peek(self, keys: Sequence[str], items: Sequence[RateLimitItem]) -> Verdict:
        return await self._run(keys, items, (1,) * len(keys), peek=True)

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
        self, keys: Sequence[str], items: Sequence[RateLimitItem], costs: Sequence[int], *,
        peek: bool,
    ) -> Verdict:
        args: list[int] = [1 if peek else 0]
        for item, cost in zip(items, costs, strict=True):
            args += [item.amount, int(item.get_expiry() * 1000), cost]
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


