"""The token budget's invariant, on real processes: nginx, three `chatlimit serve` replicas,
redis-server and `chatlimit model` (whose ledger is the bill).

One user sends 200 streamed story requests over a few seconds, abandoning many mid-reply, and
one replica is SIGKILLed mid-run. With Redis the ledger's tokens for that user never pass
TOKEN_LIMIT, every stream slot is free again within LEASE_TTL, and /api/quota agrees with the
counter. With memory:// each replica counts alone, and the bill passes the budget: the bypass.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from chatlimit.tools.redis_topologies import ClusterTopology
from chatlimit.tools.stack import LocalStack

from .streaming import SSE

pytestmark = [pytest.mark.integration, pytest.mark.nginx]

BUDGET = 3000
LEASE_TTL = 3.0
REQUESTS = 200
USER_AGENT = "invariant-run"
ENV = {
    "TOKEN_LIMIT": f"{BUDGET}/hour",
    "RATE_LIMIT": "100000/minute",
    "RATE_LIMIT_PER_ADDRESS": "off",
    "MAX_STREAMS": "100",
    "LEASE_TTL": str(LEASE_TTL),
    # A loaded 2-core machine can take longer than 0.25 s to answer; failing open would then
    # count in memory and grant extra tokens. Storage trouble must show as 503 here.
    "REDIS_SOCKET_TIMEOUT": "5", "REDIS_CONNECT_TIMEOUT": "5", "FAIL_MODE": "closed",
    "MODEL_TOKEN_DELAY_MS": "10",
    # Short replies (a story cut at 64 tokens), so the budget is spent, refunded and spent
    # again many times within the run.
    "LLM_MAX_TOKENS": "64",
}


async def _one(client: httpx.AsyncClient, url: str, start: float, stop_after: int | None,
               kill: Callable[[], None] | None) -> str:
    """One streamed request, sent at `start` seconds; abandoned after `stop_after` deltas."""
    await asyncio.sleep(start)
    if kill is not None:
        kill()
        return "kill"
    try:
        async with client.stream("POST", f"{url}/chat", json={"message": "tell me a story"},
                                 headers={**SSE, "User-Agent": USER_AGENT}) as answer:
            if answer.status_code != 200:
                return str(answer.status_code)
            deltas = 0
            async for line in answer.aiter_lines():
                if line.startswith("event: delta"):
                    deltas += 1
                    if stop_after is not None and deltas >= stop_after:
                        return "stopped"
                elif line.startswith("event: ") and line != "event: meta":
                    return line[7:]  # done, or error (the killed replica's streams)
    except httpx.HTTPError:
        return "broken"
    return "broken"


def run_traffic(stack: LocalStack, seed: int = 15) -> dict[str, int]:
    """200 requests over ~5 s, a third of them abandoned after 1 to 40 deltas, and app-2
    SIGKILLed two seconds in (from the event loop, between requests)."""
    rng = random.Random(seed)
    plan: list[tuple[float, int | None, Callable[[], None] | None]] = [
        (rng.uniform(0, 5), rng.randint(1, 40) if rng.random() < 0.35 else None, None)
        for _ in range(REQUESTS)
    ]
    plan.append((2.0, None, lambda: stack.kill_replica("app-2")))

    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=REQUESTS + 10)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(*(_one(client, stack.url, *p) for p in plan))

    outcomes: dict[str, int] = {}
    for outcome in asyncio.run(run()):
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def quota(stack: LocalStack) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{stack.url}/api/quota",
                                     headers={"User-Agent": USER_AGENT}, timeout=5).json()
    return body


def billed(stack: LocalStack, user: str) -> int:
    ledger = httpx.get(f"{stack.url}/model/v1/ledger", timeout=5).json()
    account = ledger["users"].get(user, {})
    return int(account.get("prompt_tokens", 0)) + int(account.get("completion_tokens", 0))


def live_leases(client: Any) -> int:
    """Stream leases not yet expired, by Redis's own clock (expired ones wait to be pruned)."""
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    return sum(int(client.zcount(key, f"({now_ms}", "+inf"))
               for key in client.scan_iter(match="*streams:chat", count=1000))


def wait_for(check: Callable[[], bool], timeout: float) -> float:
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < timeout
        time.sleep(0.05)
    return time.monotonic() - began


def assert_held(stack: LocalStack, client: Any, record: Callable[[str, object], None],
                outcomes: dict[str, int]) -> None:
    user = quota(stack)["user"]
    total = billed(stack, user)
    record("ledger_tokens", total)
    record("outcomes", outcomes)
    print(f"\nINVARIANT redis: ledger {total} of budget {BUDGET}; outcomes {outcomes}")
    assert outcomes.get("done", 0) > 5 and outcomes.get("stopped", 0) > 5
    assert outcomes.get("429", 0) > 50  # the budget refused most of the 200
    assert total <= BUDGET
    assert total > BUDGET * 0.6  # the run did spend the budget: the bound was tested
    # The killed replica's slots expire within the TTL, everyone else's were released.
    freed = wait_for(lambda: live_leases(client) == 0, timeout=LEASE_TTL + 2)
    record("leases_freed_after_s", round(freed, 2))
    print(f"INVARIANT redis: every lease released or expired {freed:.2f} s after the run")
    after = quota(stack)
    assert after["streams"]["free"] == after["streams"]["limit"]
    (key,) = list(client.scan_iter(match="*chat-tokens*"))
    assert after["tokens"]["remaining"] == BUDGET - int(client.get(key))
    # Charged at least what was billed: a refund never ran ahead of the upstream's bill.
    assert after["tokens"]["remaining"] <= BUDGET - total


def test_with_redis_the_bill_never_passes_the_budget_and_no_lease_outlives_its_ttl(
    make_cluster: Callable[..., LocalStack], record_property: Callable[[str, object], None]
) -> None:
    stack = make_cluster(storage="redis", env=ENV)
    outcomes = run_traffic(stack)
    assert stack.redis is not None
    client = redis.Redis(port=stack.redis.port)
    assert_held(stack, client, record_property, outcomes)


def test_with_memory_each_replica_counts_alone_and_the_bill_passes_the_budget(
    make_cluster: Callable[..., LocalStack], record_property: Callable[[str, object], None]
) -> None:
    stack = make_cluster(storage="memory", env=ENV)
    outcomes = run_traffic(stack)
    total = billed(stack, quota(stack)["user"])
    record_property("ledger_tokens", total)
    print(f"\nINVARIANT memory: ledger {total} of budget {BUDGET}; outcomes {outcomes}")
    assert total > BUDGET  # up to one budget per replica


def test_on_a_redis_cluster_the_bill_never_passes_the_budget(
    make_cluster: Callable[..., LocalStack], tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    with ClusterTopology(tmp_path / "redis-cluster") as topology:
        stack = make_cluster(storage="redis", redis=topology, env=ENV)
        outcomes = run_traffic(stack)
        total = billed(stack, quota(stack)["user"])
        print(f"\nINVARIANT cluster: ledger {total} of budget {BUDGET}; outcomes {outcomes}")
        record_property("ledger_tokens", total)
        assert outcomes.get("429", 0) > 50
        assert BUDGET * 0.6 < total <= BUDGET
        # /api/quota counts live leases by Redis's clock: the killed replica's expire.
        wait_for(lambda: quota(stack)["streams"]["free"] == 100, timeout=LEASE_TTL + 2)
        stack.stop()
