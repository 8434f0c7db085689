"""Fixtures that start real servers: redis-server on a free loopback port, apps under test.

A test that needs a binary that is not installed skips locally with the reason, and fails
under CI=true: CI must run everything.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from chatlimit.app import create_app
from chatlimit.tools.processes import MissingBinary, RedisServer
from chatlimit.tools.stack import LocalStack as Cluster

from .support import ClientFactory, ServedApp, ServeFactory, make_settings, missing

# slowapi's own tests, vendored: tests/unit/limiter/test_slowapi_peer.py runs them from a copy.
collect_ignore = ["peer"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last. pytest-playwright's sync API keeps an event loop running in the
    main thread for the rest of the session, and tests that call asyncio.run() (the bursts of
    concurrent requests) cannot run after it."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
    except MissingBinary as exc:
        missing(str(exc))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that stop, freeze or restart it (the
    session one is shared with other tests)."""
    try:
        server = RedisServer(tmp_path, name="own-redis")
    except MissingBinary as exc:
        missing(str(exc))
    server.start()
    yield server
    server.process.signal(signal.SIGCONT)  # a frozen server would ignore SIGTERM
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the session's redis-server."""
    if not redis_server.ping():  # a test may have stopped it
        redis_server.start()
    redis_server.command("FLUSHALL")
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
def storage_uri(request: pytest.FixtureRequest) -> str:
    """Runs a test once against memory:// and once against a real redis-server."""
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """Build an app from Settings overrides and enter its lifespan; the direct peer defaults to
    an untrusted public address, like a browser talking to the app."""
    opened: list[TestClient] = []

    def factory(peer: str = "203.0.113.10", **overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides)), client=(peer, 50000))
        client.__enter__()
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def make_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Cluster]]:
    """Start a scaled-mode Cluster (redis-server, replicas, nginx) under a temp dir:
    `make_cluster(storage="memory", env={"RATE_LIMIT": "10/minute"})`. Module-scoped so a module
    can share one cluster between tests; every cluster still running stops at the module's end
    (a test may stop one earlier: `cluster.stop()`)."""
    started: list[Cluster] = []

    def factory(**options: Any) -> Cluster:
        try:
            # A pytest killed mid-run takes the cluster's processes with it.
            cluster = Cluster(tmp_path_factory.mktemp("cluster"),
                              **{"die_with_parent": True, **options})
        except MissingBinary as exc:
            missing(str(exc))
        started.append(cluster)
        return cluster.start()

    yield factory
    for cluster in started:
        cluster.stop()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """Start real `chatlimit serve` processes, stopped at teardown:
    `serve(name="app", STORAGE_URI=..., RATE_LIMIT="2/5second")` (ServedApp's arguments)."""
    started: list[ServedApp] = []

    def factory(name: str = "app", **options: Any) -> ServedApp:
        workdir = tmp_path / f"serve-{len(started)}"  # a log and a cwd of its own
        workdir.mkdir()
        app = ServedApp(workdir, name, **options)
        started.append(app)
        return app.start()

    yield factory
    for app in started:
        app.stop()
