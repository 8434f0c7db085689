"""Each strategy exists twice, in Python for memory:// (storage/memory.py) and in Lua for Redis
(storage/lua/): the same hit and peek sequences go to both, and every Verdict and Quota agree.

Both run on one controlled clock, so window edges are hit to the millisecond: MemoryCounter
takes it as its clock, and the Lua scripts run on a real redis-server with a shim prepended
that answers TIME, PTTL, PEXPIRE and PEXPIRETIME from that clock (key expiry kept in a side
hash). Everything else in the scripts, and RedisCounter's reading of their replies, is the
real code.

Deliberate differences, not compared: `windows` (opaque: seconds in memory, ms in Redis; only
whether a charge went in is compared), and `reset_after` within a millisecond (Lua answers
whole milliseconds).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis.asyncio
from limits import RateLimitItem, parse

from chatlimit.storage import MemoryCounter, Verdict
from chatlimit.storage import redis as redis_storage
from chatlimit.storage.redis import RedisCounter

from ..support import STRATEGIES

pytestmark = [pytest.mark.integration, pytest.mark.redis]

CLOCK_KEY = "parity:clock"
SHIM = r"""
-- Test shim (tests/integration/test_strategy_parity.py): Redis time and key expiry follow
-- the milliseconds stored in parity:clock.
local function sim_now() return tonumber(redis.call('GET', 'parity:clock')) end
local function sim_expire_due(key)
  local at = redis.call('HGET', 'parity:expiry', key)
  if at and tonumber(at) <= sim_now() then
    redis.call('DEL', key)
    redis.call('HDEL', 'parity:expiry', key)
  end
end
local function call(command, key, ...)
  if command == 'TIME' then
    local ms = sim_now()
    return {tostring(math.floor(ms / 1000)), tostring((ms % 1000) * 1000)}
  end
  sim_expire_due(key)
  if command == 'PTTL' or command == 'PEXPIRETIME' then
    if redis.call('EXISTS', key) == 0 then return -2 end
    local at = redis.call('HGET', 'parity:expiry', key)
    if not at then return -1 end
    if command == 'PTTL' then return tonumber(at) - sim_now() end
    return tonumber(at)
  elseif command == 'PEXPIRE' then
    redis.call('HSET', 'parity:expiry', key, sim_now() + tonumber((...)))
    return 1
  end
  return redis.call(command, key, ...)
