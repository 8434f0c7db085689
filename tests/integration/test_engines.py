"""RATE_LIMIT_ENGINE=chatlimit (default) or slowapi: the same routes and decorators, counted by
chatlimit's Limiter or by stock slowapi.Limiter. Both decide the same; what stock slowapi
does not do is measured here (Redis round trips counted by Redis itself, /healthz while Redis
is frozen, the answers while Redis is stopped) and quoted in the README."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from chatlimit.app import create_app
from chatlimit.settings import SettingsError, load_settings
from chatlimit.tools.processes import RedisServer

from ..support import STRATEGIES, ClientFactory, ServedApp, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.redis]

ENGINES = ["chatlimit", "slowapi"]
# Three users on two addresses, interleaved; the second address also meets its ceiling.
SEQUENCE = [("198.51.100.1", "ua-a"), ("198.51.100.1", "ua-b"), ("198.51.100.2", "ua-c")] * 4 + \
    [("198.51.100.1", f"ua-{n}") for n in range(6)]


class Monitor:
    """Redis's MONITOR: every command a client sends, and (tagged `lua`) what scripts run."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.lines: list[str] = []
        self.buffer = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):  # closed by close()
            self._lines()

    def _lines(self) -> None:
        while chunk := self.sock.recv(65536):
            self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\r\n")
            self.lines += [line.decode(errors="replace") for line in lines]

    def client_commands(self) -> list[str]:
        return [line for line in self.lines if line.startswith("+") and "lua]" not in line
                and line != "+OK"]

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.sock.close()


def send(client: TestClient, address: str, agent: str) -> int:
    return client.post("/chat", json={"message": "hi"},
                       headers={"User-Agent": agent, "X-Forwarded-For": address}).status_code


def engine_client(make_client: ClientFactory, engine: str, **overrides: str) -> TestClient:
    # The peer is a trusted proxy, so X-Forwarded-For picks the address.
    return make_client(peer="127.0.0.1", rate_limit_engine=engine, **overrides)


