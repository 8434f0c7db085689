"""docs/benchmarks.md, written by `chatlimit bench` from one run's report."""

from __future__ import annotations

from typing import Any


def markdown(report: dict[str, Any], table: str, targets: str, chart: bool,
             users_chart: bool = False, streams_chart: bool = False) -> str:
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
    met = sum(1 for t in report["targets"] if t["met"])
    verdict = f"{met} of {len(report['targets'])} targets met" if report["targets"] else ""
    extra = sections(report, users_chart, streams_chart)
    return f"""# Benchmarks

Written by `chatlimit bench` ({kind}) on {m["date"]}. Regenerate with `make bench` or
`chatlimit bench` from the repository root; `docs/benchmarks.json` holds every raw run.
{busy}
## Method

Every variant is the same app under `chatlimit serve` (one uvicorn worker, uvloop and httptools,
access log off), differing only in its environment. The **baseline** is that app with
`RATE_LIMIT_ENABLED=false`; the **bare** row is the ceiling: a plain FastAPI app with the same
`/chat` contract and no limiter at all (`tools/bench/bare_app.py`), reported as a same-round
ratio. Variants named `slowapi-*` run the same app with `RATE_LIMIT_ENGINE=slowapi` (stock
slowapi's `Limiter`), when this build has that engine. Limited variants use
`RATE_LIMIT={config["limit"]}`, so nothing is refused and the figures show the cost of
counting, with every rate-limit header on.
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
{_rerun(report.get("main_run"), "main table")}
{table}

{"![Throughput ratio and latency per variant](benchmarks.png)" if chart else ""}

## Targets (issue 17)

{verdict}. Each figure is the median over rounds of a same-round ratio, with its spread.

{targets}
{extra}{guide}
## Machine

- CPU: {m["cpu"]}, {m["cores"]} cores; {m["os"]}
- Python {m["python"]}; redis-server {m["redis_server"]}; nginx {m["nginx"]}; {m["wrk"]}
- Packages: {packages}
- Load average (1, 5, 15 min) before: {m["load_before"]}, after: {m.get("load_after")}.
- The whole run took {m.get("wall_seconds")} s ({(m.get("wall_seconds") or 0) / 60:.1f} min).
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


def _upstream_note(streams: dict[str, Any]) -> str:
    """What the `-upstream` rows are, when the run has them."""
    if not any(r.get("upstream") for r in streams["summary"]):
        return ""
    from .streaming import UPSTREAM_MAX_STREAMS

    return f"""
The targets judge the rows above, where the demo model runs inside the app: the cheapest
stream there is, so the limiter's share of it is as large as it gets. The `-upstream` pair is
the deployment of `docker-compose.scaled.yml`: the same demo model as its own process
(`chatlimit model`), reached through the openai SDK (`LLM_BASE_URL`), and divided by limiter
off with the same upstream. It runs up to {UPSTREAM_MAX_STREAMS:,} streams: the SDK's own CPU
per reply (the CPU column) puts a thousand streams on two shared cores in a queue of seconds
on both sides, whose ratio is noise.
"""


def sections(report: dict[str, Any], users_chart: bool, streams_chart: bool = False) -> str:
    from .curves import bytes_table, ceiling_table, streams_table, users_table

    out = []
    users = report.get("users")
    if users:
        layout = users.get("layout", {})
        capped = layout.get("capped", {})
        capped_text = ""
        if capped:
            capped_text = (
                f"\n**MEMORY_MAX_KEYS at its default ({capped['max_keys']:,} keys)**: counting "
                f"{max(p['users'] for p in users['summary']):,} "
                f"users (two keys each) in one process evicted {capped['evicted']:,} keys, "
                f"{capped['cpu_us_per_check']} µs of CPU per request's check (uncapped: "
                f"{layout.get('chatlimit_memory', {}).get('cpu_us_per_check')} µs), and the "
                f"first user was {'still' if capped['first_user_remembered'] else '**no longer**'} "
                "counted afterwards. That is the price in exactness: past the cap, the oldest "
                "windows go first, so a user is forgotten once about MEMORY_MAX_KEYS / 2 other "
                "users have arrived after it, and comes back to a fresh quota. Raise "
                "MEMORY_MAX_KEYS to the users you expect per window (bytes per key above), or "
                "use Redis.\n"
            )
        config = report["config"]
        memory_sizes = config.get("memory_users") or config.get("users") or []
        largest = layout.get("chatlimit_memory_largest") or {}
        inside = (layout.get("chatlimit_memory") or {}).get("cpu_us_per_check")
        short = ""
        if memory_sizes and max(memory_sizes) < max(config.get("users") or [0]):
            short = (
                f"\nThis run took memory:// to {max(memory_sizes):,} users only "
                "(`--memory-users`): its fill goes over HTTP, one request per user, and this "
                "machine gave the app a few hundred req/s. In one process, without HTTP, the "
                f"check for a request's two keys cost {inside} µs of CPU at "
                f"{layout.get('users', 0):,} users and {largest.get('cpu_us_per_check')} µs at "
                f"{largest.get('keys', 0) // 2:,} (keys built beforehand).\n"
            )
        out.append(f"""
