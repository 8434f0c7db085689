"""The streaming bench: 100 and 1,000 concurrent streamed replies through one replica at the
demo model's pace (MODEL_TOKEN_DELAY_MS), limiter off against Redis (with token budgets when
this install has them), in interleaved rounds.

Per run: time to first token (p50, p99), each reply's tokens per second, app CPU per reply,
and the storage calls each reply cost, counted by Redis (CONFIG RESETSTAT, then INFO
commandstats after every reply has ended, so the count is exact).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ...settings import Settings
from ...storage.redis import round_trips
from .servers import BENCH_LIMIT, Variant, cpu_seconds

MESSAGE = "tell me a story"  # the demo model's long answer, cut at STREAM_TOKENS
STREAM_TOKENS = 32
REPLIES_SMALL, REPLIES_LARGE = 6, 2  # replies per connection: up to 100 streams, and above
# Through the openai SDK a reply costs the app ~3.6x the CPU of the in-process model: at 1,000
# streams on two shared cores both sides queue for seconds, and their ratio says nothing.
UPSTREAM_MAX_STREAMS = 100


def token_budgets() -> dict[str, str]:
    """The token-budget settings, where this install has them: a budget and a stream cap so
    large that nothing is refused, so the figures show their cost."""
    fields = Settings.model_fields
    env = {}
    if "token_limit" in fields:
        env["TOKEN_LIMIT"] = "1000000000/minute"
    if "max_streams" in fields:
        env["MAX_STREAMS"] = "100"
    return env


def stream_variants() -> list[Variant]:
    base = {"LLM_MAX_TOKENS": str(STREAM_TOKENS), "RATE_LIMIT": BENCH_LIMIT}
    budgets = token_budgets()
    label = "Redis, token budgets on" if budgets else "Redis (no token budgets in this build)"
    return [
        Variant("stream-off", "limiter off", "none", extra=base),
        Variant("stream-redis", label, "redis", extra={**base, **budgets}),
        # The same pair with the model as its own service, as the scaled deployment runs it.
        Variant("stream-off-upstream", "limiter off, model upstream", "none", extra=base,
                upstream=True),
        Variant("stream-redis-upstream", f"{label}, model upstream", "redis",
                extra={**base, **budgets}, upstream=True),
    ]


def baseline_of(upstream: bool) -> str:
    """The limiter-off variant a streaming row is divided by: the one with the same model."""
    return "stream-off-upstream" if upstream else "stream-off"


def _client(url: str, streams: int, replies: int) -> dict[str, Any]:
    parts = urlsplit(url)
    argv = [sys.executable, "-m", "chatlimit.tools.bench.stream", parts.hostname or "127.0.0.1",
            str(parts.port), str(streams), str(replies), MESSAGE]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stream client failed: {done.stderr.strip()[-800:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_streams(variant: Variant, streams: int, replies: int) -> dict[str, Any]:
    admin = None
    if variant.redis is not None:
        import redis as redis_py

        admin = redis_py.Redis(port=variant.redis.port, socket_timeout=5)
    _client(variant.url, min(streams, 10), 1)  # warm: the script loaded, the model imported
    if admin is not None:
        admin.config_resetstat()
    cpu = cpu_seconds(variant.app_pids)
    result = _client(variant.url, streams, replies)
    cpu = cpu_seconds(variant.app_pids) - cpu
    replies_done = max(1, result["replies"])
    row: dict[str, Any] = {"variant": variant.name, "upstream": variant.upstream, **result,
                           "app_cpu_ms_per_reply": round(cpu / replies_done * 1000, 2),
                           "storage_calls_per_reply": None}
    if admin is not None:
        stats = admin.info("commandstats")
        row["storage_calls_per_reply"] = round(
            round_trips(stats, variant.strategy) / replies_done, 3)
        admin.close()
    return row


def run_streaming(chosen: list[Variant], sizes: list[int], *, rounds: int,
                  echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    rows = []
    for number in range(rounds):
        shift = number % len(chosen)
        for streams in sizes:
            # Several replies a connection: one run's TTFT is then a median over a few hundred
            # replies, not over one burst, which a single hiccup of the machine moved by 50%.
            replies = REPLIES_SMALL if streams <= 100 else REPLIES_LARGE
            for variant in chosen[shift:] + chosen[:shift]:
                if variant.upstream and streams > UPSTREAM_MAX_STREAMS:
                    continue
                row = measure_streams(variant, streams, replies)
                row["round"] = number + 1
                rows.append(row)
                echo(f"streams round {number + 1}/{rounds} {variant.name:>21} x{streams}: "
                     f"TTFT p50 {row['ttft_p50_ms']:8.1f} ms p99 {row['ttft_p99_ms']:8.1f} ms  "
                     f"{row['tokens_per_s_p50']:5.1f} tokens/s  "
                     f"CPU {row['app_cpu_ms_per_reply']:5.2f} ms/reply  "
                     f"calls/reply {row['storage_calls_per_reply']}")
    return rows
