"""Where counting happens: memory:// in this process, or Redis shared by every replica.

`counter_for(location, strategy)` picks the backend from the URI's scheme, as `limits`'
`storage_from_string` does.
"""

from __future__ import annotations

from ..uri import StorageLocation
from .base import Counter, Lease, Quota, StorageUnavailable, Verdict, ceil_seconds
from .memory import MemoryCounter

__all__ = [
    "Counter", "Lease", "MemoryCounter", "Quota", "StorageUnavailable", "Verdict", "ceil_seconds",
    "counter_for",
]


def counter_for(
    location: StorageLocation,
    strategy: str,
    *,
    connect_timeout: float = 0.25,
    socket_timeout: float = 0.25,
    memory_max_keys: int = 100_000,
) -> Counter:
    if location.kind == "memory":
        return MemoryCounter(strategy, max_keys=memory_max_keys)
    from .lean_redis import LeanRedis  # one plain server: the lean pipelined client
    from .redis import RedisCounter
    from .redis_clients import redis_client  # TLS, a Unix socket, Sentinel or Cluster

    timeouts = {"connect_timeout": connect_timeout, "socket_timeout": socket_timeout}
    client = LeanRedis.from_location(location, **timeouts) or redis_client(location, **timeouts)
    return RedisCounter(client, strategy)
