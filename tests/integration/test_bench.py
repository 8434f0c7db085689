"""`chatlimit bench` and the speed it measures: the report, one Redis round trip per request
on the pipelined client, and a frozen Redis that never stalls a replica under load."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest

from chatlimit.storage.redis import round_trips
from chatlimit.tools.processes import MissingBinary, RedisServer, find_binary

from ..support import STRATEGIES, ServedApp, missing
from ..traffic import burst, burst_async, chat, statuses

pytestmark = pytest.mark.integration
LIMITED = HTTPStatus.TOO_MANY_REQUESTS




@pytest.mark.bench
@pytest.mark.redis
@pytest.mark.nginx
def test_bench_quick_run_writes_a_report_with_positive_figures(tmp_path: Path) -> None:
    for binary in ("wrk", "redis-server", "nginx"):
        try:
            find_binary(binary)
        except MissingBinary as exc:
            missing(str(exc))
    out = tmp_path / "report"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatlimit",
            "bench",
            "--quick",
            "--duration",
            "1",
            "--warmup",
            "1",
            "--sections",
            "main",
            "--only",
            "memory,redis-fw,nginx-3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: how long a smoke run takes is the machine's business
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr

    report = json.loads((out / "benchmarks.json").read_text())
    # A smoke run by construction (one round of a second each), not by a wall-clock limit.
    assert (report["config"]["rounds"], report["config"]["seconds"]) == (1, 1)
    summary = {s["variant"]: s for s in report["summary"]}
    assert list(summary) == ["baseline", "bare", "memory", "redis-fw", "nginx-3"]
    assert {r["variant"] for r in report["runs"]} == set(summary)
    for s in summary.values():
        assert s["rps"] > 0 and s["ratio"] > 0 and s["app_cpu_us"] > 0
        assert 0 < s["p50_ms"] <= s["p99_ms"]
        assert s["non_2xx"] == 0 and s["socket_errors"] == 0
    assert summary["baseline"]["ratio"] == 1
    assert summary["bare"]["bare_ratio"] == 1 and summary["memory"]["bare_ratio"] > 0
    for name in ("redis-fw", "nginx-3"):
        assert summary[name]["round_trips_per_request"] == 1  # counted exactly, by Redis
        assert summary[name]["redis_commands_per_request"] > 1  # the script's own calls too
    assert {t["variant"] for t in report["targets"]} == {"memory", "redis-fw"}
    assert {t["what"] for t in report["targets"]} >= {
        "app CPU per request ÷ limiter off", "req/s ÷ limiter off", "round trips per request"}
    machine = report["machine"]
    assert (
        machine["cores"] >= 1 and machine["python"] and machine["redis_server"] != "not installed"
    )

    markdown = (out / "benchmarks.md").read_text()
    assert "| redis://, fixed window |" in markdown and "## Machine" in markdown
    assert "| bare FastAPI app, no limiter (ceiling) |" in markdown
    assert "quick smoke run" in markdown
    assert (out / "benchmarks.png").read_bytes().startswith(b"\x89PNG")
    assert "redis://, fixed window" in run.stdout  # the table is printed too
    # Said plainly, before the run and under the table: the figures are not a measurement.
    lines = run.stdout.splitlines()
    smoke = "bench --quick: one short round is a smoke run that the benchmark works, not a measurement"
    assert lines[0].startswith(smoke) and lines[-1].startswith(smoke)


@pytest.mark.redis
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_concurrent_requests_cost_one_round_trip_each_and_the_limit_stays_exact(
    tmp_path: Path, own_redis: RedisServer, strategy: str
) -> None:
    import redis

    admin = redis.Redis(port=own_redis.port)
    env = {"STORAGE_URI": own_redis.url, "RATE_LIMIT": "25/minute", "RATE_LIMIT_STRATEGY": strategy,
           "TOKEN_LIMIT": "off", "MAX_STREAMS": "off"}  # the request limiter's one round trip
    with ServedApp(tmp_path, **env) as app:
        burst(app.url, 1, "hi", agent="warm-up", timeout=10)  # loads the script
        admin.config_resetstat()
        answers = burst(app.url, 60, "hi", agent="burst", timeout=10)
        stats = admin.info("commandstats")
    assert statuses(answers) == {HTTPStatus.OK: 25, LIMITED: 35}
    assert stats["cmdstat_evalsha"]["calls"] == 60
    assert round_trips(stats, strategy) == 60  # pipelined on one connection, one trip each


@pytest.mark.redis
def test_frozen_redis_under_concurrent_load_keeps_healthz_fast_and_chat_clean(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    # A long socket timeout keeps the chats waiting on the frozen Redis: /healthz answering
    # while they still wait is the proof it never touches storage (no timing asserted).
    with ServedApp(tmp_path, STORAGE_URI=own_redis.url, RATE_LIMIT="1000/minute",
                   REDIS_SOCKET_TIMEOUT="5", TOKEN_LIMIT="off", MAX_STREAMS="off") as app:
        assert burst(app.url, 8, "hi", agent="burst", timeout=10)[0].status_code == HTTPStatus.OK

        async def frozen() -> tuple[list[httpx.Response], bool]:
            chats = asyncio.ensure_future(burst_async(app.url, 16, "hi", agent="during-stall",
                                                      timeout=60))
            await asyncio.sleep(0)  # let the burst start before the health check
            async with httpx.AsyncClient(base_url=app.url, timeout=60) as client:
                health = await client.get("/healthz")
            assert health.status_code == HTTPStatus.OK
            waiting = not chats.done()
            return await chats, waiting

        own_redis.process.signal(signal.SIGSTOP)
        try:
            answers, chats_were_waiting = asyncio.run(frozen())
        finally:
            own_redis.process.signal(signal.SIGCONT)
        assert chats_were_waiting, "/healthz answered only after the chats waiting on Redis"
        # Fail open (the default): served from this replica's memory, marked degraded; never a 500.
        assert {a.status_code for a in answers} == {HTTPStatus.OK}
        assert all(a.headers.get("X-RateLimit-Degraded") for a in answers)

        # Thawed: shared counting resumes on a fresh connection.
        deadline = time.monotonic() + 30  # a hang guard
        while (
            "X-RateLimit-Degraded"
            in (answer := chat(app.url, "hi")).headers
        ):
            assert time.monotonic() < deadline, "shared limiting did not resume after SIGCONT"
            time.sleep(0.1)  # polling interval of a readiness check
        assert answer.status_code == HTTPStatus.OK
        log = app.log
    assert "Traceback" not in log and " 500 " not in log


@pytest.mark.redis
def test_pipelined_client_survives_script_flush_and_redis_restart(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    with ServedApp(tmp_path, STORAGE_URI=own_redis.url, RATE_LIMIT="3/minute") as app:

        assert chat(app.url, "hi").status_code == HTTPStatus.OK
        own_redis.command("SCRIPT", "FLUSH")
        second = chat(app.url, "hi")
        assert second.status_code == HTTPStatus.OK  # NOSCRIPT: sent again as EVAL, counted once
        assert second.json()["quota"]["remaining"] == 1
        assert "X-RateLimit-Degraded" not in second.headers

        own_redis.stop()
        own_redis.start()  # same port, empty
        deadline = time.monotonic() + 30  # a hang guard
        while "X-RateLimit-Degraded" in (answer := chat(app.url, "hi")).headers:
            assert time.monotonic() < deadline, "did not reconnect after a Redis restart"
            time.sleep(0.1)  # polling interval of a readiness check
        assert answer.status_code == HTTPStatus.OK
        assert own_redis.command("DBSIZE") != ":0"
        log = app.log
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("uri", "where"),
    [
        ("redis://127.0.0.1:6390/0", ("127.0.0.1", 6390, None, [])),
        (
            "redis://:s%40cret@cache:6379/2",
            ("cache", 6379, None, [("AUTH", "s@cret"), ("SELECT", 2)]),
        ),
        ("redis://bob:pw@cache:6379", ("cache", 6379, None, [("AUTH", "bob", "pw")])),
        (
            "redis+unix:///run/redis.sock?db=1",
            ("127.0.0.1", 6379, "/run/redis.sock", [("SELECT", 1)]),
        ),
    ],
)
def test_plain_redis_uris_get_the_pipelined_client(uri: str, where: tuple[object, ...]) -> None:
    from chatlimit.storage.lean_redis import LeanRedis
    from chatlimit.uri import parse_storage_uri

    client = LeanRedis.from_location(parse_storage_uri(uri), connect_timeout=0.25, socket_timeout=0.25)
    assert client is not None
    assert (client.host, client.port, client.path, client._handshake) == where


@pytest.mark.parametrize(
    "uri",
    [
        "rediss://cache:6380/0",
        "redis+sentinel://s1:26379/mymaster",
        "redis+cluster://n1:7000,n2:7001",
        "redis://cache:6379/0?ssl_cert_reqs=none",
    ],
)
def test_tls_sentinel_cluster_and_options_keep_redis_py(uri: str) -> None:
    from chatlimit.storage import counter_for
    from chatlimit.storage.lean_redis import LeanRedis
    from chatlimit.uri import parse_storage_uri

    assert LeanRedis.from_location(parse_storage_uri(uri), connect_timeout=0.25, socket_timeout=0.25) is None
    assert not isinstance(counter_for(parse_storage_uri(uri), "fixed-window")._client, LeanRedis)  # type: ignore[attr-defined]


@pytest.mark.redis
def test_the_users_curve_fills_redis_with_exactly_the_keys_the_app_writes(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    from chatlimit.tools.bench.users import USERS_LIMIT, app_keys, fill_redis
    from chatlimit.tools.bench.wrk import user_headers

    # As the curve's servers run: request limits only (servers.Variant turns budgets off).
    with ServedApp(tmp_path, STORAGE_URI=own_redis.url, RATE_LIMIT=USERS_LIMIT,
                   TOKEN_LIMIT="off", MAX_STREAMS="off") as app:
        answer = httpx.post(f"{app.url}/chat", json={"message": "hi"}, headers=user_headers(7))
        assert answer.status_code == HTTPStatus.OK
    import redis

    admin = redis.Redis(port=own_redis.port)
    assert {k.decode() for k in admin.keys("*")} == set(app_keys(7))
    fill_redis(own_redis, 20)  # users 0..19, user 7 among them: no new key for it
    assert admin.dbsize() == 40
    assert admin.get(app_keys(7)[0]) == b"2"  # the app's request, then the fill's


def test_memory_max_keys_forgets_the_oldest_users_past_the_cap() -> None:
    from chatlimit.tools.bench.layout import in_child

    capped = in_child("chatlimit-memory", 1500, 1000)  # 3,000 keys into room for 1,000
    assert capped["evicted"] >= 2000 and capped["keys"] <= 1000
    assert capped["first_user_remembered"] is False  # user 0 would start a fresh window
    room = in_child("chatlimit-memory", 1500)
    assert room["evicted"] == 0 and room["first_user_remembered"] is True


@pytest.mark.redis
def test_streamed_replies_are_timed_and_their_storage_calls_counted_by_redis(
    tmp_path: Path,
) -> None:
    from chatlimit.tools.bench.servers import running
    from chatlimit.tools.bench.streaming import (
        STREAM_TOKENS,
        measure_streams,
        stream_variants,
        token_budgets,
    )

    # The demo model in the app, and as its own process behind the openai SDK (-upstream).
    chosen = [v for v in stream_variants() if v.name.startswith("stream-redis")]
    assert [v.upstream for v in chosen] == [False, True]
    with running(chosen, tmp_path):
        rows = [measure_streams(variant, streams=3, replies=2) for variant in chosen]
        upstream = chosen[1].extra["LLM_BASE_URL"]
        ledger = json.loads(urllib.request.urlopen(f"{upstream}/ledger", timeout=5).read())
    for row in rows:
        assert row["ok"] == 6 and row["errors"] == 0
        assert row["tokens"] == 6 * STREAM_TOKENS
        assert 0 < row["ttft_p50_ms"] <= row["ttft_p99_ms"]
        # Admission, and settlement where token budgets exist: counted by Redis, exactly.
        assert row["storage_calls_per_reply"] == (2 if token_budgets() else 1)
    # The upstream variant's replies came from the model process, and only its: a warm-up
    # reply per stream, then the six measured.
    assert ledger["total"]["requests"] == 3 + 6


@pytest.mark.redis
def test_the_ceiling_runs_the_apps_own_script_in_redis_benchmark(own_redis: RedisServer) -> None:
    from chatlimit.tools.bench.ceiling import run_ceiling

    try:
        find_binary("redis-benchmark")
    except MissingBinary as exc:
        missing(str(exc))
    rows = run_ceiling(own_redis, users=(1, 1000), calls=300, echo=lambda _: None)
    assert {(r["strategy"], r["users"]) for r in rows} == {
        (s, n) for s in STRATEGIES for n in (1, 1000)}
    assert all(r["scripts_per_s"] > 0 and r["redis_cpu_us_per_call"] > 0 for r in rows)
