"""docs/benchmarks.md, written by `chatlimit bench` from one run's report."""

from __future__ import annotations

from typing import Any


def markdown(report: dict[str, Any], table: str, targets: str, chart: bool) -> str:
    config, m = report["config"], report["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    kind = "a quick smoke run (`--quick`): too short to quote" if config["quick"] else "a full run"
    by_name = {s["variant"]: s for s in report["summary"]}
    base = by_name.get("baseline")
    guide = ""
    if base:
        guide = _guide(by_name, base)
    busy = ""
    # Judged by the load before the run: the load after includes the bench's own.
    if m["load_before"][0] > 1.0:
        busy = (
            f"\n**The machine was busy** (load average {m['load_before'][0]} before, "
            f"{(m.get('load_after') or ['?'])[0]} after, on {m['cores']} cores): other work "
            "shared the cores, so these figures are noisy. Trust the CPU columns more than "
            "req/s, and re-run on a quiet machine before quoting.\n"
        )
    return f"""# Benchmarks

Written by `chatlimit bench` ({kind}) on {m["date"]}. Regenerate with `make bench` or
`chatlimit bench` from the repository root; `docs/benchmarks.json` holds every raw run.
{busy}
## Method

Every variant is the same app under `chatlimit serve` (one uvicorn worker, uvloop and httptools,
access log off), differing only in its environment. The **baseline** is that app with
`RATE_LIMIT_ENABLED=false`. Limited variants use `RATE_LIMIT={config["limit"]}`, so nothing is
refused and the figures show the cost of counting, with every rate-limit header on.
[wrk](https://github.com/wg/wrk) sends `POST /chat` with a JSON body and one fixed User-Agent
(one user, one storage key) over {config["connections"]} keep-alive connections from
{config["threads"]} thread, for {config["seconds"]:g} s after {config["warmup"]:g} s of warm-up.
The variants ran in {config["rounds"]} interleaved round(s), the order rotated each round; each
ratio divides a variant's req/s by the baseline's **in the same round**, and the table shows
medians over rounds. Redis figures come from Redis itself: after each warm-up, once Redis has
gone quiet, `CONFIG RESETSTAT`, 50 requests one after another, then `INFO commandstats`, so the
count is exact. *Commands* include those run inside our Lua scripts; *round trips*
are what the app sent over the wire (`chatlimit.counters.round_trips`). The scaled variants put
nginx (the repository's `nginx/nginx.conf`) in front of 1 or 3 replicas sharing one Redis.

wrk, the app, Redis and nginx share the same {m["cores"]} cores, so these figures show relative
cost, not production capacity. *Added per request* is 1/req/s minus the baseline's: the time
the limiter adds to each request on a busy worker. *App CPU* is the user plus system CPU time
the app's processes spent per request (from `/proc`), and *Redis CPU* the same for
redis-server (`INFO cpu`): CPU time is what a busy neighbour on the same cores disturbs
least, so read it beside the throughput ratios.

## Results

{table}

{"![Throughput ratio and latency per variant](benchmarks.png)" if chart else ""}

## Targets (issue 5)

{targets}
{guide}
## Machine

- CPU: {m["cpu"]}, {m["cores"]} cores; {m["os"]}
- Python {m["python"]}; redis-server {m["redis_server"]}; nginx {m["nginx"]}; {m["wrk"]}
- Packages: {packages}
- Load average (1, 5, 15 min) before: {m["load_before"]}, after: {m.get("load_after")};
  the whole run took {m.get("wall_seconds")} s.
"""


def _guide(by_name: dict[str, Any], base: dict[str, Any]) -> str:
    rows = []
    for name, claim in (("memory", "0.1 ms, 10,000 req/s"), ("redis-fw", "0.5 ms, 8,000 req/s")):
        s = by_name.get(name)
        if not s or s["added_us"] is None:
            continue
        rows.append(
            f"| {name} | {claim} | {s['added_us'] / 1000:.3f} ms added per request; "
            f"{(s['app_cpu_us'] - base['app_cpu_us']) / 1000:.3f} ms more app CPU; "
            f"{s['rps']:,.0f} req/s end to end ({s['ratio']:.2f} of the baseline's "
            f"{base['rps']:,.0f}); p50 {s['p50_ms']:.2f} ms |"
        )
    if not rows:
        return ""
    body = "\n".join(rows)
    return f"""
## Beside the guide's figures

The guide this demo grew from claims in-memory limiting costs 0.1 ms at 10,000 req/s and local
Redis 0.5 ms at 8,000 req/s, without saying what was measured. Ours are whole HTTP requests
through FastAPI on one worker, so the fair comparison is the time the limiter *adds*:

| storage | guide | measured here |
|---|---|---|
{body}
"""
