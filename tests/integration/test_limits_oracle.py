"""`limits` itself as the oracle: the same hit and peek sequences go to chatlimit's counters
and to limits' strategies (FixedWindowRateLimiter, MovingWindowRateLimiter,
SlidingWindowCounterRateLimiter), on limits' MemoryStorage with a controlled clock and on its
RedisStorage with short real windows. Hits must be allowed alike; peeks must agree with
`test()` and `get_window_stats()` (remaining, and seconds until reset).

Deliberate differences, each kept out of the sequences below and stated here:
- Fixed window, cost > 1: limits charges a refused cost too (its counter passes the limit);
  chatlimit charges a cost only when it fits, so a 300-token reservation refused with 200
  left leaves those 200 usable (test_a_refused_cost_is_not_charged_unlike_limits).
- A full quota: chatlimit answers reset_after 0 (nothing to wait for); limits answers a
  window's length for the moving window and for a sliding window whose previous count has
  no share left. Resets are compared only for a quota that is not full.
- Sliding window counter on limits' MemoryStorage: its windows are aligned to multiples of
  the window on the clock; its RedisStorage, and chatlimit on both backends, start them at a
  client's first hit and keep that phase while every window sees a call. The memory sequences
  therefore start on a multiple of the window and after an idle gap resume on one.
- The exact millisecond of an edge: limits' moving window still counts a hit exactly one window
  old when acquiring (not in its own window stats), and its sliding window reports a reset
  of 0 in a window's first instant. The waits carry a millisecond of jitter so no call lands
  exactly on an edge, and resets are not compared in a window's first 2 ms.
"""

from __future__ import annotations

import asyncio
import random
import time
import types
import uuid
from collections.abc import Iterator

import limits.storage.memory
import limits.strategies
import pytest
import redis.asyncio
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string

from chatlimit.storage import Counter, MemoryCounter, Verdict
from chatlimit.storage.redis import RedisCounter

from ..support import STRATEGIES

START = 1000.0  # a multiple of every window below


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """One clock for limits' MemoryStorage and strategies and for MemoryCounter."""
    clock = Clock()
    fake = types.SimpleNamespace(time=clock)
    monkeypatch.setattr(limits.storage.memory, "time", fake)
    monkeypatch.setattr(limits.strategies, "time", fake)
    return clock


def ours(counter: Counter, key: str, item: RateLimitItem, op: str) -> Verdict:
    if op == "hit":
        return asyncio.run(counter.hit([key], [item], [1]))
    return asyncio.run(counter.peek([key], [item]))


def compare(oracle: limits.strategies.RateLimiter, counter: Counter, key: str,
            item: RateLimitItem, op: str, now: float, where: str) -> None:
    verdict = ours(counter, key, item, op)
    if op == "hit":
        assert verdict.allowed == oracle.hit(item, key), where
        return
    quota = verdict.quotas[0]
    assert (quota.remaining >= 1) == oracle.test(item, key), where
    stats = oracle.get_window_stats(item, key)
    assert quota.remaining == stats.remaining, where
    window = item.get_expiry()
    if quota.remaining < item.amount and (now % window) > 0.002:
        assert quota.reset_after == pytest.approx(stats.reset_time - now, abs=0.002), where


