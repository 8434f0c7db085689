"""The main table's rounds: each variant warmed, probed (Redis commands and round trips per
request, exactly) and loaded with wrk, interleaved, the order rotated each round."""

from __future__ import annotations

import http.client
import itertools
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ...storage.redis import round_trips
from ..processes import RedisServer, wait_until
from .servers import Variant, cpu_seconds
from .wrk import POST_BODY, USER_AGENT, Wrk

PROBE_REQUESTS = 50


def _admin(redis: RedisServer) -> Any:
    import redis as redis_py

    return redis_py.Redis(port=redis.port, socket_timeout=5)


def _quiet(admin: Any) -> None:
    """Wait until Redis has seen no new command for 0.3 s: the previous run's last in-flight
    requests (up to one per wrk connection, slow on a busy machine) must not land in the
    next count."""
    seen: list[int] = []

    def settled() -> bool:
        seen.append(int(admin.info("stats")["total_commands_processed"]))
        last = seen[-4:]
        # Our own INFO is the only new command between two reads.
        return len(last) == 4 and all(b == a + 1 for a, b in itertools.pairwise(last))

    wait_until(settled, timeout=20, interval=0.1, what="Redis to go quiet")


def _redis_cpu(admin: Any) -> float:
    cpu = admin.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def probe(variant: Variant, admin: Any) -> tuple[float, float]:
    """Redis commands and client round trips per request, exactly: PROBE_REQUESTS requests one
    after another, between CONFIG RESETSTAT and INFO commandstats."""
    _quiet(admin)
    admin.config_resetstat()
    parts = urlsplit(variant.url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    failed = 0
    try:
        for _ in range(PROBE_REQUESTS):
            connection.request("POST", "/chat", body=POST_BODY, headers=headers)
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                # Stock slowapi answers 500 when Redis times out: a finding, not a crash.
                failed += 1
                connection.close()
    finally:
        connection.close()
    if failed:
        print(f"{variant.name}: {failed} of {PROBE_REQUESTS} probe requests failed",
              file=sys.stderr)
    stats = admin.info("commandstats")
    commands = sum(
        int(s["calls"])
        for name, s in stats.items()
        if name.removeprefix("cmdstat_").split("|")[0] not in ("config", "info")
    )
    if variant.engine == "slowapi":
        trips = _trips_outside(stats, _limits_script_commands(variant.strategy))
    else:
        trips = round_trips(stats, variant.strategy)
    return commands / PROBE_REQUESTS, trips / PROBE_REQUESTS


# The Lua scripts of limits' RedisStorage (stock slowapi's storage) each strategy runs.
_LIMITS_SCRIPTS = {
    "fixed-window": ("incr_expire.lua",),
    "moving-window": ("moving_window.lua", "acquire_moving_window.lua"),
    "sliding-window-counter": ("sliding_window.lua", "acquire_sliding_window.lua"),
}


def _limits_script_commands(strategy: str) -> set[str]:
    """The commands limits' scripts run inside Redis for `strategy`: the rest went over the
    wire (slowapi's header lookups, GET and TTL on a fixed window, are round trips)."""
    import re
    from importlib import resources

    folder = resources.files("limits").joinpath("resources", "redis", "lua_scripts")
    text = "".join(folder.joinpath(name).read_text() for name in _LIMITS_SCRIPTS[strategy])
    return {m.lower() for m in re.findall(r"redis\.call\(\s*['\"](\w+)['\"]", text)}


def _trips_outside(stats: dict[str, Any], inside: set[str]) -> int:
    """Client round trips: every command but those the scripts run and our own CONFIG/INFO."""
    return sum(int(s["calls"]) for name, s in stats.items()
               if name.removeprefix("cmdstat_").split("|")[0] not in inside | {"config", "info"})


def measure(variant: Variant, wrk: Wrk, seconds: float, warmup: float) -> dict[str, Any]:
    admin = _admin(variant.redis) if variant.redis else None
    if admin is not None:
        admin.flushall()
    wrk.run(variant.url, warmup)
    commands = trips = 0.0
    if admin is not None:
        commands, trips = probe(variant, admin)
        redis_cpu = _redis_cpu(admin)
    app_cpu = cpu_seconds(variant.app_pids)
    result = wrk.run(variant.url, seconds)
    app_cpu = cpu_seconds(variant.app_pids) - app_cpu
    requests = max(result.requests, 1)
    row: dict[str, Any] = {
        "variant": variant.name,
        "requests": result.requests,
        "seconds": round(result.seconds, 3),
        "rps": round(result.rps, 1),
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "mean_ms": round(result.mean_ms, 3),
        "non_2xx": result.non_2xx,
        "socket_errors": result.socket_errors,
        # CPU time per request is what the noise of a shared machine disturbs least.
        "app_cpu_us": round(app_cpu / requests * 1e6, 1),
        "redis_cpu_us": None,
        "redis_commands_per_request": round(commands, 3),
        "round_trips_per_request": round(trips, 3),
    }
    if admin is not None:
        row["redis_cpu_us"] = round((_redis_cpu(admin) - redis_cpu) / requests * 1e6, 1)
        admin.close()
    return row


def run_rounds(
    chosen: list[Variant],
    wrk: Wrk,
    *,
    rounds: int,
    seconds: float,
    warmup: float,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    rows = []
    for number in range(rounds):
        shift = number % len(chosen)
        order = chosen[shift:] + chosen[:shift]
        for position, variant in enumerate(order):
            row = measure(variant, wrk, seconds, warmup)
            row.update(round=number + 1, position=position + 1)
            rows.append(row)
            echo(
                f"round {number + 1}/{rounds} {variant.name:>9}: {row['rps']:8.0f} req/s  "
                f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
                f"app CPU {row['app_cpu_us']:6.1f} µs/req"
            )
    return rows
