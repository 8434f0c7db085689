"""The users curve: what a request costs when 1, 10,000, 100,000 or 1,000,000 distinct users
share one window, on memory:// and on Redis.

Each point is its own `chatlimit serve` (and, for Redis, its own redis-server, so the keyspace
holds that point's users only), filled with its users first and then measured in interleaved
rounds with wrk walking the same users in turn (wrk.USERS_LUA). The window is a day long
(USERS_LIMIT), so no user ages out while the bench runs: every point keeps all of its users.
memory:// is filled over HTTP (its counters live in the app's process); Redis directly, with
the app's own script and keys, which is much faster and leaves the same keyspace (checked: the
measured runs must add no key).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ...limiter.identity import client_group, hashed
from ...limiter.keys import key_for, key_suffix
from ...settings import Settings
from ...storage.redis import lua_source
from ..processes import RedisServer, wait_until
from .servers import Variant, cpu_seconds, healthy, start_single
from .wrk import Wrk, user_headers

# A day-long window: the slowest fill (a million users over HTTP) must not outlive it.
USERS_LIMIT = "1000000/day"
STRATEGY = "fixed-window"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def curve_variants(sizes: list[int], storages: tuple[str, ...] = ("memory", "redis")
                   ) -> list[Variant]:
    # Every memory point gets the same room, so the dict's size is the only difference; the
    # default MEMORY_MAX_KEYS (100,000 keys, 50,000 users) is measured apart (layout.py).
    room = str(max(100_000, 2 * max(sizes) + max(sizes) // 5))
    return [
        Variant(f"users-{storage}-{n}", f"{storage}, {n:,} users", storage, STRATEGY,
                extra={"RATE_LIMIT": USERS_LIMIT, "MEMORY_MAX_KEYS": room})
        for storage in storages
        for n in sizes
    ]


def users_of(variant: Variant) -> int:
    return int(variant.name.rsplit("-", 1)[1])


def app_keys(user: int) -> list[str]:
    """The two storage keys the app writes for wrk's user `user` (its limit, its address's
    ceiling), from the app's own identity and key functions."""
    headers = user_headers(user)
    address = hashed(client_group(headers["X-Forwarded-For"]))
    identity = f"{address}:{hashed(address, headers['User-Agent'])}"
    own, ceiling = _items()
    return [key_for(identity, key_suffix(STRATEGY, "chat", own)),
            key_for(address, key_suffix(STRATEGY, "chat", ceiling))]


@functools.cache
def _items() -> tuple[Any, Any]:
    settings = Settings(rate_limit=USERS_LIMIT)
    from limits import parse_many

    assert settings.address_limit is not None
    return settings.limits[0], parse_many(settings.address_limit)[0]


def fill_redis(redis: RedisServer, users: int, batch: int = 2000) -> None:
    """Every user's first request, as the app's script would count it, pipelined."""
    import redis as redis_py

    own, ceiling = _items()
    client = redis_py.Redis(port=redis.port)
    sha = client.script_load(lua_source(STRATEGY))
    args = [0, 0, "", 0, own.amount, int(own.get_expiry() * 1000), 1,
            ceiling.amount, int(ceiling.get_expiry() * 1000), 1]
    for start in range(0, users, batch):
        pipe = client.pipeline(transaction=False)
        for user in range(start, min(users, start + batch)):
            pipe.evalsha(sha, 2, *app_keys(user), *args)
        pipe.execute()
    client.close()


def fill_http(variant: Variant, wrk: Wrk, users: int, echo: Callable[[str], None]) -> None:
    """Every user's first request over HTTP, walking the users once (in chunks of wrk runs)."""
    done, rps = 0, 0.0
    while done < users:
        seconds = 1.0 if not rps else min(60.0, max(1.0, (users - done) / rps))
        result = wrk.run(variant.url, seconds, wrk.users_script(users, done))
        done += result.requests
        rps = result.rps or 1.0
        if users > 100_000:
            echo(f"users curve: {variant.name} filled {min(done, users):,}/{users:,}")


def dbsize(redis: RedisServer) -> int:
    import redis as redis_py

    client = redis_py.Redis(port=redis.port)
    try:
        return int(client.dbsize())
    finally:
        client.close()


def used_memory(redis: RedisServer) -> int:
    import redis as redis_py

    client = redis_py.Redis(port=redis.port)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


