"""`chatlimit bench`: what rate limiting costs, measured with real servers and wrk.

Every variant is the same app under `chatlimit serve` (one uvicorn worker); only its
environment differs. The baseline is that app with RATE_LIMIT_ENABLED=false. Variants run
interleaved, the order rotated each round, and each ratio compares a variant with the
baseline of the same round, so a noisy neighbour slows both sides of a ratio alike.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ...strategies import NAMES
from .. import TOOLS
from ..processes import MissingBinary, RedisServer, find_binary
from .rounds import run_rounds
from .servers import (
    BENCH_LIMIT,
    running,
    slowapi_engine_available,
    variants,
)
from .targets import evaluate
from .wrk import Wrk


def add_parser(commands: Any) -> None:
    bench = commands.add_parser("bench", help=TOOLS["bench"])
    bench.add_argument(
        "--quick", action="store_true",
        help="one short round of every section at tiny sizes (a smoke run, not a measurement)"
    )
    bench.add_argument("--rounds", type=int, help="interleaved rounds (default 3; --quick 1)")
    bench.add_argument(
        "--duration", type=float, help="seconds of load per run (default 8; --quick 2)"
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
    existing = out / "benchmarks.json"
    if not quick and sections != set(SECTIONS) and existing.exists():
        # A re-run of some sections lands in the report it re-measures, never over it.
        report = bench_report.merge(json.loads(existing.read_text()), report, sections)
        print(f"merged the sections run ({', '.join(sorted(sections))}) into {existing}")
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
