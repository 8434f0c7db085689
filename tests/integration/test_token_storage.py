"""Token budgets and stream leases in storage: memory:// and the Lua scripts on a real
redis-server give the same answers (weighted reservations, settlement in the reserving window
only, leases pruned when they expire), and Redis stays exact under concurrency."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from limits import parse

from chatlimit.storage import Counter, Lease, MemoryCounter
from chatlimit.storage.lean_redis import LeanRedis
from chatlimit.storage.redis import RedisCounter
from chatlimit.uri import parse_storage_uri

WEIGHTED = ["fixed-window", "sliding-window-counter"]
REQUESTS = parse("5/minute")
TOKENS = parse("1000/hour")
KEYS = ["chatlimit:{a}:u:fw:chat:5/1minute", "chatlimit:{a}:u:fw:chat-tokens:1000/1hour"]


class Clock:
    """memory://'s clock, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lease(number: int = 0, limit: int = 2, ttl: float = 30.0) -> Lease:
    return Lease("chatlimit:{a}:u:streams:chat", f"lease-{number}", limit, ttl)


def redis_counter(url: str, strategy: str) -> RedisCounter:
    client = LeanRedis.from_location(parse_storage_uri(url), connect_timeout=1, socket_timeout=1)
    return RedisCounter(client, strategy)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param if request.param == "memory" else str(request.getfixturevalue("redis_url"))


def counter_for_test(backend: str, strategy: str, clock: Clock | None = None) -> Counter:
    if backend == "memory":
        return MemoryCounter(strategy, clock=clock or Clock())
    return redis_counter(backend, strategy)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def remaining(verdict: Any) -> list[int]:
    return [q.remaining for q in verdict.quotas]


@pytest.mark.parametrize("strategy", WEIGHTED)
def test_a_reservation_is_charged_whole_and_one_that_does_not_fit_charges_nothing(
    backend: str, strategy: str
) -> None:
    async def scenario() -> None:
        counter = counter_for_test(backend, strategy)
        items = [REQUESTS, TOKENS]
        first = await counter.hit(KEYS, items, [1, 700])
        assert first.allowed and remaining(first) == [4, 300]
        refused = await counter.hit(KEYS, items, [1, 400])
        assert refused.failed == 1  # the token budget, after the request was counted
        assert remaining(refused) == [3, 300]  # the 300 left stay usable
        fits = await counter.hit(KEYS, items, [1, 300])
        assert fits.allowed and remaining(fits) == [2, 0]
        await counter.aclose()

    run(scenario())


@pytest.mark.parametrize("strategy", WEIGHTED)
def test_settlement_refunds_the_unused_reservation_into_the_same_window(
    backend: str, strategy: str
) -> None:
    async def scenario() -> None:
        counter = counter_for_test(backend, strategy)
        admitted = await counter.hit(KEYS[1:], [TOKENS], [600], lease())
        assert admitted.allowed and remaining(admitted) == [400]
        after = await counter.settle(KEYS[1:], [TOKENS], admitted.windows, [-450], lease())
        assert [q.remaining for q in after] == [850]  # 150 used of the 600 reserved
        peeked = await counter.peek(KEYS[1:], [TOKENS], lease())
        assert remaining(peeked) == [850]
        assert peeked.streams is not None and peeked.streams.remaining == 2  # lease released
        # An overdraft (the estimate was low) is charged too, and never below zero.
        second = await counter.hit(KEYS[1:], [TOKENS], [100])
        settled = await counter.settle(KEYS[1:], [TOKENS], second.windows, [+900])
        assert [q.remaining for q in settled] == [0]
        await counter.aclose()

    run(scenario())


@pytest.mark.parametrize("strategy", WEIGHTED)
def test_a_refund_never_lands_in_a_later_window(backend: str, strategy: str) -> None:
    short = parse("1000/second")

    async def scenario() -> None:
        clock = Clock()
        counter = counter_for_test(backend, strategy, clock)
        key = ["chatlimit:{a}:u:late:1000/1second"]
        admitted = await counter.hit(key, [short], [900])
        assert admitted.allowed
        # Past this window and the next (the sliding counter weighs the one before).
        clock.now += 2.5
        deadline = time.monotonic() + 10
        while remaining(await counter.peek(key, [short])) != [1000]:  # Redis time: poll
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        fresh = await counter.hit(key, [short], [100])
        assert remaining(fresh) == [900]
        settled = await counter.settle(key, [short], admitted.windows, [-900])
        assert [q.remaining for q in settled] == [900]  # the new window gained nothing
        await counter.aclose()

    run(scenario())


