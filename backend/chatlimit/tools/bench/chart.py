"""The bench's charts (PNG): throughput ratios and latency per variant, cost against users,
and streamed replies with the limiter off and on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .targets import STREAM_FACTOR, THROUGHPUT, USERS_FLAT


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def users_png(report: dict[str, Any], path: Path) -> Path | None:
    """Cost against users: req/s ÷ one user's, and app CPU per request, per storage."""
    plt = _pyplot()
    points = (report.get("users") or {}).get("summary")
    if plt is None or not points:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    for storage, colour in (("memory", "#55a868"), ("redis", "#c44e52")):
        mine = sorted((p for p in points if p["storage"] == storage), key=lambda p: p["users"])
        if not mine:
            continue
        xs = [p["users"] for p in mine]
        left.errorbar(xs, [p["ratio"] or 0 for p in mine],
                      yerr=[[max(0.0, (p["ratio"] or 0) - (p["ratio_min"] or 0)) for p in mine],
                            [max(0.0, (p["ratio_max"] or 0) - (p["ratio"] or 0)) for p in mine]],
                      marker="o", capsize=4, color=colour, label=storage)
        right.plot(xs, [p["app_cpu_us"] or 0 for p in mine], "o-", color=colour, label=storage)
    left.axhline(USERS_FLAT, color="#888888", linestyle="--", linewidth=1,
                 label=f"target {USERS_FLAT}")
    left.set_ylabel("req/s ÷ one user's, run beside it (median, min-max)")
    right.set_ylabel("app CPU µs per request (median)")
    largest = max(p["users"] for p in points)
    for axis in (left, right):
        axis.set_xscale("log")  # one user is 10^0
        axis.set_xlim(0.7, largest * 1.5)
        axis.set_xlabel("distinct users in the window")
        axis.legend(fontsize=8)
    left.set_title("Throughput against users")
    right.set_title("CPU per request against users")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def streams_png(report: dict[str, Any], path: Path) -> Path | None:
    """Per number of concurrent streams: time to first token with the limiter on ÷ off (p50
    and p99, same round, with the target), and app CPU per reply, off beside on."""
    plt = _pyplot()
    # The in-app model's rows, those the targets judge (the table has the upstream pair).
    rows = [r for r in (report.get("streams") or {}).get("summary") or []
            if not r.get("upstream")]
    if plt is None or not rows:
        return None
    counts = sorted({r["streams"] for r in rows})
    variants = list(dict.fromkeys(r["variant"] for r in rows))  # off first, as measured
    mine = sorted((r for r in rows if r["variant"] != variants[0]), key=lambda r: r["streams"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    for i, (key, label, colour) in enumerate((("ttft_p50_ratio", "TTFT p50", "#4c72b0"),
                                              ("ttft_p99_ratio", "TTFT p99", "#dd8452"))):
        xs = [counts.index(r["streams"]) + i * 0.4 for r in mine]
        values = [r[key] or 0 for r in mine]
        left.bar(xs, values, 0.4, color=colour, label=label,
                 yerr=[[max(0.0, v - (r[f"{key}_min"] or v)) for v, r in zip(values, mine,
                                                                               strict=True)],
                       [max(0.0, (r[f"{key}_max"] or v) - v) for v, r in zip(values, mine,
                                                                              strict=True)]],
                 capsize=4)
    left.axhline(STREAM_FACTOR, color="#c44e52", linestyle="--", linewidth=1,
                 label=f"target {STREAM_FACTOR}")
    left.set_xticks([j + 0.2 for j in range(len(counts))], [f"{c:,} streams" for c in counts])
    left.set_ylabel("limiter on ÷ off, same round (median, min-max)")
    left.set_title("Time to first token")
    width = 0.8 / len(variants)
    for i, (name, colour) in enumerate(zip(variants, ("#4c72b0", "#c44e52", "#55a868"),
                                           strict=False)):
        by_count = {r["streams"]: r for r in rows if r["variant"] == name}
        right.bar([j + i * width for j, c in enumerate(counts) if c in by_count],
                  [by_count[c]["app_cpu_ms_per_reply"] or 0 for c in counts if c in by_count],
                  width, color=colour, label=name)
    right.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(counts))],
                     [f"{c:,} streams" for c in counts])
    right.set_ylabel("app CPU ms per reply (median)")
    right.set_title("CPU per streamed reply")
    for axis in (left, right):
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def chart_png(report: dict[str, Any], path: Path) -> Path | None:
    plt = _pyplot()
    summary = report["summary"]
    if plt is None or not summary:
        return None
    labels = [s["variant"] for s in summary]
    ratios = [s["ratio"] or 0 for s in summary]
    low = [max(0.0, r - (s["ratio_min"] or r)) for r, s in zip(ratios, summary, strict=True)]
    high = [max(0.0, (s["ratio_max"] or r) - r) for r, s in zip(ratios, summary, strict=True)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    left.bar(labels, ratios, yerr=[low, high], capsize=4, color="#4c72b0")
    left.axhline(
        THROUGHPUT, color="#c44e52", linestyle="--", linewidth=1, label=f"target {THROUGHPUT}"
    )
    left.set_ylabel("req/s ÷ baseline, same round (median, min-max)")
    left.set_title("Throughput")
    left.legend(fontsize=8)
    right.bar(labels, [s["p50_ms"] or 0 for s in summary], color="#8172b2", label="p50")
    right.plot(labels, [s["p99_ms"] or 0 for s in summary], "o", color="#dd8452", label="p99")
    right.set_ylabel("latency, ms (median over rounds)")
    right.set_title("Latency")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=8, labelrotation=30)
    m = report["machine"]
    fig.suptitle(
        f"chatlimit bench, {m['date']}: {m['cores']} cores, one uvicorn worker per replica, "
        f"wrk -c{report['config']['connections']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
