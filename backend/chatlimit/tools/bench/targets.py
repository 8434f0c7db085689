"""The benchmark's targets (issue 17), in one place for the report and the charts, and the
one function that judges a report against them."""

from __future__ import annotations

from typing import Any

CPU_MEMORY = 1.05  # app CPU µs per request ÷ limiter-off, memory://
CPU_REDIS = 1.10  # the same on Redis, every strategy
THROUGHPUT = 0.90  # req/s ÷ limiter-off, memory:// and Redis
VS_SLOWAPI = 2.5  # chatlimit on Redis ÷ stock slowapi on Redis, req/s in the same round
ROUND_TRIPS = 1.0  # Redis round trips per request
USERS_FLAT = 0.90  # req/s at N users ÷ at one user, in runs made one after the other
STREAM_FACTOR = 1.10  # streaming, limiter on ÷ off: TTFT p50 and p99, and off ÷ on tokens/s
STREAM_CALLS = 2.0  # storage calls per streamed reply: admission and settlement
BYTES_VS_LIMITS = 1.0  # bytes per key ÷ limits' own layout for the same users


def _target(section: str, variant: str, what: str, value: float | None, op: str,
            threshold: float, spread: tuple[float | None, float | None] = (None, None)
            ) -> dict[str, Any]:
    met = value is not None and (
        value >= threshold if op == ">=" else value <= threshold if op == "<=" else
        abs(value - threshold) < 1e-9)
    return {"section": section, "variant": variant, "what": what, "value": value,
            "min": spread[0], "max": spread[1], "target": f"{op} {threshold:g}", "met": met}


def evaluate(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for s in report["summary"]:
        name = s["variant"]
        if name.startswith(("slowapi-", "nginx", "baseline", "bare")):  # no targets of their own
            continue
        cpu = CPU_MEMORY if name == "memory" else CPU_REDIS
        cpu_spread = (s.get("app_cpu_ratio_min"), s.get("app_cpu_ratio_max"))
        found.append(_target("1 cost", name, "app CPU per request ÷ limiter off",
                             s["app_cpu_ratio"], "<=", cpu, cpu_spread))
        found.append(_target("1 cost", name, "req/s ÷ limiter off", s["ratio"], ">=",
                             THROUGHPUT, (s["ratio_min"], s["ratio_max"])))
        if name.startswith("redis-"):
            found.append(_target("1 cost", name, "round trips per request",
                                 s["round_trips_per_request"], "<=", ROUND_TRIPS))
            if "vs_slowapi" in s:
                found.append(_target("1 cost", name, "req/s ÷ stock slowapi's", s["vs_slowapi"],
                                     ">=", VS_SLOWAPI, (s["vs_slowapi_min"], s["vs_slowapi_max"])))
    users = report.get("users") or {}
    for point in users.get("summary", []):
        if point["users"] > 1:
            found.append(_target("2 users", point["variant"], "req/s ÷ one user's",
                                 point["ratio"], ">=", USERS_FLAT,
                                 (point["ratio_min"], point["ratio_max"])))
    for storage, row in (users.get("bytes") or {}).items():
        if row.get("ratio") is not None:
            found.append(_target("2 users", storage, "bytes per key ÷ limits' layout",
                                 row["ratio"], "<=", BYTES_VS_LIMITS))
    streams = report.get("streams") or {}
    for row in streams.get("summary", []):
        # The targets are the in-app model's rows; the upstream pair is shown beside them.
        if row["variant"] == row.get("baseline", "stream-off") or row.get("upstream"):
            continue
        label = f"{row['variant']} x{row['streams']}"
        for what, key in (("TTFT p50 ÷ limiter off", "ttft_p50_ratio"),
                          ("TTFT p99 ÷ limiter off", "ttft_p99_ratio"),
                          ("tokens/s, limiter off ÷ on", "tokens_ratio")):
            found.append(_target("3 streaming", label, what, row[key], "<=", STREAM_FACTOR,
                                 (row[f"{key}_min"], row[f"{key}_max"])))
        if row.get("storage_calls_per_reply") is not None:
            found.append(_target("3 streaming", label, "storage calls per reply",
                                 row["storage_calls_per_reply"], "==", STREAM_CALLS))
    return found