@pytest.mark.parametrize("strategy", [*WEIGHTED, "moving-window"])
def test_no_free_stream_slot_refuses_without_charging_and_a_release_frees_it(
    backend: str, strategy: str
) -> None:
    async def scenario() -> None:
        counter = counter_for_test(backend, strategy)
        items = [REQUESTS]
        first = await counter.hit(KEYS[:1], items, [1], lease(1, limit=1))
        assert first.allowed and first.streams is not None and first.streams.remaining == 0
        refused = await counter.hit(KEYS[:1], items, [1], lease(2, limit=1))
        assert refused.refused_streams and refused.failed == 1
        assert remaining(refused) == [4]  # the request limit was only read
        await counter.settle([], [], [], [], lease(1, limit=1))
        again = await counter.hit(KEYS[:1], items, [1], lease(2, limit=1))
        assert again.allowed and remaining(again) == [3]
        await counter.aclose()

    run(scenario())


def test_an_expired_lease_is_pruned_at_the_next_admission(backend: str) -> None:
    async def scenario() -> None:
        clock = Clock()
        counter = counter_for_test(backend, "fixed-window", clock)
        held = lease(1, limit=1, ttl=0.2)  # its holder dies: no renewal, no release
        assert (await counter.hit([], [], [], held)).allowed
        assert (await counter.hit([], [], [], lease(2, limit=1))).refused_streams
        clock.now += 0.3
        deadline = time.monotonic() + 10
        while not (await counter.hit([], [], [], lease(2, limit=1))).allowed:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert not await counter.renew(held)  # an expired lease is not brought back
        await counter.aclose()

    run(scenario())


def test_a_renewed_lease_outlives_its_first_ttl(backend: str) -> None:
    async def scenario() -> None:
        clock = Clock()
        counter = counter_for_test(backend, "fixed-window", clock)
        held = lease(1, limit=1, ttl=0.6)
        assert (await counter.hit([], [], [], held)).allowed
        started = time.monotonic()
        for _ in range(4):  # renewed every 0.2 s for 0.8 s, past the first TTL
            await asyncio.sleep(0.2)
            clock.now += 0.2
            assert await counter.renew(held)
        if time.monotonic() - started < 1.4:  # the machine was not stalled past the TTL
            assert (await counter.hit([], [], [], lease(2, limit=1))).refused_streams
        await counter.aclose()

    run(scenario())


@pytest.mark.parametrize("strategy", WEIGHTED)
def test_memory_and_lua_agree_on_a_random_run(redis_url: str, strategy: str) -> None:
    """The same seeded sequence of admissions, settlements and peeks through both."""
    items = [REQUESTS, TOKENS]

    async def scenario() -> None:
        memory = MemoryCounter(strategy)
        redis = redis_counter(redis_url, strategy)
        rng = random.Random(15)
        # lease, each backend's windows, the reservation
        open_: list[tuple[Lease, list[float], list[float], int]] = []
        for step in range(300):
            action = rng.random()
            if action < 0.5 or not open_:
                held = lease(step, limit=3)
                cost = rng.choice([50, 120, 300])
                mem, red = [await c.hit(KEYS, items, [1, cost], held) for c in (memory, redis)]
                assert (mem.failed, remaining(mem)) == (red.failed, remaining(red)), step
                assert mem.streams is not None and red.streams is not None
                assert mem.streams.remaining == red.streams.remaining, step
                if mem.allowed:
                    open_.append((held, list(mem.windows), list(red.windows), cost))
            elif action < 0.85:
                held, mem_windows, red_windows, cost = open_.pop(rng.randrange(len(open_)))
                deltas = [0, rng.randrange(cost + 1) - cost]
                after_mem = await memory.settle(KEYS, items, mem_windows, deltas, held)
                after_red = await redis.settle(KEYS, items, red_windows, deltas, held)
                assert [q.remaining for q in after_mem] == [q.remaining for q in after_red], step
            else:
                mem, red = [await c.peek(KEYS, items, lease(0, limit=3)) for c in (memory, redis)]
                assert remaining(mem) == remaining(red), step
                assert mem.streams is not None and red.streams is not None
                assert mem.streams.remaining == red.streams.remaining, step
        await redis.aclose()

    run(scenario())


@pytest.mark.parametrize("strategy", WEIGHTED)
def test_concurrent_reservations_from_many_connections_never_pass_the_budget(
    redis_url: str, strategy: str
) -> None:
    async def scenario() -> tuple[list[bool], list[int]]:
        counters = [redis_counter(redis_url, strategy) for _ in range(8)]

        async def admit(i: int) -> bool:
            verdict = await counters[i % 8].hit(KEYS[1:], [TOKENS], [90], lease(i, limit=50))
            return verdict.allowed

        answers = await asyncio.gather(*(admit(i) for i in range(200)))
        left = remaining(await counters[0].peek(KEYS[1:], [TOKENS]))
        for counter in counters:
            await counter.aclose()
        return answers, left

    answers, left = run(scenario())
    assert sum(answers) == 11  # 11 x 90 = 990 of 1000; the 50 stream slots never refuse
    assert left == [10]
