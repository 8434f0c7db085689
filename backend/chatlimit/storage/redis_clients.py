"""The asyncio redis-py clients behind STORAGE_URI: TLS or a Unix socket, a Sentinel-watched
primary, or a Redis Cluster, always with bounded waits. (A plain redis:// server gets the lean
client in lean_redis.py.) The URI is parsed once, in chatlimit.uri.
"""

from __future__ import annotations

from typing import Any

from ..uri import StorageLocation

# At most one retry, on a fresh connection: it covers a restarted server or a primary that
# just changed; more would multiply the stall a request can suffer while storage is down.
RETRIES = 1


def redis_client(
    location: StorageLocation, *, connect_timeout: float, socket_timeout: float
) -> Any:
    """An asyncio client for STORAGE_URI. Every wait is bounded: a hung or dead server costs a
    request about (1 + RETRIES) x the timeouts at most, never the whole process."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    timeouts: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": socket_timeout,
        "retry": Retry(NoBackoff(), RETRIES),
    }
    if location.scheme == "redis+sentinel":
        return _sentinel_client(location, timeouts)
    if location.scheme == "redis+cluster":
        return _cluster_client(location, timeouts)

    import redis.asyncio as aioredis

    uri = location.uri
    if location.scheme == "redis+unix":
        uri = "unix://" + uri.partition("://")[2]
    return aioredis.from_url(uri, **timeouts)


def _sentinel_client(location: StorageLocation, timeouts: dict[str, Any]) -> Any:
    from redis.asyncio import Redis
    from redis.asyncio.sentinel import Sentinel

    class SentinelPrimary(Redis):
        """The primary's client; closing it closes the sentinel connections too."""

        sentinels: Sentinel | None = None

        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            await super().aclose(close_connection_pool)
            if self.sentinels is not None:
                await self.sentinels.aclose()

    service, db = location.sentinel_service()
    auth = {"username": location.username, "password": location.password}
    sentinel_auth = {
        "username": location.query.get("sentinel_username", location.username),
        "password": location.query.get("sentinel_password", location.password),
    }
    # The sentinels get the same bounded waits and single retry: redis-py's default for a
    # plain client is ten retries with backoff, far beyond any request's budget.
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(location.hosts), sentinel_kwargs={**timeouts, **sentinel_auth}, **timeouts, **auth
    )
    client = sentinels.master_for(service, redis_class=SentinelPrimary, db=db)
    client.sentinels = sentinels
    return client


def _cluster_client(location: StorageLocation, timeouts: dict[str, Any]) -> Any:
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.exceptions import RedisClusterException, RedisError

    class Cluster(RedisCluster):
        def shard_of(self, key: str) -> str:
            """The primary serving `key`: what fails alone when one primary is lost. Before
            the slot map is known, the whole cluster ("") is what answers or not."""
            try:
                node = self.get_node_from_key(key)
            except (RedisError, RedisClusterException):
                node = None
            return str(node.name) if node is not None else ""

        async def script_load(self, script: Any) -> Any:
            """Load a script on every reachable primary. redis-py's would fail outright while
            one primary is down, refusing the keys of the healthy ones too; the caller's
            EVALSHA then goes to the one node its keys live on."""
            sha = None
            for node in self.get_primaries():
                try:
                    sha = await self.execute_command("SCRIPT LOAD", script, target_nodes=node)
                except (RedisError, OSError):
                    continue
            if sha is None:
                raise RedisError("no primary accepted SCRIPT LOAD")
            return sha

    return Cluster(
        startup_nodes=[ClusterNode(host, port) for host, port in location.hosts],
        # A primary lost without a replica leaves its slots uncovered: keep serving the rest.
        require_full_coverage=False,
        username=location.username,
        password=location.password,
        **timeouts,
    )
