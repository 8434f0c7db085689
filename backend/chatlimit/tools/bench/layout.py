"""Bytes per key: chatlimit's storage layout against limits' own (what stock slowapi writes) for
the same users, and what MEMORY_MAX_KEYS does at a million users.

The in-memory figures run in a fresh child process each (`python -m
chatlimit.tools.bench.layout KIND USERS`), so its RSS growth is the store's alone. limits'
keys are the ones slowapi makes for a route limit, `LIMITER/<key>/<route>/<limit>` (plus
`LIMITS:` on Redis), with chatlimit's identities as the keys: the same users, the same two
limits each (the user's own and its address's ceiling).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

from ..processes import RedisServer
from .users import STRATEGY, _items, app_keys, rss_bytes

ROUTE = "chatlimit.web.routes.chat.chat"  # slowapi's scope for the /chat route
DEFAULT_MAX_KEYS = 100_000  # Settings.memory_max_keys' default
LAYOUT_USERS = 100_000


def limits_keys(user: int) -> list[tuple[Any, str]]:
    """(item, identity) of each of the user's two limits, as slowapi would hit them."""
    own, ceiling = _items()
    user_key = app_keys(user)[0]  # chatlimit:{address}:user:...
    address = user_key.split("{", 1)[1].split("}", 1)[0]
    identity = user_key.split("}:", 1)[1].split(":", 1)[0]
    return [(own, f"{address}:{identity}"), (ceiling, address)]


def _limits_memory(users: int) -> dict[str, Any]:
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter

    pairs = [limits_keys(u) for u in range(users)]
    storage = MemoryStorage()
    limiter = FixedWindowRateLimiter(storage)
    before = rss_bytes_self()
    for pair in pairs:
        for item, identity in pair:
            limiter.hit(item, identity, ROUTE)
    grown = rss_bytes_self() - before
    storage.timer.cancel()
    return {"keys": 2 * users, "bytes_per_key": round(grown / (2 * users), 1)}


def _chatlimit_memory(users: int, max_keys: int) -> dict[str, Any]:
    from ...storage.memory import MemoryCounter

    own, ceiling = _items()
    keys = [app_keys(u) for u in range(users)]
    counter = MemoryCounter(STRATEGY, max_keys=max_keys)
    before = rss_bytes_self()
    started = time.process_time()
    items, costs = (own, ceiling), (1, 1)
    first = counter.check(keys[0], items, costs, peek=False).quotas[0].remaining
    for pair in keys[1:]:
        counter.check(pair, items, costs, peek=False)
    cpu = time.process_time() - started
    grown = rss_bytes_self() - before
    # User 0 again: still counted (remaining one less), or forgotten (a fresh window).
    again = asyncio.run(counter.peek(keys[0], items)).quotas[0].remaining
    return {
        "keys": min(2 * users, len(counter)), "max_keys": max_keys,
        "bytes_per_key": round(grown / max(1, len(counter)), 1),
        "cpu_us_per_check": round(cpu / users * 1e6, 2), "evicted": counter.evicted,
        "first_user_remembered": again == first,
    }


def rss_bytes_self() -> int:
    import os

    return rss_bytes(os.getpid())


def in_child(kind: str, users: int, max_keys: int = 0) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "chatlimit.tools.bench.layout", kind, str(users), str(max_keys)],
        capture_output=True, text=True, timeout=900, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"layout {kind}: {done.stderr.strip()[-800:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def limits_redis(redis: RedisServer, users: int, batch: int = 2000) -> dict[str, Any]:
    """Redis used_memory per key after limits' RedisStorage counted every user's first hit
    (its own incr_expire script, pipelined), on an empty server."""
    import redis as redis_py
    from limits.storage import RedisStorage

    storage = RedisStorage(redis.url)
    client = redis_py.Redis(port=redis.port)
    client.flushall()
    before = int(client.info("memory")["used_memory"])
    for start in range(0, users, batch):
        pipe = client.pipeline(transaction=False)
        for user in range(start, min(users, start + batch)):
            for item, identity in limits_keys(user):
                key = storage.prefixed_key(item.key_for(identity, ROUTE))
                storage.lua_incr_expire(keys=[key], args=[item.get_expiry(), 1], client=pipe)
        pipe.execute()
    keys = int(client.dbsize())
    grown = int(client.info("memory")["used_memory"]) - before
    client.flushall()
    client.close()
    return {"keys": keys, "bytes_per_key": round(grown / max(1, keys), 1)}


def main() -> None:
    kind, users, max_keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if kind == "limits-memory":
        result = _limits_memory(users)
    else:
        result = _chatlimit_memory(users, max_keys or 2 * users + 1000)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