end
"""
START_MS = 1_000_000_000  # well away from zero: a window named 0 would read as "no charge"

Op = tuple[Any, ...]  # ("hit", costs), ("peek",), ("wait", ms)


def simulated(source: str) -> str:
    return SHIM + source.replace("redis.call(", "call(")


class Pair:
    """MemoryCounter and RedisCounter (shimmed) for one strategy, on one clock."""

    def __init__(self, strategy: str, client: redis.asyncio.Redis, ms: int = START_MS) -> None:
        self.ms = ms
        self.client = client
        self.memory = MemoryCounter(strategy, clock=lambda: self.ms / 1000)
        self.redis = RedisCounter(client, strategy)

    async def run(self, keys: Sequence[str], items: Sequence[RateLimitItem],
                  op: Op) -> tuple[Verdict, Verdict] | None:
        if op[0] == "wait":
            self.ms += op[1]
            return None
        await self.client.set(CLOCK_KEY, self.ms)
        if op[0] == "hit":
            return (await self.memory.hit(keys, items, op[1]),
                    await self.redis.hit(keys, items, op[1]))
        return await self.memory.peek(keys, items), await self.redis.peek(keys, items)


def assert_agree(memory: Verdict, redis_verdict: Verdict, where: str) -> None:
    assert memory.failed == redis_verdict.failed, where
    assert len(memory.quotas) == len(redis_verdict.quotas), where
    for mine, theirs in zip(memory.quotas, redis_verdict.quotas, strict=True):
        assert (mine.limit, mine.remaining) == (theirs.limit, theirs.remaining), where
        assert abs(mine.reset_after - theirs.reset_after) <= 0.0015, (where, mine, theirs)
    assert [bool(w) for w in memory.windows] == [bool(w) for w in redis_verdict.windows], where


@pytest.fixture
def shimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = redis_storage.lua_source
    monkeypatch.setattr(redis_storage, "lua_source",
                        lambda strategy, driver="admit.lua": simulated(real(strategy, driver)))


def replay(redis_url: str, strategy: str, limits: Sequence[str], ops: Sequence[Op]) -> int:
    """Send `ops` to both counters; returns how many verdicts were compared."""
    items = [parse(limit) for limit in limits]
    run = uuid.uuid4().hex[:8]  # fresh keys per sequence: the redis-server is shared
    keys = [f"parity:{{{run}}}:{strategy}:{n}" for n in range(len(items))]

    async def main() -> int:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            pair = Pair(strategy, client)
            compared = 0
            for step, op in enumerate(ops):
                answered = await pair.run(keys, items, op)
                if answered is not None:
                    assert_agree(*answered, f"{strategy} {limits} step {step} {op}: {ops[:step]}")
                    compared += 1
            return compared
        finally:
            await client.aclose()

    return asyncio.run(main())


def edges(window_ms: int) -> list[Op]:
    """A window filled, refused, peeked, then its edges to the millisecond, and an idle gap."""
    return [
        ("hit", (1,)), ("wait", 10), ("hit", (1,)), ("peek",), ("hit", (1,)), ("hit", (1,)),
        ("peek",), ("wait", window_ms - 11), ("peek",), ("hit", (1,)), ("wait", 1), ("peek",),
        ("hit", (1,)), ("wait", window_ms // 2), ("peek",), ("hit", (1,)), ("hit", (1,)),
        ("wait", window_ms // 2 - 1), ("hit", (1,)), ("wait", 1), ("hit", (1,)),
        ("wait", 3 * window_ms), ("peek",), ("hit", (1,)), ("peek",),
    ]


CASES = {
    "one limit, edges": (["3/10 second"], edges(10_000)),
    "cost > 1": (["5/10 second"], [
        ("hit", (2,)), ("hit", (2,)), ("hit", (2,)), ("peek",), ("hit", (1,)), ("hit", (1,)),
        ("wait", 5_000), ("hit", (3,)), ("peek",), ("wait", 5_000), ("hit", (3,)), ("hit", (2,)),
        ("wait", 2_500), ("peek",), ("hit", (6,)), ("peek",),
    ]),
    "several limits": (["2/10 second", "3/minute"], [
        ("hit", (1, 1)), ("hit", (1, 1)), ("hit", (1, 1)), ("peek",), ("wait", 10_000),
        ("peek",), ("hit", (1, 1)), ("hit", (1, 1)), ("peek",), ("wait", 10_000),
        ("hit", (1, 1)), ("peek",), ("wait", 40_000), ("peek",), ("hit", (1, 1)),
    ]),
    "peeks only, then hits": (["3/10 second"], [
        ("peek",), ("wait", 4_000), ("peek",), ("hit", (1,)), ("wait", 12_000), ("peek",),
        ("wait", 12_000), ("peek",), ("hit", (1,)), ("hit", (1,)), ("peek",),
    ]),
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("case", CASES)
def test_memory_and_lua_agree_on_window_edges_costs_and_several_limits(
    shimmed: None, redis_url: str, strategy: str, case: str
) -> None:
    limits, ops = CASES[case]
    assert replay(redis_url, strategy, limits, ops) == sum(op[0] != "wait" for op in ops)


def random_ops(seed: int, limits: Sequence[str], steps: int) -> Iterator[Op]:
    rng = random.Random(seed)
    windows = [int(parse(limit).get_expiry() * 1000) for limit in limits]
    for _ in range(steps):
        roll = rng.random()
        if roll < 0.5:
            yield ("hit", tuple(rng.choice((1, 1, 1, 2, 3)) for _ in limits))
        elif roll < 0.7:
            yield ("peek",)
        else:
            window = rng.choice(windows)
            yield ("wait", rng.choice((1, 250, window // 3, window - 1, window, window + 1,
                                       2 * window, rng.randrange(1, 3 * window))))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("limits", [["3/10 second"], ["2/5 second", "4/20 second"],
                                    ["5/10 second", "8/minute"]], ids=str)
def test_memory_and_lua_agree_on_random_sequences(
    shimmed: None, redis_url: str, strategy: str, limits: list[str]
) -> None:
    for seed in range(3):
        ops = list(random_ops(seed, limits, 150))
        replay(redis_url, strategy, limits, ops)
