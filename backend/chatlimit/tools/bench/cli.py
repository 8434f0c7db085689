"""`chatlimit bench`: what rate limiting costs, measured with real servers and wrk.

Every variant is the same app under `chatlimit serve` (one uvicorn worker); only its
environment differs. The baseline is that app with RATE_LIMIT_ENABLED=false. Variants run
interleaved, the order rotated each round, and each ratio compares a variant with the
baseline of the same round, so a noisy neighbour slows both sides of a ratio alike.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...storage.redis import round_trips
from ...strategies import NAMES
from .. import TOOLS
from ..processes import MissingBinary, RedisServer, find_binary, wait_until
from .servers import (
    BENCH_LIMIT,
    Variant,
    cpu_seconds,
    running,
    slowapi_engine_available,
    variants,
)
from .targets import evaluate
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


def add_parser(commands: Any) -> None:
    bench = commands.add_parser("bench", help=TOOLS["bench"])
    bench.add_argument(
        "--quick", action="store_true", help="one short round, under a minute (a smoke run)"
    )
    bench.add_argument("--rounds", type=int, help="interleaved rounds (default 5; --quick 1)")
    bench.add_argument(
        "--duration", type=float, help="seconds of load per run (default 10; --quick 2)"
    )
    bench.add_argument(
        "--warmup", type=float, help="seconds of warm-up before each run (default 2; --quick 1)"
    )
    bench.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    bench.add_argument(
        "--only", help="comma-separated variant names, e.g. baseline,memory,redis-fw"
    )
    bench.add_argument("--no-scaled", action="store_true", help="skip nginx + replicas")
    bench.add_argument(
        "--sections", default=",".join(SECTIONS),
        help=f"what to run, comma-separated (default all: {','.join(SECTIONS)})",
    )
    bench.add_argument(
        "--users", help="users curve sizes (default 1,10000,100000,1000000; --quick 1,1000)"
    )
    bench.add_argument(
        "--memory-users",
        help="users curve sizes for memory:// only, each filled over HTTP (default: --users); "
        "a million takes minutes at a few thousand req/s",
    )
    bench.add_argument("--streams", help="concurrent streams (default 100,1000; --quick 10)")
    bench.add_argument(
        "--out",
        type=Path,
        help="where benchmarks.md/.json/.png go (default docs/; --quick: a temporary directory)",
    )
    bench.set_defaults(func=main)

SECTIONS = ("main", "users", "streams", "ceiling")
SMOKE_NOTE = ("bench --quick: one short round is a smoke run that the benchmark works, "
              "not a measurement; quote only a full `chatlimit bench`")


def _sizes(text: str | None, default: str) -> list[int]:
    return [int(n.replace("_", "")) for n in (text or default).split(",") if n.strip()]


def main(args: argparse.Namespace) -> int:
    from . import report as bench_report

    quick = bool(args.quick)
    rounds = args.rounds or (1 if quick else 3)
    seconds = args.duration or (2.0 if quick else 8.0)
    warmup = args.warmup or (1.0 if quick else 2.0)
    out: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="chatlimit-bench-")) if quick else Path("docs")
    )
    sections = {s.strip() for s in args.sections.split(",")}
    if quick:
        print(SMOKE_NOTE, flush=True)
    strategies = list(NAMES)
    scaled = not args.no_scaled and _nginx_available()
    engines = ("chatlimit", "slowapi") if slowapi_engine_available() else ("chatlimit",)
    chosen = variants(strategies, scaled, engines) if "main" in sections else []
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")} | {"baseline", "bare"}
        chosen = [v for v in chosen if v.name in wanted]
    # SIGTERM unwinds like an exception, so every server started so far is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="chatlimit-bench-run-") as tmp:
        wrk = Wrk(Path(tmp), connections=args.connections)
        config = {
            "rounds": rounds,
            "seconds": seconds,
            "warmup": warmup,
            "connections": args.connections,
            "threads": wrk.threads,
            "limit": BENCH_LIMIT,
            "quick": quick,
            "sections": sorted(sections),
            "engines": list(engines),
            "variants": {v.name: v.label for v in chosen},
        }
        machine = bench_report.machine(wrk)
        rows: list[dict[str, Any]] = []
        if chosen:
            with running(chosen, Path(tmp)):
                rows = run_rounds(chosen, wrk, rounds=rounds, seconds=seconds, warmup=warmup)
        report = bench_report.build(config, machine, rows)
        if "users" in sections:
            sizes = _sizes(args.users, "1,1000" if quick else "1,10000,100000,1000000")
            memory = _sizes(args.memory_users, ",".join(map(str, sizes)))
            report["users"] = _users(wrk, Path(tmp) / "users", sizes, memory, rounds, seconds,
                                     warmup)
            config["users"], config["memory_users"] = sizes, memory
        if "streams" in sections:
            sizes = _sizes(args.streams, "10" if quick else "100,1000")
            report["streams"] = _streams(Path(tmp) / "streams", sizes, rounds)
            config["streams"] = sizes
        if "ceiling" in sections:
            report["ceiling"] = _ceiling(Path(tmp) / "ceiling", 5_000 if quick else 50_000)
    machine["load_after"] = bench_report.load_average()
    machine["wall_seconds"] = round(time.time() - started, 1)
    report["targets"] = evaluate(report)
    paths = bench_report.write(report, out)
    print(bench_report.table(report))
    print("wrote " + ", ".join(str(p) for p in paths))
    if quick:
        print(SMOKE_NOTE)  # again under the table, where the figures are read
    return 0


def _users(wrk: Wrk, workdir: Path, sizes: list[int], memory: list[int], rounds: int,
           seconds: float, warmup: float) -> dict[str, Any]:
    from . import layout
    from .curves import summarise_users
    from .users import curve_servers, curve_variants, run_curve, users_of

    workdir.mkdir(parents=True, exist_ok=True)
    chosen = [v for v in curve_variants(sorted({*sizes, *memory}))
              if users_of(v) in (memory if v.storage == "memory" else sizes)]
    with curve_servers(chosen, workdir, wrk) as fills:
        rows = run_curve(chosen, wrk, rounds=rounds, seconds=seconds, warmup=warmup)
    largest = max(sizes)
    # limits' own layout for the same users (the curve's point nearest LAYOUT_USERS: bytes per
    # key do not change with the count, and limits' MemoryStorage takes minutes for a million),
    # and MEMORY_MAX_KEYS' default at the largest size.
    same = max((n for n in sizes if n <= layout.LAYOUT_USERS), default=largest)
    found: dict[str, Any] = {"users": same,
                             "limits_memory": layout.in_child("limits-memory", same),
                             "chatlimit_memory": layout.in_child("chatlimit-memory", same),
                             # In process, where an HTTP fill would take too long: the
                             # check's own CPU at the largest size, room for every key.
                             "chatlimit_memory_largest": layout.in_child("chatlimit-memory",
                                                                         largest),
                             "capped": layout.in_child("chatlimit-memory", largest,
                                                       layout.DEFAULT_MAX_KEYS)}
    redis = RedisServer(workdir, name="layout-redis").start()
    try:
        found["limits_redis"] = layout.limits_redis(redis, same)
    finally:
        redis.stop()
    for name, row in found.items():
        print(f"layout {name}: {row}", flush=True)
    return summarise_users(rows, fills, found)


def _streams(workdir: Path, sizes: list[int], rounds: int) -> dict[str, Any]:
    from .curves import summarise_streams
    from .streaming import run_streaming, stream_variants

    workdir.mkdir(parents=True, exist_ok=True)
    chosen = stream_variants()
    with running(chosen, workdir):
        rows = run_streaming(chosen, sizes, rounds=rounds)
    return summarise_streams(rows)


def _ceiling(workdir: Path, calls: int) -> list[dict[str, Any]]:
    from .ceiling import run_ceiling

    workdir.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(workdir, name="ceiling-redis").start()
    try:
        return run_ceiling(redis, calls=calls)
    finally:
        redis.stop()


def _nginx_available() -> bool:
    try:
        find_binary("nginx")
    except MissingBinary as exc:
        print(f"bench: skipping the scaled variants: {exc}", file=sys.stderr)
        return False
    return True
