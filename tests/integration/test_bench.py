"""`chatlimit bench` and the speed it measures: the report, one Redis round trip per request
on the pipelined client, and a frozen Redis that never stalls a replica under load."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest

from chatlimit.storage.redis import round_trips
from chatlimit.tools.processes import MissingBinary, RedisServer, find_binary

from ..support import STRATEGIES, missing
from .served import ServedApp

pytestmark = pytest.mark.integration
LIMITED = HTTPStatus.TOO_MANY_REQUESTS




async def _burst(url: str, count: int, agent: str = "burst") -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post("/chat", json={"message": "hi"}, headers={"User-Agent": agent})
                for _ in range(count)
            )
        )


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
    started = time.monotonic()
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
            "--only",
            "memory,redis-fw,nginx-3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert time.monotonic() - started < 60

    report = json.loads((out / "benchmarks.json").read_text())
    summary = {s["variant"]: s for s in report["summary"]}
    assert list(summary) == ["baseline", "memory", "redis-fw", "nginx-3"]
    assert {r["variant"] for r in report["runs"]} == set(summary)
    for s in summary.values():
        assert s["rps"] > 0 and s["ratio"] > 0 and s["app_cpu_us"] > 0
        assert 0 < s["p50_ms"] <= s["p99_ms"]
        assert s["non_2xx"] == 0 and s["socket_errors"] == 0
    assert summary["baseline"]["ratio"] == 1
    for name in ("redis-fw", "nginx-3"):
        assert summary[name]["round_trips_per_request"] == 1  # counted exactly, by Redis
        assert summary[name]["redis_commands_per_request"] > 1  # the script's own calls too
    assert {t["variant"] for t in report["targets"]} == {"memory", "redis-fw"}
    machine = report["machine"]
    assert (
        machine["cores"] >= 1 and machine["python"] and machine["redis_server"] != "not installed"
    )

    markdown = (out / "benchmarks.md").read_text()
    assert "| redis://, fixed window |" in markdown and "## Machine" in markdown
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
    env = {"STORAGE_URI": own_redis.url, "RATE_LIMIT": "25/minute", "RATE_LIMIT_STRATEGY": strategy}
    with ServedApp(tmp_path, **env) as app:
        asyncio.run(_burst(app.url, 1, agent="warm-up"))  # loads the script
        admin.config_resetstat()
        answers = asyncio.run(_burst(app.url, 60))
        stats = admin.info("commandstats")
    codes = [a.status_code for a in answers]
    assert codes.count(HTTPStatus.OK) == 25 and codes.count(LIMITED) == 35
    assert stats["cmdstat_evalsha"]["calls"] == 60
    assert round_trips(stats, strategy) == 60  # pipelined on one connection, one trip each


@pytest.mark.redis
def test_frozen_redis_under_concurrent_load_keeps_healthz_fast_and_chat_clean(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    with ServedApp(tmp_path, STORAGE_URI=own_redis.url, RATE_LIMIT="1000/minute") as app:
        assert asyncio.run(_burst(app.url, 8))[0].status_code == HTTPStatus.OK

        async def frozen() -> tuple[list[httpx.Response], float]:
            chats = asyncio.ensure_future(_burst(app.url, 16, agent="during-stall"))
            await asyncio.sleep(0)  # let the burst start before timing the health check
            async with httpx.AsyncClient(base_url=app.url, timeout=5) as client:
                start = time.monotonic()
                health = await client.get("/healthz")
                elapsed = time.monotonic() - start
            assert health.status_code == HTTPStatus.OK
            return await chats, elapsed

        own_redis.process.signal(signal.SIGSTOP)
        try:
            answers, health_seconds = asyncio.run(frozen())
        finally:
            own_redis.process.signal(signal.SIGCONT)
        assert health_seconds < 0.5
        # Fail open (the default): served from this replica's memory, marked degraded; never a 500.
        assert {a.status_code for a in answers} == {HTTPStatus.OK}
        assert all(a.headers.get("X-RateLimit-Degraded") for a in answers)

        # Thawed: shared counting resumes on a fresh connection.
        deadline = time.monotonic() + 5
        while (
            "X-RateLimit-Degraded"
            in (answer := httpx.post(f"{app.url}/chat", json={"message": "hi"}, timeout=5)).headers
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

        def chat() -> httpx.Response:
            return httpx.post(f"{app.url}/chat", json={"message": "hi"}, timeout=5)

        assert chat().status_code == HTTPStatus.OK
        own_redis.command("SCRIPT", "FLUSH")
        second = chat()
        assert second.status_code == HTTPStatus.OK  # NOSCRIPT: sent again as EVAL, counted once
        assert second.json()["quota"]["remaining"] == 1
        assert "X-RateLimit-Degraded" not in second.headers

        own_redis.stop()
        own_redis.start()  # same port, empty
        deadline = time.monotonic() + 5
        while "X-RateLimit-Degraded" in (answer := chat()).headers:
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
