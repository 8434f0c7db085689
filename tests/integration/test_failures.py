"""When Redis fails: stopped, frozen (SIGSTOP), paused (CLIENT PAUSE) and restarted under a real
uvicorn process. FAIL_MODE=open keeps limiting per replica and says so; FAIL_MODE=closed answers
503; neither ever answers 500 or logs a traceback, and shared limiting comes back by itself."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatlimit.limiter.headers import DEGRADED_HEADER
from chatlimit.storage.lean_redis import LeanRedis
from chatlimit.tools.processes import MissingBinary, RedisServer
from chatlimit.uri import parse_storage_uri

from ..support import STRATEGIES, ClientFactory, ServedApp, missing
from ..traffic import chat, send

pytestmark = [pytest.mark.integration, pytest.mark.redis]

UNREACHABLE = "rate-limit storage unreachable"
RESUMED = "rate-limit storage reachable again"
# A hang guard, not a figure: how long recovery took is recorded (record_property) and printed;
# asserting it would fail on a loaded machine. Designed: one probe per second (breaker.py).
RECOVERY_TIMEOUT = 30.0




def assert_clean_log(app: ServedApp) -> None:
    log = app.log
    assert "Traceback" not in log
    assert "Internal server error" not in log and " 500 " not in log


def wait_for_shared_limiting(app: ServedApp) -> float:
    """Seconds until /api/quota (which consumes nothing) is answered from Redis again."""
    start = time.monotonic()
    while time.monotonic() - start < RECOVERY_TIMEOUT:
        answer = httpx.get(f"{app.url}/api/quota", timeout=5)
        if answer.status_code == HTTPStatus.OK and DEGRADED_HEADER not in answer.headers:
            return time.monotonic() - start
        time.sleep(0.05)  # polling interval of a readiness check, not a synchronisation sleep
    pytest.fail(f"shared limiting did not resume within {RECOVERY_TIMEOUT:.0f}s")


def test_redis_down_fails_open_per_replica_with_a_degraded_header_and_recovers(
    tmp_path: Path, own_redis: RedisServer, record_property: pytest.RecordProperty
) -> None:
    with ServedApp(tmp_path, STORAGE_URI=own_redis.url, RATE_LIMIT="3/minute") as app:
        first = chat(app.url, "hi")
        assert first.status_code == HTTPStatus.OK
        assert DEGRADED_HEADER not in first.headers

        own_redis.stop()
        outage = [chat(app.url, "hi") for _ in range(4)]
        # This replica's own memory counts from zero: three more, then the limit holds again.
        assert [a.status_code for a in outage] == [200, 200, 200, 429]
        assert all(a.headers[DEGRADED_HEADER] == "storage-unreachable" for a in outage)
        assert outage[3].json()["error"] == "rate_limited"
        assert outage[3].headers["Retry-After"]
        assert httpx.get(f"{app.url}/readyz", timeout=5).status_code == HTTPStatus.SERVICE_UNAVAILABLE
        assert httpx.get(f"{app.url}/healthz", timeout=5).status_code == HTTPStatus.OK

        own_redis.start()
        recovery = wait_for_shared_limiting(app)
        record_property("recovery_seconds_after_restart", round(recovery, 2))
        print(f"\nrecovery after Redis restart: {recovery:.2f}s")
        back = chat(app.url, "hi")
        assert back.status_code == HTTPStatus.OK  # a restarted Redis (no save) counts from zero
        assert DEGRADED_HEADER not in back.headers
        assert own_redis.command("DBSIZE") != ":0"  # counted in Redis again
        assert httpx.get(f"{app.url}/readyz", timeout=5).status_code == HTTPStatus.OK
        log = app.log
    assert log.count(UNREACHABLE) == 1, log
    assert log.count(RESUMED) == 1, log
    assert "Traceback" not in log and " 500 " not in log


def test_redis_down_fails_closed_with_503_json_and_retry_after(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    with ServedApp(tmp_path, STORAGE_URI=own_redis.url, FAIL_MODE="closed") as app:
        assert chat(app.url, "hi").status_code == HTTPStatus.OK
        own_redis.stop()
        for answer in (chat(app.url, "hi"), chat(app.url, "hi"), httpx.get(f"{app.url}/api/quota", timeout=5)):
            assert answer.status_code == HTTPStatus.SERVICE_UNAVAILABLE
            assert answer.headers["content-type"] == "application/json"
            assert answer.headers["Retry-After"] == "1"
            assert answer.json()["error"] == "storage_unavailable"
            assert answer.json()["detail"]
            assert answer.headers["X-Served-By"] == "app"
        assert httpx.get(f"{app.url}/readyz", timeout=5).status_code == HTTPStatus.SERVICE_UNAVAILABLE
        assert httpx.get(f"{app.url}/healthz", timeout=5).status_code == HTTPStatus.OK
        assert httpx.get(f"{app.url}/", timeout=5).status_code == HTTPStatus.OK

        own_redis.start()
        wait_for_shared_limiting(app)
        assert chat(app.url, "hi").status_code == HTTPStatus.OK
        log = app.log
    assert log.count(UNREACHABLE) == 1 and "failing closed" in log
    assert log.count(RESUMED) == 1
    assert "Traceback" not in log and " 500 " not in log


def test_a_frozen_redis_never_stalls_health_info_or_the_page(
    tmp_path: Path, own_redis: RedisServer, record_property: pytest.RecordProperty
) -> None:
    # A long socket timeout keeps the /chat in flight while the other routes answer: that they
    # all answer before it does is the proof that nothing waits on Redis (no timing asserted).
    with ServedApp(tmp_path, STORAGE_URI=own_redis.url, REDIS_SOCKET_TIMEOUT="5") as app:
        assert chat(app.url, "hi").status_code == HTTPStatus.OK
        own_redis.process.signal(signal.SIGSTOP)
        try:
            in_flight: list[httpx.Response] = []
            started = time.monotonic()
            sender = threading.Thread(target=lambda: in_flight.append(chat(app.url, "hi")))
            sender.start()
            latencies = {}
            with httpx.Client(base_url=app.url, timeout=30) as client:
                client.get("/healthz")  # connection set up outside the timing
                for path in ("/healthz", "/api/info", "/"):
                    begin = time.monotonic()
                    assert client.get(path).status_code == HTTPStatus.OK
                    latencies[path] = time.monotonic() - begin
            assert sender.is_alive(), "the /chat should still be waiting on the frozen Redis"
            sender.join(60)  # bounded by the socket timeout: one try and one retry
            chat_seconds = time.monotonic() - started
            readyz_begin = time.monotonic()
            ready = httpx.get(f"{app.url}/readyz", timeout=30)
            readyz_seconds = time.monotonic() - readyz_begin
        finally:
            own_redis.process.signal(signal.SIGCONT)
        record_property("health_latency_ms_during_stall", {k: round(v * 1000, 1) for k, v in latencies.items()})
        print(f"\nduring a Redis stall: {', '.join(f'{k} {v * 1000:.1f} ms' for k, v in latencies.items())}; "
              f"in-flight /chat answered after {chat_seconds:.2f}s; /readyz {readyz_seconds:.2f}s")
        # Bounded: one try plus one retry on a fresh connection, each at most the socket timeout.
        assert in_flight and in_flight[0].status_code == HTTPStatus.OK
        assert in_flight[0].headers[DEGRADED_HEADER] == "storage-unreachable"
        assert ready.status_code == HTTPStatus.SERVICE_UNAVAILABLE

        recovery = wait_for_shared_limiting(app)
        record_property("recovery_seconds_after_sigcont", round(recovery, 2))
        print(f"recovery after SIGCONT: {recovery:.2f}s")
    assert_clean_log(app)


def test_a_busy_event_loop_is_not_a_silent_redis(redis_url: str) -> None:
    # A thousand streams opened at once keep the event loop busy for longer than the socket
    # timeout between queueing a command and writing it (the write waits for the next turn
    # of the loop): only Redis's own silence, counted from the write, is a timeout.
    async def late() -> Any:
        client = LeanRedis.from_location(parse_storage_uri(redis_url), connect_timeout=1,
                                         socket_timeout=0.1)
        assert client is not None and await client.ping()
        answer = asyncio.ensure_future(client.execute("PING"))  # queued in this turn...
        asyncio.get_running_loop().call_soon(time.sleep, 0.5)  # ...then five timeouts of work
        try:
            return await answer
        finally:
            await client.aclose()

    assert uvloop.run(late()) == b"PONG"


def test_a_frozen_redis_is_still_a_timeout(own_redis: RedisServer) -> None:
    async def frozen() -> Any:
        client = LeanRedis.from_location(parse_storage_uri(own_redis.url), connect_timeout=1,
                                         socket_timeout=0.1)
        assert client is not None and await client.ping()
        own_redis.process.signal(signal.SIGSTOP)
        try:
            return await client.execute("PING")
        finally:
            own_redis.process.signal(signal.SIGCONT)
            await client.aclose()

    with pytest.raises(RedisTimeoutError):
        uvloop.run(frozen())


def test_client_pause_degrades_quickly_and_recovers(tmp_path: Path, own_redis: RedisServer) -> None:
    with ServedApp(tmp_path, STORAGE_URI=own_redis.url) as app:
        assert chat(app.url, "hi").status_code == HTTPStatus.OK
        begin = time.monotonic()
        assert own_redis.command("CLIENT", "PAUSE", "1500", "ALL") == "+OK"
        paused = chat(app.url, "hi")
        waited = time.monotonic() - begin
        assert paused.status_code == HTTPStatus.OK
        # Degraded is the proof it did not wait the pause out: Redis would have answered then.
        assert paused.headers[DEGRADED_HEADER] == "storage-unreachable"
        # CLIENT UNPAUSE would itself wait behind the pause; the pause ends on its own.
        wait_for_shared_limiting(app)
        after_pause = time.monotonic() - begin - 1.5
        print(f"\nCLIENT PAUSE: /chat degraded after {waited:.2f}s; back {after_pause:.2f}s after the pause")
    assert_clean_log(app)


def test_changing_strategy_or_limit_on_a_shared_redis_never_errors(
    make_client: ClientFactory, redis_url: str
) -> None:
    plans = [(s, "3/minute") for s in STRATEGIES] + [("fixed-window", "5/minute"), ("moving-window", "3/hour")]
    for strategy, limit in plans:
        client = make_client(storage_uri=redis_url, rate_limit_strategy=strategy, rate_limit=limit)
        answers = [client.post("/chat", json={"message": "hi"}) for _ in range(int(limit[0]) + 1)]
        assert [a.status_code for a in answers] == [200] * int(limit[0]) + [429], (strategy, limit)
        # A WRONGTYPE from a stale key would show up as a fail-open, not as a 500: rule both out.
        assert all(DEGRADED_HEADER not in a.headers for a in answers), (strategy, limit)


@pytest.mark.nginx
def test_three_replicas_behind_nginx_ride_out_a_redis_outage(
    tmp_path: Path, own_redis: RedisServer, record_property: pytest.RecordProperty
) -> None:
    from chatlimit.tools.stack import LocalStack as Cluster

    try:
        cluster = Cluster(tmp_path / "cluster", replicas=3, redis=own_redis, env={"RATE_LIMIT": "3/minute"})
    except MissingBinary as exc:
        missing(str(exc))
    with cluster, httpx.Client(base_url=cluster.url, timeout=10) as client:
        assert [a.status_code for a in send(client, 4, "hi")] == [200, 200, 200, 429]  # shared: 3 in all

        own_redis.stop()
        outage = send(client, 12, "hi")
        assert {a.status_code for a in outage} <= {200, 429}, [a.text for a in outage]
        assert all(a.headers[DEGRADED_HEADER] == "storage-unreachable" for a in outage)
        # Each replica counts alone while Redis is away: up to three times the limit.
        served = {a.headers["X-Served-By"] for a in outage if a.status_code == 200}
        assert len(served) == 3 and sum(a.status_code == 200 for a in outage) == 9
        for url in cluster.replica_urls.values():
            assert httpx.get(f"{url}/readyz", timeout=5).status_code == HTTPStatus.SERVICE_UNAVAILABLE

        own_redis.start()
        begin = time.monotonic()
        pending = dict(cluster.replica_urls)
        while pending and time.monotonic() - begin < RECOVERY_TIMEOUT:
            for name, url in list(pending.items()):
                answer = httpx.get(f"{url}/api/quota", timeout=5)
                if answer.status_code == HTTPStatus.OK and DEGRADED_HEADER not in answer.headers:
                    del pending[name]
        recovery = time.monotonic() - begin
        record_property("cluster_recovery_seconds", round(recovery, 2))
        print(f"\nthree replicas back on Redis {recovery:.2f}s after it restarted")
        assert not pending, f"not back on Redis within {RECOVERY_TIMEOUT:.0f}s: {sorted(pending)}"
        back = send(client, 4, "hi")
        assert [a.status_code for a in back] == [200, 200, 200, 429]  # shared again, no restart
        assert all(DEGRADED_HEADER not in a.headers for a in back)
    for name, process in cluster.replicas.items():
        log = process.log_path.read_text()
        assert log.count(UNREACHABLE) == 1 and log.count(RESUMED) == 1, (name, log)
        assert "Traceback" not in log
    nginx_log = cluster.nginx.log_path.read_text()
    assert "upstream prematurely closed" not in nginx_log and " 502 " not in nginx_log