@pytest.mark.parametrize("storage", ["memory", "redis"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_both_engines_answer_the_same_sequence_with_the_same_200s_and_429s(
    make_client: ClientFactory, request: pytest.FixtureRequest, storage: str, strategy: str
) -> None:
    answers = {}
    for engine in ENGINES:
        uri = "memory://" if storage == "memory" else request.getfixturevalue("redis_url")
        if storage == "redis":
            request.getfixturevalue("redis_server").command("FLUSHALL")
        client = engine_client(make_client, engine, storage_uri=uri, rate_limit_strategy=strategy,
                               rate_limit="3/minute;4/hour", rate_limit_per_address="5/minute")
        answers[engine] = [send(client, address, agent) for address, agent in SEQUENCE]
    assert answers["chatlimit"] == answers["slowapi"]
    # Not trivially equal: the users' own limit and the address ceiling both refused.
    assert answers["chatlimit"].count(HTTPStatus.OK) == 8
    assert HTTPStatus.TOO_MANY_REQUESTS in answers["chatlimit"]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_engine_is_named_in_api_info_and_on_the_page(make_client: ClientFactory, engine: str) -> None:
    client = engine_client(make_client, engine)
    assert client.get("/api/info").json()["engine"] == engine
    page = client.get("/").text
    label = "stock slowapi" if engine == "slowapi" else "chatlimit's limiter"
    assert f'id="mode-engine">{label}</li>' in page


def test_a_bad_engine_or_shadow_mode_with_stock_slowapi_stops_start_up_in_one_line() -> None:
    with pytest.raises(SettingsError, match=r"^RATE_LIMIT_ENGINE='limits' is invalid: accepts chatlimit"):
        load_settings(rate_limit_engine="limits")
    with pytest.raises(SettingsError, match=r"^RATE_LIMIT_ENGINE='slowapi' is invalid"):
        load_settings(rate_limit_engine="slowapi", rate_limit_mode="shadow")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_redis_round_trips_per_chat_request_counted_by_redis(
    redis_server: RedisServer, redis_url: str, strategy: str, record_property: pytest.RecordProperty
) -> None:
    trips = {}
    # The same contract first: request limits only (stock slowapi has no token budget). Then
    # chatlimit's default, whose token budget settles each reply in one more call.
    variants = {"chatlimit": {"token_limit": "off", "max_streams": "off"},
                "slowapi": {}, "chatlimit+tokens": {}}
    for variant, extra in variants.items():
        app = create_app(make_settings(
            storage_uri=redis_url, rate_limit_engine=variant.split("+")[0],
            rate_limit_strategy=strategy, rate_limit="50/minute", **extra))
        with TestClient(app, client=("203.0.113.10", 50000)) as client:
            assert client.post("/chat", json={"message": "warm"}).status_code == HTTPStatus.OK
            monitor = Monitor(redis_server.port)
            time.sleep(0.2)  # MONITOR acknowledged before counting starts
            for _ in range(10):
                assert client.post("/chat", json={"message": "hi"}).status_code == HTTPStatus.OK
            time.sleep(0.2)  # the last lines reach the monitor
            monitor.close()
        trips[variant] = len(monitor.client_commands()) / 10
    record_property("round_trips_per_chat", trips)
    print(f"\n{strategy}: Redis round trips per /chat: {trips}")
    assert trips["chatlimit"] == 1
    assert trips["chatlimit+tokens"] == 2  # admission, then the reply's settlement
    # slowapi: one per limit (the user's and the address ceiling), the headers' window
    # statistics per decorator, and the quota in the body.
    assert trips["slowapi"] >= 4


def _frozen(tmp_path: Path, redis: RedisServer, engine: str) -> dict[str, object]:
    with ServedApp(tmp_path, name=engine, STORAGE_URI=redis.url, RATE_LIMIT_ENGINE=engine,
                   REDIS_SOCKET_TIMEOUT="1.5") as app:
        assert httpx.post(f"{app.url}/chat", json={"message": "hi"}).status_code == HTTPStatus.OK
        redis.process.signal(signal.SIGSTOP)
        in_flight: list[object] = []
        try:
            def chat() -> None:
                try:
                    in_flight.append(httpx.post(f"{app.url}/chat", json={"message": "hi"},
                                                timeout=20).status_code)
                except httpx.HTTPError as exc:
                    in_flight.append(type(exc).__name__)

            sender = threading.Thread(target=chat)
            with httpx.Client(base_url=app.url, timeout=3) as client:
                client.get("/healthz")  # the connection is set up outside the timing
                sender.start()
                time.sleep(0.3)  # the /chat reaches Redis before /healthz is timed
                begin = time.monotonic()
                try:
                    health: object = client.get("/healthz").status_code
                except httpx.TimeoutException:
                    health = "no answer within 3 s"
                healthz = time.monotonic() - begin
        finally:
            redis.process.signal(signal.SIGCONT)
        sender.join(20)
        return {"healthz": health, "healthz_seconds": round(healthz, 4), "chat": in_flight}


def test_healthz_while_redis_is_frozen_answers_at_once_only_with_chatlimit(
    tmp_path: Path, own_redis: RedisServer, record_property: pytest.RecordProperty
) -> None:
    ours = _frozen(tmp_path, own_redis, "chatlimit")
    stock = _frozen(tmp_path, own_redis, "slowapi")
    record_property("healthz_during_sigstop", {"chatlimit": ours, "slowapi": stock})
    print(f"\n/healthz with Redis frozen: chatlimit {ours}; slowapi {stock}")
    assert ours["healthz"] == HTTPStatus.OK
    assert ours["chat"] == [HTTPStatus.OK]  # after the socket timeout, from the fallback
    # slowapi calls Redis synchronously on the event loop: nothing else is served meanwhile.
    assert stock["healthz"] == "no answer within 3 s"


@pytest.mark.parametrize(("engine", "fail_mode", "expected"), [
    ("chatlimit", "open", HTTPStatus.OK),
    ("chatlimit", "closed", HTTPStatus.SERVICE_UNAVAILABLE),
    ("slowapi", "open", HTTPStatus.INTERNAL_SERVER_ERROR),
])
def test_what_chat_answers_with_redis_stopped(
    tmp_path: Path, own_redis: RedisServer, engine: str, fail_mode: str, expected: int,
    record_property: pytest.RecordProperty,
) -> None:
    with ServedApp(tmp_path, STORAGE_URI=own_redis.url, RATE_LIMIT_ENGINE=engine,
                   FAIL_MODE=fail_mode) as app:
        assert httpx.post(f"{app.url}/chat", json={"message": "hi"}).status_code == HTTPStatus.OK
        own_redis.stop()
        codes = [httpx.post(f"{app.url}/chat", json={"message": "hi"}, timeout=20).status_code
                 for _ in range(3)]
        ready = httpx.get(f"{app.url}/readyz", timeout=20).status_code
    record_property("statuses_with_redis_stopped", {"chat": codes, "readyz": ready})
    print(f"\n{engine} FAIL_MODE={fail_mode}, Redis stopped: /chat {codes}, /readyz {ready}")
    assert codes == [expected] * 3
    assert ready == HTTPStatus.SERVICE_UNAVAILABLE
