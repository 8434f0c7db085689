"""The bench's report: medians and same-round ratios, the machine, and the files it writes
(benchmarks.md, benchmarks.json with every raw run, benchmarks.png)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ..processes import MissingBinary, find_binary
from .wrk import Wrk

PACKAGES = [
    "chatlimit",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "slowapi",
    "limits",
    "redis",
    "hiredis",
    "pydantic",
]



def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _version(argv: list[str], pattern: str) -> str:
    try:
        argv[0] = find_binary(argv[0])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (MissingBinary, OSError, subprocess.SubprocessError):
        return "not installed"
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(1) if found else "unknown"


def machine(wrk: Wrk) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "redis_server": _version(["redis-server", "--version"], r"v=(\S+)"),
        "nginx": _version(["nginx", "-v"], r"nginx/(\S+)"),
        "wrk": wrk.version(),
        "packages": versions,
        "load_before": load_average(),
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _same_round(mine: list[dict[str, Any]], others: dict[int, dict[str, Any]]) -> list[float]:
    return [r["rps"] / others[r["round"]]["rps"] for r in mine
            if r["round"] in others and others[r["round"]]["rps"]]


def summarise(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    by_round: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        by_round.setdefault(r["variant"], {})[r["round"]] = r
    base = by_round.get("baseline", {})
    bare = by_round.get("bare", {})
    out = []
    for name in names:
        mine = [r for r in rows if r["variant"] == name]
        paired = [
            (r, base[r["round"]]) for r in mine if r["round"] in base and base[r["round"]]["rps"]
        ]
        ratios = [r["rps"] / b["rps"] for r, b in paired]
        summary = {
            "variant": name,
            "rounds": len(mine),
            "rps": _median([r["rps"] for r in mine]),
            "rps_min": min(r["rps"] for r in mine),
            "rps_max": max(r["rps"] for r in mine),
            "ratio": _median(ratios),
            "ratio_min": min(ratios, default=None),
            "ratio_max": max(ratios, default=None),
            "p50_ms": _median([r["p50_ms"] for r in mine]),
            "p99_ms": _median([r["p99_ms"] for r in mine]),
            "p99_ratio": _median([r["p99_ms"] / b["p99_ms"] for r, b in paired if b["p99_ms"]]),
            # On a saturated single worker, 1/throughput is the time each request takes.
            "added_us": _median([1e6 / r["rps"] - 1e6 / b["rps"] for r, b in paired if r["rps"]]),
            "app_cpu_us": _median([r["app_cpu_us"] for r in mine]),
            "app_cpu_ratio": _median(
                [r["app_cpu_us"] / b["app_cpu_us"] for r, b in paired if b["app_cpu_us"]]
            ),
            "app_cpu_ratio_min": min(
                [r["app_cpu_us"] / b["app_cpu_us"] for r, b in paired if b["app_cpu_us"]],
                default=None),
            "app_cpu_ratio_max": max(
                [r["app_cpu_us"] / b["app_cpu_us"] for r, b in paired if b["app_cpu_us"]],
                default=None),
            # The ceiling: a bare FastAPI app with the same contract, same round.
            "bare_ratio": _median(_same_round(mine, bare)),
            "redis_cpu_us": _median(
                [r["redis_cpu_us"] for r in mine if r["redis_cpu_us"] is not None]
            ),
            "redis_commands_per_request": _median(
                [
                    r["redis_commands_per_request"]
                    for r in mine
                    if r["redis_commands_per_request"] is not None
                ]
            ),
            "round_trips_per_request": _median(
                [
                    r["round_trips_per_request"]
                    for r in mine
                    if r["round_trips_per_request"] is not None
                ]
            ),
            "non_2xx": sum(r["non_2xx"] for r in mine),
            "socket_errors": sum(r["socket_errors"] for r in mine),
        }
        if name.endswith("nginx-3"):
            one = by_round.get(name.replace("nginx-3", "nginx-1"), {})
            if one:
                summary["ratio_to_one_replica"] = _median(_same_round(mine, one))
        # chatlimit against stock slowapi, the same storage and strategy, same round.
        stock = by_round.get(f"slowapi-{name}", {})
        if stock:
            times = _same_round(mine, stock)
            summary["vs_slowapi"] = _median(times)
            summary["vs_slowapi_min"] = min(times, default=None)
            summary["vs_slowapi_max"] = max(times, default=None)
        out.append(summary)
    return out


def build(
    config: dict[str, Any], machine_info: dict[str, Any], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    names = list(config["variants"])
    summary = summarise(rows, names)
    return {
        "config": config,
        "machine": machine_info,
        "summary": summary,
        "targets": [],  # judged once every section has run (targets.evaluate)
        "runs": rows,
    }


# The config keys that belong to one section; the rest describe the main table's runs.
_SECTION_CONFIG = {"users": ("users", "memory_users"), "streams": ("streams",)}


def merge(full: dict[str, Any], run: dict[str, Any], sections: set[str]) -> dict[str, Any]:
    """A run of some sections (`--sections`) folded into the full report it re-measures, so a
    re-run never drops the other sections: each section it ran replaces the report's own and
    is marked with the run's date (the report says which run each section comes from)."""
    from .targets import evaluate

    merged = {**full, "config": dict(full.get("config", {}))}
    if "main" in sections:
        own = {k for keys in _SECTION_CONFIG.values() for k in keys} | {"sections"}
        merged["summary"], merged["runs"] = run["summary"], run["runs"]
        merged["config"].update({k: v for k, v in run["config"].items() if k not in own})
        merged["main_run"] = {k: run["machine"][k]
                              for k in ("date", "load_before", "wall_seconds")}
    for name, keys in _SECTION_CONFIG.items():
        if name in sections and run.get(name):
            merged[name] = {**run[name], "date": run["machine"]["date"]}
            merged["config"].update({k: run["config"][k] for k in keys if k in run["config"]})
    if "ceiling" in sections and run.get("ceiling"):
        merged["ceiling"], merged["ceiling_date"] = run["ceiling"], run["machine"]["date"]
    merged["targets"] = evaluate(merged)
    return merged


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(report: dict[str, Any]) -> str:
    labels = report["config"]["variants"]
    lines = [
        "| variant | req/s median (min-max) | ratio to baseline, same round: median (min-max) "
        "| ÷ bare FastAPI | added per request | p50 ms | p99 ms | p99 ÷ baseline p99 "
        "| app CPU µs / req (÷ baseline) | Redis CPU µs / req | Redis commands / req "
        "| round trips / req | non-2xx |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["summary"]:
        ratio = f"{_fmt(s['ratio'])} ({_fmt(s['ratio_min'])}-{_fmt(s['ratio_max'])})"
        if "ratio_to_one_replica" in s:
            ratio += f"; {_fmt(s['ratio_to_one_replica'])}x nginx + 1 replica"
        if "vs_slowapi" in s:
            ratio += f"; {_fmt(s['vs_slowapi'])}x stock slowapi"
        added = (
            "-"
            if s["variant"] == "baseline" or s["added_us"] is None
            else f"{s['added_us']:+.0f} µs"
        )
        rps = f"{s['rps']:,.0f} ({s['rps_min']:,.0f}-{s['rps_max']:,.0f})"
        cpu = f"{_fmt(s['app_cpu_us'], 0)} ({_fmt(s['app_cpu_ratio'])})"
        lines.append(
            f"| {labels[s['variant']]} | {rps} | {ratio} | {_fmt(s.get('bare_ratio'))} "
            f"| {added} | {_fmt(s['p50_ms'])} "
            f"| {_fmt(s['p99_ms'])} | {_fmt(s['p99_ratio'])} | {cpu} "
            f"| {_fmt(s['redis_cpu_us'], 0)} "
            f"| {_fmt(s['redis_commands_per_request'])} | {_fmt(s['round_trips_per_request'])} "
            f"| {s['non_2xx']} |"
        )
    return "\n".join(lines)


def targets_table(report: dict[str, Any]) -> str:
    lines = ["| target | variant | measure | target | measured: median (min-max over rounds) "
             "| met |", "|---|---|---|---|---|---|"]
    for t in report["targets"]:
        spread = f" ({_fmt(t['min'])}-{_fmt(t['max'])})" if t.get("min") is not None else ""
        lines.append(
            f"| {t['section']} | {t['variant']} | {t['what']} | {t['target']} "
            f"| {_fmt(t['value'])}{spread} | {'yes' if t['met'] else '**no**'} |"
        )
    return "\n".join(lines)


def write(report: dict[str, Any], out: Path) -> list[Path]:
    from .chart import chart_png, streams_png, users_png
    from .markdown import markdown

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "benchmarks.json", out / "benchmarks.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    chart = chart_png(report, out / "benchmarks.png")
    users = users_png(report, out / "benchmarks-users.png")
    streams = streams_png(report, out / "benchmarks-streams.png")
    paths[1].write_text(markdown(report, table(report), targets_table(report), chart is not None,
                                 users is not None, streams is not None))
    return [*paths, *[p for p in (chart, users, streams) if p]]