@contextlib.contextmanager
def curve_servers(chosen: list[Variant], workdir: Path, wrk: Wrk,
                  echo: Callable[[str], None] = print) -> Iterator[dict[str, dict[str, Any]]]:
    """Start and fill every point; yield what each fill measured (bytes per key), by name."""
    fills: dict[str, dict[str, Any]] = {}
    own_redis: list[RedisServer] = []
    try:
        for variant in chosen:
            redis = None
            if variant.storage == "redis":
                redis = RedisServer(workdir, name=f"redis-{variant.name}").start()
                own_redis.append(redis)
            process = start_single(variant, workdir, redis)
            try:
                wait_until(lambda v=variant: healthy(v.url), timeout=60, what=variant.name)  # type: ignore[misc]
            except TimeoutError:
                raise RuntimeError(f"{variant.name} did not start:\n{process.log_tail()}") from None
        for variant in chosen:
            users = users_of(variant)
            wrk.run(variant.url, 1, wrk.users_script(1, 0))  # warm: imports, script loaded
            started = time.monotonic()
            # The warm-up was user 0: the fill adds the other users' two keys each.
            added = 2 * (users - 1)
            if variant.redis is not None:
                before = used_memory(variant.redis)
                fill_redis(variant.redis, users)
                grown = used_memory(variant.redis) - before
                keys = dbsize(variant.redis)
            else:
                before = rss_bytes(variant.app_pids[0])
                fill_http(variant, wrk, users, echo)
                grown = rss_bytes(variant.app_pids[0]) - before
                keys = 2 * users
            fills[variant.name] = {
                "users": users, "keys": keys, "fill_seconds": round(time.monotonic() - started, 1),
                # Below 10,000 users the growth is lost in the allocator's noise.
                "bytes_per_key": round(grown / added, 1) if users >= 10_000 else None,
                "measure": "Redis used_memory" if variant.redis else "app RSS",
            }
        yield fills
    finally:
        for variant in reversed(chosen):
            for stop in variant.stoppers:
                with contextlib.suppress(Exception):
                    stop()
        for redis in own_redis:
            redis.stop()


def measure_point(variant: Variant, wrk: Wrk, seconds: float, warmup: float, offset: int
                  ) -> dict[str, Any]:
    users = users_of(variant)
    start = offset % users
    wrk.run(variant.url, warmup, wrk.users_script(users, start))
    keys_before = dbsize(variant.redis) if variant.redis else None
    app_cpu = cpu_seconds(variant.app_pids)
    result = wrk.run(variant.url, seconds, wrk.users_script(users, start + users // 2))
    app_cpu = cpu_seconds(variant.app_pids) - app_cpu
    row: dict[str, Any] = {
        "variant": variant.name, "storage": variant.storage, "users": users,
        "requests": result.requests, "rps": round(result.rps, 1), "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms, "non_2xx": result.non_2xx,
        "socket_errors": result.socket_errors,
        "app_cpu_us": round(app_cpu / max(result.requests, 1) * 1e6, 1),
    }
    if variant.redis is not None and keys_before is not None:
        # Walking the filled users again adds no key: the fill wrote the app's own keys.
        row["keys_added"] = dbsize(variant.redis) - keys_before
    return row


def pairs(chosen: list[Variant]) -> list[tuple[Variant, ...]]:
    """What each round measures: every point beside a run of its storage's one-user point, so
    a ratio divides two runs made within seconds of each other (a shared machine drifts over
    the minutes a whole round takes). A storage with no other point runs its one user alone."""
    found: list[tuple[Variant, ...]] = []
    for storage in dict.fromkeys(v.storage for v in chosen):
        mine = [v for v in chosen if v.storage == storage]
        one = next((v for v in mine if users_of(v) == 1), None)
        others = [v for v in mine if v is not one]
        if one is None:
            found += [(v,) for v in others]
        else:
            found += [(one, v) for v in others] or [(one,)]
    return found


def run_curve(chosen: list[Variant], wrk: Wrk, *, rounds: int, seconds: float, warmup: float,
              echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    rows = []
    planned = pairs(chosen)
    for number in range(rounds):
        shift = number % len(planned)
        for pair in planned[shift:] + planned[:shift]:
            # Which of the two goes first alternates by round.
            for variant in pair if number % 2 == 0 else pair[::-1]:
                row = measure_point(variant, wrk, seconds, warmup, offset=number * 7919)
                row["round"] = number + 1
                row["pair"] = users_of(pair[-1])  # the point this run is paired for
                rows.append(row)
                echo(f"users round {number + 1}/{rounds} {variant.name:>20}: "
                     f"{row['rps']:8.0f} req/s  p99 {row['p99_ms']:6.2f} ms  "
                     f"app CPU {row['app_cpu_us']:6.1f} µs/req")
    return rows
