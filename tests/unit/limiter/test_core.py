"""ChatLimiter: the verdict travels as one typed Decision, and a route's limits are found
from the route itself."""

from __future__ import annotations

import asyncio

from limits import parse
from starlette.requests import Request

from chatlimit.limiter import Breaker, ChatLimiter, Decision, decision_of
from chatlimit.storage import MemoryCounter


def limiter() -> ChatLimiter:
    breaker = Breaker(MemoryCounter("fixed-window"), MemoryCounter("fixed-window"))
    return ChatLimiter(key_func=lambda request: "address:user", breaker=breaker,
                       strategy="fixed-window")


def request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/anywhere", "headers": [],
                    "query_string": b"", "client": ("203.0.113.1", 5000)})


def test_a_checked_request_carries_one_typed_decision_and_nothing_else_on_its_state() -> None:
    chat_limiter = limiter()

    @chat_limiter.limit("2/minute")
    async def elsewhere(request: Request) -> str:
        return "ok"

    first = request()
    assert asyncio.run(elsewhere(request=first)) == "ok"

    decision = decision_of(first)
    assert isinstance(decision, Decision)
    # No loose attributes beside it; slowapi's own two are kept for drop-in compatibility.
    ours = set(first.state._state) - {"view_rate_limit", "_rate_limiting_complete"}
    assert ours == {"rate_limit"} and first.state.rate_limit is decision
    assert decision.allowed and not decision.degraded and not decision.shadow
    assert (decision.quota.limit, decision.quota.remaining) == (2, 1)
    assert decision.item == parse("2/minute")
    assert decision.policy == '"2-per-1-minute";q=2;w=60'


def test_the_quota_of_a_route_is_found_from_the_route_function_wherever_it_lives() -> None:
    chat_limiter = limiter()

    @chat_limiter.limit("3/minute")
    async def defined_in_a_test(request: Request) -> str:
        return "ok"

    asyncio.run(defined_in_a_test(request=request()))
    peeked = asyncio.run(chat_limiter.quota(request(), defined_in_a_test))

    assert peeked is not None
    assert (peeked.quota.limit, peeked.quota.remaining) == (3, 2)
    again = asyncio.run(chat_limiter.quota(request(), defined_in_a_test))
    assert again is not None and again.quota.remaining == 2  # a peek consumes nothing


def test_the_keys_remembered_per_client_stay_bounded_across_paths_and_clients() -> None:
    from chatlimit.limiter.plans import CACHE_BOUND

    breaker = Breaker(MemoryCounter("fixed-window", max_keys=10**6),
                      MemoryCounter("fixed-window"))
    chat_limiter = ChatLimiter(key_func=lambda request: request.headers["who"],
                               breaker=breaker, key_style="url")

    @chat_limiter.limit("5/minute")
    async def item(request: Request) -> str:
        return "ok"

    def on(path: str, who: str) -> Request:
        return Request({"type": "http", "method": "GET", "path": path, "query_string": b"",
                        "headers": [(b"who", who.encode())], "client": ("203.0.113.1", 5000)})

    async def flood() -> None:
        for n in range(3 * CACHE_BOUND):  # a new path and a new client each time
            await item(request=on(f"/items/{n}", f"client-{n}"))

    asyncio.run(flood())
    assert len(chat_limiter.plans.named) <= CACHE_BOUND + 1
    assert len(chat_limiter.plans.known) <= CACHE_BOUND + 1
    # A client the table forgot is still counted where it was: its keys are worked out again.
    again = on("/items/0", "client-0")
    asyncio.run(item(request=again))
    decision = decision_of(again)
    assert decision is not None and decision.quota.remaining == 3
