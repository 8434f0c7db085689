"""The ceiling Redis sets: redis-benchmark running the app's own admission script (the same
EVALSHA, keys and arguments a /chat request sends, both limits), pipelined, so the report can
say how far a request end to end is from what Redis allows.

Two runs per strategy: one user (the same two keys every time, as the main table's wrk) and a
million users (`__rand_int__` in the keys, redis-benchmark's own key randomiser). Redis CPU per
call comes from INFO cpu, as in the main table.
"""

from __future__ import annotations

import csv
import io
import subprocess
from collections.abc import Callable
from typing import Any

from ...limiter.keys import key_suffix
from ...storage.redis import lua_source
from ...strategies import STRATEGIES
from ..processes import RedisServer, find_binary
from .users import _items

CALLS = 200_000
PIPELINE = 16
CLIENTS = 32


def _arguments(strategy: str, users: int) -> list[str]:
    own, ceiling = _items()
    slot = "__rand_int__" if users > 1 else "0123456789ab0123456789ab"
    keys = [f"chatlimit:{{{slot}}}:u:{key_suffix(strategy, 'chat', own)}",
            f"chatlimit:{{{slot}}}:{key_suffix(strategy, 'chat', ceiling)}"]
    args = ["0", "0", "", "0", str(own.amount), str(int(own.get_expiry() * 1000)), "1",
            str(ceiling.amount), str(int(ceiling.get_expiry() * 1000)), "1"]
    return ["2", *keys, *args]


def _redis_cpu(client: Any) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def measure(redis: RedisServer, strategy: str, users: int, calls: int = CALLS) -> dict[str, Any]:
    import redis as redis_py

    client = redis_py.Redis(port=redis.port)
    client.flushall()
    client.config_resetstat()
    sha = client.script_load(lua_source(strategy))
    before = _redis_cpu(client)
    argv = [find_binary("redis-benchmark"), "-p", str(redis.port), "-n", str(calls),
            "-c", str(CLIENTS), "-P", str(PIPELINE), "--csv"]
    if users > 1:
        argv += ["-r", str(users)]
    done = subprocess.run([*argv, "EVALSHA", sha, *_arguments(strategy, users)],
                          capture_output=True, text=True, timeout=300, check=False)
    cpu = _redis_cpu(client) - before
    # redis-benchmark's own start-up probes (CONFIG GET) may fail; the scripts must not.
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    client.close()
    if done.returncode != 0 or stats.get("failed_calls") or stats.get("calls", 0) < calls:
        raise RuntimeError(f"redis-benchmark failed: {done.stderr.strip()[-500:]} {stats}")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    rps = float(rows[-1]["rps"])
    return {
        "strategy": strategy, "users": users, "calls": calls, "scripts_per_s": round(rps),
        "p50_ms": float(rows[-1].get("p50_latency_ms", 0) or 0),
        "redis_cpu_us_per_call": round(cpu / calls * 1e6, 2),
    }


def run_ceiling(redis: RedisServer, *, users: tuple[int, ...] = (1, 1_000_000),
                calls: int = CALLS, echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    rows = []
    for strategy in STRATEGIES:
        for n in users:
            row = measure(redis, strategy, n, calls)
            rows.append(row)
            echo(f"ceiling {strategy:>22} {n:>9,} users: {row['scripts_per_s']:>9,} scripts/s  "
                 f"Redis CPU {row['redis_cpu_us_per_call']:5.2f} µs/call")
    return rows
