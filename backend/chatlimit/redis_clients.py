"""The asyncio Redis client behind STORAGE_URI: one server, a Sentinel-watched primary, or a
Redis Cluster, always with bounded waits.

URIs follow the `limits` library (what slowapi accepts), so a URI that works there works here:

    redis://[user:password@]host:port[/db]          rediss://...  (TLS)
    redis+unix://[user:password@]/path/redis.sock[?db=0]
    redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]
    redis+cluster://[user:password@]host:port[,host:port...]

As in `limits`, the user and password authenticate at the sentinels and at the data nodes
alike; `?sentinel_password=` (and `sentinel_username=`) set the sentinels' own when they
differ. The `/db` after the service name is chatlimit's addition (limits reads only the name).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

# At most one retry, on a fresh connection: it covers a restarted server or a primary that
# just changed; more would multiply the stall a request can suffer while storage is down.
RETRIES = 1


@dataclass(frozen=True)
class RedisLocation:
    """What a Redis URI names: where the servers are and how to log in."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    path: str
    query: dict[str, str]


def parse_redis_uri(uri: str) -> RedisLocation:
    """Split a (possibly multi-host) Redis URI; ValueError names what is wrong."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError("not a URI")
    netloc, _, tail = rest.partition("/")
    path, _, query = ("/" + tail).partition("?")
    if "?" in netloc:  # redis+cluster://host:port?x=y
        netloc, _, query = netloc.partition("?")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) if colon else None
    hosts = []
    for part in filter(None, (p.strip() for p in hostlist.split(","))):
        parsed = urllib.parse.urlsplit(f"//{part}")
        if parsed.hostname is None or parsed.port is None:
            raise ValueError(f"missing host or port in {part!r}")
        hosts.append((parsed.hostname, parsed.port))
    return RedisLocation(
        scheme=scheme.lower(),
        hosts=tuple(hosts),
        username=username,
        password=password,
        path=path,
        query={k: v[-1] for k, v in urllib.parse.parse_qs(query).items()},
    )


def sentinel_service(location: RedisLocation) -> tuple[str, int]:
    """The service name and database of a redis+sentinel URI's path (/mymaster[/db])."""
    parts = [p for p in location.path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError("expected /service_name or /service_name/db after the sentinels")
    return parts[0], int(parts[1]) if len(parts) == 2 else 0


def validate_redis_uri(uri: str) -> None:
    """Raise ValueError when a Sentinel or Cluster URI cannot name its servers."""
    location = parse_redis_uri(uri)
    if location.scheme in ("redis+sentinel", "redis+cluster"):
        if not location.hosts:
            raise ValueError("expected host:port[,host:port...]")
        if location.scheme == "redis+sentinel":
            sentinel_service(location)


def redis_client(uri: str, *, connect_timeout: float, socket_timeout: float) -> Any:
    """An asyncio client for STORAGE_URI. Every wait is bounded: a hung or dead server costs a
    request about (1 + RETRIES) x the timeouts at most, never the whole process."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    timeouts: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": socket_timeout,
        "retry": Retry(NoBackoff(), RETRIES),
    }
    scheme = uri.partition("://")[0].lower()
    if scheme == "redis+sentinel":
        return _sentinel_client(parse_redis_uri(uri), timeouts)
    if scheme == "redis+cluster":
        return _cluster_client(parse_redis_uri(uri), timeouts)

    import redis.asyncio as aioredis

    if scheme == "redis+unix":
        uri = "unix://" + uri.partition("://")[2]
    return aioredis.from_url(uri, **timeouts)


def _sentinel_client(location: RedisLocation, timeouts: dict[str, Any]) -> Any:
    from redis.asyncio import Redis
    from redis.asyncio.sentinel import Sentinel

    class SentinelPrimary(Redis):
        """The primary's client; closing it closes the sentinel connections too."""

        sentinels: Sentinel | None = None

        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            await super().aclose(close_connection_pool)
            if self.sentinels is not None:
                await self.sentinels.aclose()

    service, db = sentinel_service(location)
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


def _cluster_client(location: RedisLocation, timeouts: dict[str, Any]) -> Any:
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