## Users curve
{_own_run(users, "users")}
Distinct users per window: each point is its own app (and, on Redis, its own redis-server),
filled with every user's first request, then measured with wrk walking the same users in turn:
each user its own User-Agent and its own address in `X-Forwarded-For`, believed because wrk's
peer (127.0.0.1) is the default `TRUSTED_PROXIES`. Each user is two keys (its own limit and its
address's ceiling). The window is a day (`RATE_LIMIT=1000000/day`), so no user ages out during
the run. memory:// is filled over HTTP, Redis directly with the app's own script and keys (the
measured runs then add no key: checked). Each point's run is paired with a run of the one-user
point of the same storage, one right after the other (which goes first alternates by round),
and its ratio divides by that run: a whole round takes minutes, and on shared cores a ratio of
two runs minutes apart measured the drift as much as the users. The one-user point runs the
same wrk script.

{users_table(users)}
{short}

{"![Throughput and CPU per request against users](benchmarks-users.png)" if users_chart else ""}

Bytes per key, against what limits (stock slowapi's storage) keeps for the same users and the
same two limits each: memory:// from the app's RSS growth while filling (limits' MemoryStorage
in a fresh process, the same way), Redis from `used_memory` (limits' RedisStorage through its own
`incr_expire` script, on an empty server):

{bytes_table(users)}
{capped_text}""")
    streams = report.get("streams")
    if streams:
        out.append(f"""
## Streaming
{_own_run(streams, "streams")}
Concurrent streamed replies (`Accept: text/event-stream`) through one replica at the demo
model's pace (`MODEL_TOKEN_DELAY_MS`, 30 ms a token), `LLM_MAX_TOKENS=32` of its story, each
connection its own user: 100 streams ask for six replies each, one after another, 1,000 for
two. The client is a separate process (`tools/bench/stream.py`) on the same cores; it opens
every connection first, then sends every first request at once, so each run starts with one
burst, and the later replies follow as the earlier ones end. TTFT is from sending the request
to the first `delta` event, its p50 and p99 over every reply of the run (600 or 2,000: over
one burst alone, a hiccup of the shared machine moved a run's median by half); tokens/s is
each reply's own rate after its first token. Storage
calls are counted by Redis (`CONFIG RESETSTAT`, then `INFO commandstats` once every reply has
ended) and divided by replies: below two means some admissions never reached Redis, because
Redis stayed silent past `REDIS_SOCKET_TIMEOUT` (0.25 s, counted from the write) and the
breaker counted in the replica's memory for a while (fail open, the default). Ratios are to
limiter off in the same round.
{_upstream_note(streams)}
{streams_table(streams)}
{"![Time to first token and CPU per reply, limiter off and on](benchmarks-streams.png)"
 if streams_chart else ""}
""")
    ceiling = report.get("ceiling")
    if ceiling:
        out.append(f"""
## The ceiling Redis sets

`redis-benchmark` running the app's own admission script, `EVALSHA` with the keys and
arguments a `/chat` request sends (both limits), {ceiling[0]["calls"]:,} calls from 32 clients
pipelined 16 deep; one user (the same two keys) and a million (`-r`, redis-benchmark's key
randomiser). Nothing else of the bench runs meanwhile (whatever else shares the machine
still does), so it shows what Redis allows; the last columns put one app's end-to-end req/s
(main table, one user) beside it.
{_measured_again(report.get("ceiling_date"))}
{ceiling_table(ceiling, report["summary"])}
""")
    return "".join(out)


def _own_run(section: dict[str, Any], name: str) -> str:
    """A section (users, streams) re-run on its own and merged into the report: when, and with
    how many rounds."""
    if not section.get("date"):
        return ""
    return (f"\nThis section comes from its own run (`--sections {name}`, "
            f"{max(r['rounds'] for r in section['summary'])} rounds) on {section['date']}.\n")


def _measured_again(date: str | None) -> str:
    """The ceiling, when a run of some sections (`--sections ceiling`) measured it again."""
    return f"\nThis section was measured again on {date} (`--sections ceiling`).\n" if date else ""


def _rerun(run: dict[str, Any] | None, what: str) -> str:
    """A section re-run on its own (`--sections`) and merged into the report: when and how busy."""
    if not run:
        return ""
    return (f"\nThe {what} comes from its own run (`--sections main`) on {run['date']}, "
            f"load average {run['load_before'][0]} before it, {run['wall_seconds']:.0f} s long; "
            "a section below that names no run of its own comes from the full run this report "
            "was written from.\n")
