"""Scaled mode: three replicas behind a real nginx, sharing a real redis-server (exact), or
counting in memory (the bypass the product exists to show)."""

from __future__ import annotations

import asyncio
import os
import secrets
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest

from chatlimit.tools import compare, nginx_conf
from chatlimit.tools.processes import MissingBinary, find_binary, free_port, wait_until
from chatlimit.tools.stack import LocalStack as Cluster

from ..support import ROOT, STRATEGIES, descendants, missing
from ..traffic import burst, chat, remaining, send, served_by, statuses

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.nginx]

LIMIT = 10
# On a loaded 2-core machine a Redis reply can take longer than the 0.25 s default; failing
# open then would grant extra messages. Here storage trouble must show as 503, never as a 200.
PATIENT = {"REDIS_SOCKET_TIMEOUT": "5", "REDIS_CONNECT_TIMEOUT": "5", "FAIL_MODE": "closed"}
# Request limits only: the token budget and stream slots have their own invariant run
# (test_token_invariant.py), and 5 slots would refuse a burst before RATE_LIMIT does.
REQUESTS_ONLY = {"TOKEN_LIMIT": "off", "MAX_STREAMS": "off"}
ENV = {"RATE_LIMIT": f"{LIMIT}/minute", **PATIENT, **REQUESTS_ONLY}
MakeCluster = Callable[..., Cluster]


def warmed(cluster: Cluster) -> Cluster:
    """One message to each replica first: a replica's first request pays for loading the Lua
    script and opening connections, which would hand every early success to the warm ones."""
    for name in cluster.names:
        response = chat(f"{cluster.url}/replica/{name}", "warm-up", agent="warm-up",
                        forwarded=fresh_address())
        assert response.status_code == HTTPStatus.OK
    return cluster


@pytest.fixture(scope="module")
def shared(make_cluster: MakeCluster) -> Cluster:
    """Three replicas sharing one redis-server (append-only), fixed window, 10/minute."""
    return warmed(make_cluster(env=ENV))


@pytest.fixture(scope="module")
def in_memory(make_cluster: MakeCluster) -> Cluster:
    """Three replicas, each counting in its own memory, 10/minute."""
    return warmed(make_cluster(storage="memory", env=ENV))


# RATE_LIMIT_ENGINE=slowapi: stock slowapi.Limiter counts, with the same routes and decorators.
ENGINES = ["chatlimit", "slowapi"]
STOCK = {"RATE_LIMIT_ENGINE": "slowapi"}


@pytest.fixture(scope="module")
def stock_shared(make_cluster: MakeCluster, shared: Cluster) -> Cluster:
    """Stock slowapi's three replicas, on the same redis-server."""
    return warmed(make_cluster(env={**ENV, **STOCK}, redis=shared.redis))


@pytest.fixture(scope="module")
def stock_in_memory(make_cluster: MakeCluster) -> Cluster:
    return warmed(make_cluster(storage="memory", env={**ENV, **STOCK}))


def engine_cluster(request: pytest.FixtureRequest, engine: str, storage: str) -> Cluster:
    name = {"redis": "shared", "memory": "in_memory"}[storage]
    cluster: Cluster = request.getfixturevalue(name if engine == "chatlimit" else f"stock_{name}")
    return cluster


Headers = dict[str, str]


def fresh_address() -> str:
    """An address from the benchmarking range 198.18.0.0/15, as a proxy in front of nginx
    would forward it (nginx appends the loopback peer; the replicas trust only that)."""
    n = secrets.randbelow(2**17)
    return f"198.{18 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}"


@pytest.fixture
def user() -> Headers:
    """A client no other test uses (its own User-Agent and address), so a fresh quota; the
    per-address ceiling (RATE_LIMIT_PER_ADDRESS) of loopback is left alone."""
    return {"User-Agent": f"test-user/{uuid.uuid4().hex[:12]}", "X-Forwarded-For": fresh_address()}


@dataclass(frozen=True)
class Answer:
    """One answer of the kill test's load, with when its request started."""

    status: int
    served_by: str
    remaining: int | None
    started: float


