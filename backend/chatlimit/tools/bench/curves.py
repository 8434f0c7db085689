"""The report's sections beyond the main table: the users curve (with bytes per key against
limits' layout), the streaming table and Redis's own ceiling; medians and same-round ratios."""

from __future__ import annotations

import statistics
from typing import Any


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _spread(values: list[float]) -> tuple[float | None, float | None, float | None]:
    return _median(values), min(values, default=None), max(values, default=None)


def summarise_users(rows: list[dict[str, Any]], fills: dict[str, dict[str, Any]],
                    layout: dict[str, Any]) -> dict[str, Any]:
    # Each point divides by the one-user run made beside it (users.pairs); the runs of an
    # older report, without pairs, by the one-user run of the same round.
    one = {(r["storage"], r["round"], r.get("pair")): r for r in rows if r["users"] == 1}
    summary = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        storage, users = mine[0]["storage"], mine[0]["users"]
        paired = [(r, one[key]) for r in mine
                  if (key := (storage, r["round"], r.get("pair"))) in one]
        ratio, low, high = _spread([r["rps"] / o["rps"] for r, o in paired if o["rps"]])
        summary.append({
            "variant": name, "storage": storage, "users": users,
            "rounds": len({r["round"] for r in mine}),  # the one-user point runs once a pair
            "rps": _median([r["rps"] for r in mine]), "ratio": ratio, "ratio_min": low,
            "ratio_max": high, "p99_ms": _median([r["p99_ms"] for r in mine]),
            "app_cpu_us": _median([r["app_cpu_us"] for r in mine]),
            "cpu_ratio": _median([r["app_cpu_us"] / o["app_cpu_us"] for r, o in paired
                                  if o["app_cpu_us"]]),
            "keys_added": max((r.get("keys_added") or 0 for r in mine), default=0),
            "non_2xx": sum(r["non_2xx"] for r in mine),
            **{k: v for k, v in fills.get(name, {}).items() if k != "users"},
        })
    bytes_rows = {}
    for storage, limits_key in (("memory", "limits_memory"), ("redis", "limits_redis")):
        ours = [p for p in summary if p["storage"] == storage and p.get("bytes_per_key")]
        theirs = layout.get(limits_key)
        same = [p for p in ours if p["users"] == layout.get("users")]
        if ours:
            largest = (same or sorted(ours, key=lambda p: p["users"]))[-1]
            mine_bytes = largest["bytes_per_key"]
            ratio = mine_bytes / theirs["bytes_per_key"] if theirs else None
            bytes_rows[storage] = {"users": largest["users"], "bytes_per_key": mine_bytes,
                                   "limits_bytes_per_key": theirs and theirs["bytes_per_key"],
                                   "ratio": ratio and round(ratio, 3)}
    return {"summary": summary, "bytes": bytes_rows, "layout": layout, "runs": rows}


