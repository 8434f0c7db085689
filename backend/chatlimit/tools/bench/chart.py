"""The bench's chart: throughput ratios with the targets, and latency, per variant (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .targets import MEMORY_RATIO, REDIS_RATIO


def chart_png(report: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    labels = [s["variant"] for s in summary]
    ratios = [s["ratio"] or 0 for s in summary]
    low = [max(0.0, r - (s["ratio_min"] or r)) for r, s in zip(ratios, summary, strict=True)]
    high = [max(0.0, (s["ratio_max"] or r) - r) for r, s in zip(ratios, summary, strict=True)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    left.bar(labels, ratios, yerr=[low, high], capsize=4, color="#4c72b0")
    left.axhline(
        MEMORY_RATIO, color="#55a868", linestyle="--", linewidth=1, label="memory target 0.85"
    )
    left.axhline(
        REDIS_RATIO, color="#c44e52", linestyle="--", linewidth=1, label="Redis target 0.60"
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