def quota_views(cluster: Cluster, user: Headers) -> dict[str, int]:
    """Each replica's own view of the caller's quota, through nginx's /replica/<name>/ route."""
    views = {}
    for name in cluster.names:
        response = httpx.get(f"{cluster.url}/replica/{name}/api/quota",
                             headers=user)
        assert response.status_code == HTTPStatus.OK
        assert response.json()["served_by"] == name
        views[name] = response.json()["quota"]["remaining"]
    return views


# --- exactness and the bypass -------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_300_concurrent_requests_through_nginx_allow_exactly_the_limit_for_every_strategy(
    make_cluster: MakeCluster, request: pytest.FixtureRequest, user: Headers, strategy: str,
    engine: str,
) -> None:
    base = engine_cluster(request, engine, "redis")
    if strategy == "fixed-window":
        cluster = base
    else:  # its own replicas, on the same redis-server
        cluster = warmed(make_cluster(
            env={**ENV, "RATE_LIMIT_STRATEGY": strategy, "RATE_LIMIT_ENGINE": engine},
            redis=base.redis))
    try:
        answers = burst(cluster.url, 300, headers=user)
    finally:
        if cluster is not base:
            cluster.stop()
    assert statuses(answers) == {HTTPStatus.OK: LIMIT, HTTPStatus.TOO_MANY_REQUESTS: 300 - LIMIT}
    assert set(served_by(answers, HTTPStatus.TOO_MANY_REQUESTS)) == set(cluster.names)
    # Which replica grants the ten is a race (all ten on one replica happens under load), but a
    # replica that refused after granting fewer than ten itself counted the others' grants.
    granted = served_by(answers, HTTPStatus.OK)
    assert sum(granted[name] < LIMIT for name in cluster.names) >= len(cluster.names) - 1


@pytest.mark.parametrize("engine", ENGINES)
def test_with_memory_storage_each_replica_counts_alone_so_300_requests_get_three_times_the_limit(
    request: pytest.FixtureRequest, user: Headers, engine: str
) -> None:
    # The failure mode chatlimit exists to show: nothing is shared, so every replica grants
    # the full limit and one user gets replicas x limit.
    in_memory = engine_cluster(request, engine, "memory")
    answers = burst(in_memory.url, 300, headers=user)
    assert statuses(answers) == {HTTPStatus.OK: 3 * LIMIT,
                                 HTTPStatus.TOO_MANY_REQUESTS: 300 - 3 * LIMIT}
    per_replica = served_by(answers, HTTPStatus.OK)
    assert per_replica == {name: LIMIT for name in in_memory.names}


# --- the guide's scenarios, through `chatlimit compare` ----------------------------------

@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("storage", "allowed", "verdict"), [
    ("redis", LIMIT, "ENFORCED: 10 of 30 allowed (limit 10)"),
    ("memory", 3 * LIMIT, "BYPASSED: 30 of 30 allowed, limit 10: each replica counts alone"),
])
def test_guides_shopping_day_30_requests_over_3_replicas_with_limit_10(
    request: pytest.FixtureRequest, storage: str, allowed: int, verdict: str, engine: str
) -> None:
    cluster = engine_cluster(request, engine, storage)
    result = asyncio.run(compare.run(cluster.url, requests=30))
    assert result.limit == LIMIT
    assert result.allowed == allowed
    assert result.verdict_line() == verdict
    assert result.replicas == set(cluster.names)


# --- identities -----------------------------------------------------------------------

def test_separate_user_agents_have_separate_quotas(shared: Cluster, user: Headers) -> None:
    assert statuses(burst(shared.url, 12, headers=user))[HTTPStatus.OK] == LIMIT
    other = burst(shared.url, 12, headers={**user, "User-Agent": user["User-Agent"] + "-other-browser"})
    assert statuses(other) == {HTTPStatus.OK: LIMIT, HTTPStatus.TOO_MANY_REQUESTS: 2}


def test_separate_client_addresses_behind_nginx_have_separate_quotas(
    shared: Cluster, user: Headers
) -> None:
    assert statuses(burst(shared.url, 12, headers=user))[HTTPStatus.OK] == LIMIT
    other = burst(shared.url, 12, headers={**user, "X-Forwarded-For": fresh_address()})
    assert statuses(other) == {HTTPStatus.OK: LIMIT, HTTPStatus.TOO_MANY_REQUESTS: 2}