def memory_ops(seed: int, strategy: str, window: float, steps: int) -> Iterator[tuple[float, str]]:
    """(seconds to wait first, "hit" or "peek"); each wait carries a millisecond of jitter."""
    rng = random.Random(seed)
    now = START
    yield 0.0, "hit"
    for _ in range(steps):
        if strategy == "sliding-window-counter":
            if rng.random() < 0.05:  # an idle gap: resume on the window's clock boundary
                target = (now // window + rng.choice((2, 3))) * window
                yield target - now, "hit"
                now = target
                continue
            wait = rng.choice((0.0, 0.251, 0.751, 1.501, window / 4 - 0.249))
        else:
            wait = rng.choice((0.0, 0.251, 1.001, window / 2 + 0.001, window + 0.001,
                               2 * window + 0.001, rng.randrange(1, 3000) / 1000 + 0.0007))
        now += wait
        yield wait, rng.choice(("hit", "hit", "peek"))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("limit", ["3/10 second", "5/20 second", "2/5 second"])
def test_memory_counters_decide_as_limits_memory_storage_on_one_clock(
    clock: Clock, strategy: str, limit: str
) -> None:
    item = parse(limit)
    for seed in range(4):
        oracle = limits.strategies.STRATEGIES[strategy](MemoryStorage())
        counter = MemoryCounter(strategy, clock=clock)
        clock.now = START
        key = f"user-{seed}"
        done: list[tuple[float, str]] = []
        for wait, op in memory_ops(seed, strategy, item.get_expiry(), 200):
            clock.now += wait
            done.append((wait, op))
            compare(oracle, counter, key, item, op, clock.now,
                    f"{strategy} {limit} seed {seed} at {clock.now - START:.3f}: {done[-12:]}")


def test_a_refused_cost_is_not_charged_unlike_limits(clock: Clock) -> None:
    item = parse("5/minute")
    oracle = limits.strategies.FixedWindowRateLimiter(MemoryStorage())
    counter = MemoryCounter("fixed-window", clock=clock)
    assert oracle.hit(item, "u", cost=3) and asyncio.run(counter.hit(["u"], [item], [3])).allowed
    assert not oracle.hit(item, "u", cost=3)
    assert not asyncio.run(counter.hit(["u"], [item], [3])).allowed
    assert oracle.get_window_stats(item, "u").remaining == 0  # limits charged the refused 3
    assert asyncio.run(counter.peek(["u"], [item])).quotas[0].remaining == 2  # chatlimit did not


# --- RedisStorage, with short real windows ------------------------------------------------

# (seconds after the first hit, op): every call at least 0.25 s from any window's edge
# (edges at whole multiples of 2 s from the first hit for all three strategies here).
REAL_SCHEDULE = [
    (0.0, "hit"), (0.0, "hit"), (0.0, "peek"), (0.0, "hit"), (0.0, "hit"), (0.0, "peek"),
    (1.0, "peek"), (1.0, "hit"), (2.5, "peek"), (2.5, "hit"), (2.5, "hit"), (2.5, "peek"),
    (3.4, "hit"), (3.4, "peek"), (4.6, "peek"), (4.6, "hit"), (4.6, "hit"), (4.6, "hit"),
    (4.6, "peek"),
]
SLACK = 0.2  # a call later than planned by this much may sit on an edge: the run is redone


@pytest.mark.redis
@pytest.mark.integration
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_redis_counters_decide_as_limits_redis_storage_on_short_real_windows(
    redis_url: str, strategy: str
) -> None:
    item = parse("3/2 second")
    oracle = limits.strategies.STRATEGIES[strategy](storage_from_string(redis_url))

    async def attempt() -> bool:
        """One run of the schedule on fresh keys; False when the machine was too slow to
        keep every call away from the edges (then nothing is asserted)."""
        client = redis.asyncio.Redis.from_url(redis_url)
        counter = RedisCounter(client, strategy)
        key = f"oracle:{{{uuid.uuid4().hex[:8]}}}"
        try:
            await counter.peek([key], [item])  # loads the script before the clock starts
            first = time.monotonic()
            for offset, op in REAL_SCHEDULE:
                delay = first + offset - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # keeping to the schedule, not synchronising
                if time.monotonic() - first - offset > SLACK:
                    return False
                verdict = await (counter.hit([key], [item], [1]) if op == "hit"
                                 else counter.peek([key], [item]))
                where = f"{strategy} at {offset}s ({op})"
                if op == "hit":
                    assert verdict.allowed == oracle.hit(item, key), where
                else:
                    stats = oracle.get_window_stats(item, key)
                    assert verdict.quotas[0].remaining == stats.remaining, where
                    assert (verdict.quotas[0].remaining >= 1) == oracle.test(item, key), where
                if time.monotonic() - first - offset > SLACK:
                    return False
            return True
        finally:
            await client.aclose()

    for _ in range(3):
        if asyncio.run(attempt()):
            return
    pytest.skip("the machine was too busy to keep the calls away from the window edges")
