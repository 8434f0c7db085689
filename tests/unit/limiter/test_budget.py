"""TokenBudget: each user's keys worked out once and bounded, leases renewed when due, and
every key of an app's own (key_prefix), its lease set too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from limits import parse

from chatlimit.limiter import Breaker
from chatlimit.limiter.budget import TokenBudget
from chatlimit.limiter.plans import CACHE_BOUND
from chatlimit.storage import MemoryCounter


def test_the_keys_remembered_per_user_stay_bounded_and_a_forgotten_user_keeps_its_keys() -> None:
    breaker = Breaker(MemoryCounter("fixed-window"), MemoryCounter("fixed-window"))
    budget = TokenBudget([parse("1000/minute")], 2, 30.0, strategy="fixed-window",
                         scope="chat", breaker=breaker)
    first_keys, first_lease = budget.keys("address:user-0")

    for n in range(3 * CACHE_BOUND):
        budget.keys(f"address:user-{n}")

    assert len(budget._keys) <= CACHE_BOUND + 1
    keys, lease = budget.keys("address:user-0")
    assert keys == first_keys and "user-0" in keys[0]
    assert lease is not None and first_lease is not None
    # The same lease set, a new lease in it: each reply holds its own slot.
    assert lease.key == first_lease.key and lease.id != first_lease.id


def test_a_heartbeat_renews_only_the_leases_older_than_a_sixth_of_their_ttl() -> None:
    # A reply shorter than LEASE_TTL / 6 costs its two storage calls and no renewal; an older
    # one is renewed at every beat (each TTL / 3), so it never reaches half its TTL.
    from chatlimit.limiter.budget import Ask, Ticket
    from chatlimit.storage import Lease

    async def first_beat() -> tuple[list[str], dict[str, str]]:
        breaker = Breaker(MemoryCounter("fixed-window"), MemoryCounter("fixed-window"))
        renewed: list[str] = []
        renew = breaker.renew

        async def counted(lease: Lease, *, degraded: bool) -> bool:
            renewed.append(lease.id)
            return await renew(lease, degraded=degraded)

        breaker.renew = counted  # type: ignore[method-assign]
        budget = TokenBudget([], 5, 3.0, strategy="fixed-window", scope="chat",
                             breaker=breaker)  # a beat each second; a lease due past 0.5 s
        tickets = {}
        for name in ("old", "young"):
            keys, lease = budget.keys(f"address:{name}")
            tickets[name] = Ticket(budget, keys, (), Ask(0, 0), lease, degraded=False)
            tickets[name].hold()
        now = asyncio.get_running_loop().time()
        tickets["old"].renewed = now - 10  # taken long before
        # Taken just before the beat, however late the beat comes on a busy machine.
        tickets["young"].renewed = now + 60
        for _ in range(300):  # poll until the first beat has renewed (it comes after 1 s)
            if renewed:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # the rest of that beat's renewals, if any
        first = list(renewed)
        for ticket in tickets.values():
            await ticket.settle(0)
        return first, {n: t.lease.id for n, t in tickets.items() if t.lease is not None}

    renewed, ids = asyncio.run(first_beat())
    assert renewed == [ids["old"]]


def test_a_key_prefix_keeps_the_stream_slots_of_two_apps_on_one_storage_apart() -> None:
    # Limiter(key_prefix=...) namespaces every key of the admission, the lease set included:
    # one app's reply in flight must not take the other app's only slot.
    from slowapi.errors import RateLimitExceeded
    from starlette.requests import Request

    from chatlimit.limiter import ChatLimiter

    shared = MemoryCounter("fixed-window")

    def app(prefix: str) -> Any:
        breaker = Breaker(shared, MemoryCounter("fixed-window"))
        limiter = ChatLimiter(key_func=lambda request: "address:user", breaker=breaker,
                              strategy="fixed-window", key_prefix=prefix)

        @limiter.limit("100/minute")
        async def chat(request: Request) -> str:
            return "ok"

        limiter.add_budget(chat, TokenBudget([], 1, 30.0, strategy="fixed-window", scope="chat",
                                             breaker=breaker))  # one reply in flight at once
        return chat

    def request() -> Request:
        return Request({"type": "http", "method": "POST", "path": "/chat", "headers": [],
                        "query_string": b"", "client": ("203.0.113.1", 5000)})

    first, second = app("app-a"), app("app-b")
    assert asyncio.run(first(request=request())) == "ok"  # holds app-a's one slot
    assert asyncio.run(second(request=request())) == "ok"  # app-b's own slot is free
    with pytest.raises(RateLimitExceeded):
        asyncio.run(first(request=request()))  # app-a's slot is still taken