def test_per_replica_views_agree_with_redis(shared: Cluster, user: Headers) -> None:
    answers = send(shared.url, 4, headers=user)
    assert set(served_by(answers)) == set(shared.names)
    assert quota_views(shared, user) == {name: LIMIT - 4 for name in shared.names}


def test_per_replica_views_disagree_with_memory(in_memory: Cluster, user: Headers) -> None:
    answers = send(in_memory.url, 4, headers=user)
    used = {name: LIMIT - remaining for name, remaining in quota_views(in_memory, user).items()}
    assert used == {name: served_by(answers)[name] for name in in_memory.names}
    assert sum(used.values()) == 4
    assert all(count < 4 for count in used.values())  # no replica saw them all
    assert len(set(used.values())) > 1


# --- nginx in front ---------------------------------------------------------------------

def test_request_bodies_nginx_buffers_to_disk_still_reach_a_replica(shared: Cluster) -> None:
    # 30 kB is past nginx's in-memory body buffer: its worker writes a temp file under the
    # cluster's private workdir. The replica then refuses the message as too long (422).
    response = httpx.post(f"{shared.url}/chat", content=b'{"message": "' + b"a" * 30000 + b'"}',
                          headers={"Content-Type": "application/json"})
    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert response.headers["x-served-by"] in shared.names


def test_the_renderer_follows_the_number_of_replicas_and_nginx_accepts_the_result(
    tmp_path: Path,
) -> None:
    upstreams = {f"app-{i}": f"127.0.0.1:{9000 + i}" for i in range(1, 6)}
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf.render(nginx_conf.template_text(), upstreams, free_port(), tmp_path))
    check = subprocess.run(
        [find_binary("nginx"), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
        capture_output=True, text=True, check=False,
    )
    assert check.returncode == 0, check.stderr
    assert "(app-1|app-2|app-3|app-4|app-5)" in conf.read_text()


def test_the_package_ships_nginx_conf_itself_not_a_copy() -> None:
    assert nginx_conf.template_text() == (ROOT / "nginx" / "nginx.conf").read_text()


# --- Redis restarts, replicas die ---------------------------------------------------------

def test_counters_survive_a_redis_restart(shared: Cluster, user: Headers) -> None:
    assert shared.redis is not None
    send(shared.url, 4, headers=user)
    shared.redis.stop()
    shared.redis.start()
    assert any((shared.redis.dir / "appendonlydir").iterdir())
    for name in shared.names:
        wait_until(lambda name=name: httpx.get(f"{shared.replica_urls[name]}/readyz").is_success,
                   what=f"{name} back on redis")
    assert quota_views(shared, user) == {name: LIMIT - 4 for name in shared.names}
    assert remaining(send(shared.url, 1, headers=user)[0]) == LIMIT - 5


CUT_OFF = 0  # no complete response


def test_a_killed_replica_is_routed_around_with_no_5xx_except_requests_in_flight(
    shared: Cluster,
) -> None:
    workers, victim = 8, "app-2"
    answers: list[Answer] = []
    killed_at: list[float] = []

    async def load() -> None:
        async with httpx.AsyncClient(timeout=20) as client:

            async def worker() -> None:
                while len(answers) < 150:
                    started = time.monotonic()
                    try:
                        response = await client.post(
                            f"{shared.url}/chat", json={"message": "hello"},
                            # A new client per request: only 5xx, never 429, can interrupt.
                            headers={"User-Agent": f"test-kill/{uuid.uuid4().hex}",
                                     "X-Forwarded-For": fresh_address()},
                        )
                    except httpx.TransportError:
                        # Killed between its headers and its body: nginx can only hang up.
                        answers.append(Answer(CUT_OFF, "?", None, started))
                    else:
                        answers.append(Answer(response.status_code,
                                              response.headers.get("x-served-by", "?"),
                                              None, started))
                    if len(answers) == 40 and not killed_at:
                        await asyncio.to_thread(shared.kill_replica, victim)
                        killed_at.append(time.monotonic())

            await asyncio.gather(*(worker() for _ in range(workers)))

    try:
        asyncio.run(load())
        after = [a for a in answers if a.started > killed_at[0]]
        failed = [a for a in answers if a.status != HTTPStatus.OK]
        assert {a.status for a in answers} <= {HTTPStatus.OK, HTTPStatus.BAD_GATEWAY, CUT_OFF}
        assert all(a.started < killed_at[0] for a in failed), "5xx for a request sent after the kill"
        assert len(failed) <= workers
        assert all(a.served_by == "nginx" for a in failed if a.status == HTTPStatus.BAD_GATEWAY)
        assert len(after) >= 80
        assert {a.status for a in after} == {HTTPStatus.OK}
        assert {a.served_by for a in after} == set(shared.names) - {victim}
    finally:
        shared.start_replica(victim)
    # Back on its own port, it answers through nginx again.
    response = httpx.get(f"{shared.url}/replica/{victim}/healthz")
    assert response.status_code == HTTPStatus.OK
    assert response.json()["served_by"] == victim


# --- `chatlimit cluster` itself ---------------------------------------------------------



def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _read_until(process: subprocess.Popen[bytes], marker: str, timeout: float = 60) -> str:
    assert process.stdout is not None
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while marker.encode() not in seen:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"chatlimit cluster did not get ready:\n{seen.decode()}")
            if selector.select(timeout=1):
                seen += os.read(process.stdout.fileno(), 65536)
    return seen.decode()