def summarise_streams(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from .streaming import baseline_of

    # Each row is divided by limiter off with the same model (in the app, or upstream).
    off = {(r["variant"], r["streams"], r["round"]): r for r in rows
           if r["variant"] == baseline_of(r.get("upstream", False))}
    summary = []
    for name, streams in dict.fromkeys((r["variant"], r["streams"]) for r in rows):
        mine = [r for r in rows if r["variant"] == name and r["streams"] == streams]
        upstream = mine[0].get("upstream", False)
        base = baseline_of(upstream)
        paired = [(r, off[(base, streams, r["round"])]) for r in mine
                  if (base, streams, r["round"]) in off]
        row: dict[str, Any] = {
            "variant": name, "streams": streams, "rounds": len(mine), "upstream": upstream,
            "baseline": base,
            "ttft_p50_ms": _median([r["ttft_p50_ms"] for r in mine]),
            "ttft_p99_ms": _median([r["ttft_p99_ms"] for r in mine]),
            "tokens_per_s_p50": _median([r["tokens_per_s_p50"] for r in mine]),
            "tokens_per_s_total": _median([r["tokens_per_s_total"] for r in mine]),
            "app_cpu_ms_per_reply": _median([r["app_cpu_ms_per_reply"] for r in mine]),
            "storage_calls_per_reply": _median([r["storage_calls_per_reply"] for r in mine
                                                if r["storage_calls_per_reply"] is not None]),
            "non_200": sum(r["non_200"] + r["errors"] for r in mine),
        }
        for key, field, invert in (("ttft_p50_ratio", "ttft_p50_ms", False),
                                   ("ttft_p99_ratio", "ttft_p99_ms", False),
                                   ("tokens_ratio", "tokens_per_s_p50", True),
                                   ("cpu_ratio", "app_cpu_ms_per_reply", False)):
            values = [(o[field] / r[field] if invert else r[field] / o[field])
                      for r, o in paired if (r[field] if invert else o[field])]
            row[key], row[f"{key}_min"], row[f"{key}_max"] = _spread(values)
        summary.append(row)
    # Per size and model, limiter off first: the row each ratio divides by.
    summary.sort(key=lambda r: (r["streams"], r["upstream"], r["variant"] != r["baseline"]))
    return {"summary": summary, "runs": rows}


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _range(value: float | None, low: float | None, high: float | None) -> str:
    return f"{_f(value)} ({_f(low)}-{_f(high)})" if value is not None else "-"


def users_table(users: dict[str, Any]) -> str:
    lines = ["| storage | users in the window | keys | req/s median | ÷ one user, run beside it: "
             "median (min-max) | app CPU µs / req (÷ one user) | p99 ms | bytes per key "
             "| fill s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in users["summary"]:
        lines.append(
            f"| {p['storage']} | {p['users']:,} | {p.get('keys', 0):,} | {_f(p['rps'], 0)} "
            f"| {_range(p['ratio'], p['ratio_min'], p['ratio_max'])} "
            f"| {_f(p['app_cpu_us'], 0)} ({_f(p['cpu_ratio'])}) | {_f(p['p99_ms'])} "
            f"| {_f(p.get('bytes_per_key'), 0)} ({p.get('measure', '-')}) "
            f"| {_f(p.get('fill_seconds'), 0)} |")
    return "\n".join(lines)


def bytes_table(users: dict[str, Any]) -> str:
    lines = ["| storage | users | chatlimit bytes per key | limits' layout, same users "
             "| ratio |", "|---|---|---|---|---|"]
    for storage, row in users["bytes"].items():
        lines.append(f"| {storage} | {row['users']:,} | {_f(row['bytes_per_key'], 0)} "
                     f"| {_f(row['limits_bytes_per_key'], 0)} | {_f(row['ratio'])} |")
    return "\n".join(lines)


def streams_table(streams: dict[str, Any]) -> str:
    lines = ["| variant | streams | TTFT p50 ms (÷ off) | TTFT p99 ms (÷ off) "
             "| tokens/s per reply, p50 (off ÷ on) | tokens/s, all replies "
             "| app CPU ms / reply (÷ off) | storage calls / reply | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in streams["summary"]:
        lines.append(
            f"| {r['variant']} | {r['streams']:,} | {_f(r['ttft_p50_ms'], 1)} "
            f"({_f(r['ttft_p50_ratio'])}) | {_f(r['ttft_p99_ms'], 1)} ({_f(r['ttft_p99_ratio'])}) "
            f"| {_f(r['tokens_per_s_p50'], 1)} ({_f(r['tokens_ratio'])}) "
            f"| {_f(r['tokens_per_s_total'], 0)} "
            f"| {_f(r['app_cpu_ms_per_reply'])} ({_f(r['cpu_ratio'])}) "
            f"| {_f(r['storage_calls_per_reply'])} | {r['non_200']} |")
    return "\n".join(lines)


def ceiling_table(rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> str:
    end_to_end = {s["variant"]: s for s in summary}
    tags = {"fixed-window": "redis-fw", "moving-window": "redis-mw",
            "sliding-window-counter": "redis-swc"}
    lines = ["| strategy | users | scripts/s (redis-benchmark, pipelined) | Redis CPU µs / call "
             "| end to end: req/s of one app | app ÷ Redis's ceiling |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        app = end_to_end.get(tags.get(r["strategy"], ""), {})
        rps = app.get("rps") if r["users"] == 1 else None
        share = f"{rps / r['scripts_per_s']:.2f}" if rps and r["scripts_per_s"] else "-"
        lines.append(f"| {r['strategy']} | {r['users']:,} | {r['scripts_per_s']:,} "
                     f"| {_f(r['redis_cpu_us_per_call'])} | {_f(rps, 0)} | {share} |")
    return "\n".join(lines)