# Memory is asked for as the replicas' variable, STORAGE_URI=memory://, which the cluster honours.
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("storage", "asked", "expect", "verdict"), [
    ("redis", {}, "enforced", "ENFORCED: 3 of 6 allowed (limit 3)"),
    ("memory", {"STORAGE_URI": "memory://"}, "bypassed",
     "BYPASSED: 6 of 6 allowed, limit 3: each replica counts alone"),
])
def test_chatlimit_cluster_shows_the_guides_six_requests_and_leaves_no_process_after_sigterm(
    storage: str, asked: dict[str, str], expect: str, verdict: str, engine: str
) -> None:
    for binary in ("redis-server", "nginx"):
        try:
            find_binary(binary)
        except MissingBinary as exc:
            missing(str(exc))
    port = free_port()
    env = {**os.environ, "RATE_LIMIT": "3/minute", "RATE_LIMIT_ENGINE": engine, **PATIENT,
           **asked}
    cluster = subprocess.Popen(
        [sys.executable, "-m", "chatlimit", "cluster", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    try:
        banner = _read_until(cluster, "Ctrl-C")
        url = f"http://127.0.0.1:{port}"
        assert f"ready: {url}" in banner
        assert "app-1, app-2, app-3" in banner
        assert f"({storage}) behind nginx" in banner
        children = descendants(cluster.pid)
        # redis-server (unless memory), `chatlimit model`, three replicas, nginx's master and
        # its worker.
        assert len(children) == (7 if storage == "redis" else 6)
        assert "model: chatlimit model at http://127.0.0.1:" in banner

        run = subprocess.run(
            [sys.executable, "-m", "chatlimit", "compare", url, "--expect", expect],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.splitlines()[-1] == verdict
        assert "\033[" not in run.stdout  # not a TTY: no colour

        cluster.send_signal(signal.SIGTERM)
        assert cluster.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if cluster.poll() is None:
            cluster.kill()
            cluster.wait()
        assert cluster.stdout is not None
        cluster.stdout.close()
    assert [pid for pid in children if _alive(pid)] == []


def test_chatlimit_cluster_killed_outright_still_takes_its_processes_with_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    # TMPDIR: a SIGKILL leaves its work folder (logs, Redis data) behind; pytest's, not /tmp.
    cluster = subprocess.Popen(
        [sys.executable, "-m", "chatlimit", "cluster", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, **PATIENT, "TMPDIR": str(tmp_path)},
    )
    try:
        _read_until(cluster, "Ctrl-C")
        children = descendants(cluster.pid)
        assert len(children) == 7  # redis, the model, three replicas, nginx and its worker
        cluster.kill()  # SIGKILL: no clean-up code runs in the launcher
        cluster.wait()
        # The children get SIGTERM from the kernel (PR_SET_PDEATHSIG) and exit by themselves.
        wait_until(lambda: not any(_alive(pid) for pid in children), timeout=20,
                   what="the orphaned cluster processes to exit")
    finally:
        if cluster.poll() is None:
            cluster.kill()
            cluster.wait()
        assert cluster.stdout is not None
        cluster.stdout.close()
