"""What the commands say when something is off: the real `chatlimit` and `make` commands, run
as a user would, each mistake answered by one line and an exit code."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatlimit import __version__
from chatlimit.tools.processes import ServedApp, free_port, wait_until

from ..support import ROOT

pytestmark = pytest.mark.integration


def chatlimit(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("STORAGE_URI", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, "-m", "chatlimit", *args], capture_output=True, text=True,
        timeout=timeout, check=False, env={**environ, **env}, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port this test process listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    app = ServedApp(tmp_path_factory.mktemp("cli"), "solo", STORAGE_URI="memory://",
                    RATE_LIMIT="3/minute", RATE_LIMIT_PER_ADDRESS="off")
    with app:
        yield app


def test_version_prints_the_package_version() -> None:
    run = chatlimit("--version")
    assert run.returncode == 0
    assert run.stdout.strip() == f"chatlimit {__version__}"


# --- chatlimit serve ------------------------------------------------------------------------

def test_serve_on_a_taken_port_says_who_holds_it_in_one_line_and_exits_3(taken_port: int) -> None:
    run = chatlimit("serve", "--port", str(taken_port))
    assert run.returncode == 3
    assert run.stdout == ""
    assert run.stderr.splitlines() == [
        f"chatlimit serve: port {taken_port} on 127.0.0.1 is taken by "
        f"{Path('/proc/self/comm').read_text().strip()} (pid {os.getpid()}); "
        "choose another with --port N or PORT"
    ]


def test_serve_warns_once_at_start_up_when_redis_is_unreachable(tmp_path: Path) -> None:
    # Nothing listens on a fresh free port: Redis is refused at once.
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    with ServedApp(tmp_path, "lonely", STORAGE_URI=unreachable) as app:
        wait_until(lambda: "unreachable" in app.log, timeout=10, what="the start-up warning")
        warnings = [line for line in app.log.splitlines() if "unreachable" in line]
    # Before any /chat: said when it starts, by whoever starts it.
    assert len(warnings) == 1
    assert "WARNING" in warnings[0]
    assert (f"rate-limit storage {unreachable} unreachable at start-up: FAIL_MODE=open, each "
            "replica counts alone in its own memory until it answers") in warnings[0]


# --- chatlimit cluster ----------------------------------------------------------------------

def test_cluster_on_a_taken_port_refuses_before_starting_anything(taken_port: int) -> None:
    run = chatlimit("cluster", "--storage", "memory", "--port", str(taken_port))
    assert run.returncode == 1
    assert run.stdout == ""  # no "starting", no "ready" from the health check of another server
    assert run.stderr.splitlines() == [
        f"chatlimit cluster: port {taken_port} is taken by "
        f"{Path('/proc/self/comm').read_text().strip()} (pid {os.getpid()}); "
        "choose another with --port N"
    ]


@pytest.mark.parametrize(("env", "args", "line"), [
    ({"STORAGE_URI": "redis://127.0.0.1:6390/0"}, (),
     "chatlimit cluster: STORAGE_URI (or REDIS_URL) would be ignored (the cluster starts its own "
     "redis-server); unset it, or use STORAGE_URI=memory:// or --storage memory"),
    ({"STORAGE_URI": "memory://"}, ("--storage", "redis"),
     "chatlimit cluster: STORAGE_URI=memory:// contradicts --storage redis; unset STORAGE_URI "
     "or drop --storage"),
])
def test_cluster_refuses_a_storage_uri_it_would_not_honour_in_one_line(
    env: dict[str, str], args: tuple[str, ...], line: str
) -> None:
    run = chatlimit("cluster", "--port", str(free_port()), *args, **env)
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.splitlines() == [line]


@pytest.mark.nginx
def test_make_cluster_listens_on_the_port_given_as_port_n(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_URI", "REDIS_URL", "MAKEFLAGS")}
    log = tmp_path / "make.log"
    with open(log, "w") as out:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "cluster", f"PORT={port}", "STORAGE=memory"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        wait_until(lambda: "Ctrl-C" in log.read_text() or make.poll() is not None,
                   timeout=90, what="make cluster")
        assert f"ready: http://127.0.0.1:{port}" in log.read_text(), log.read_text()
    finally:
        os.killpg(make.pid, signal.SIGTERM)  # make, scripts/cluster's exec'd chatlimit cluster
        make.wait(timeout=30)


# --- chatlimit compare ----------------------------------------------------------------------

def test_compare_against_nothing_stops_at_the_first_connection_error_in_one_sentence() -> None:
    port = free_port()
    run = chatlimit("compare", f"http://127.0.0.1:{port}")
    assert run.returncode == 1
    assert run.stdout == ""  # no table of six ConnectError rows
    assert run.stderr.splitlines() == [
        f"chatlimit compare: nothing answers at http://127.0.0.1:{port} (connection refused): "
        "start the app (./scripts/run) or a cluster (chatlimit cluster), or check the URL"
    ]


@pytest.mark.parametrize("spelling", ["127.0.0.1:{port}", "http://127.0.0.1:{port}/chat",
                                      "127.0.0.1:{port}/chat/"])
def test_compare_takes_a_url_without_http_or_ending_in_chat_as_the_deployment(
    single: ServedApp, spelling: str
) -> None:
    run = chatlimit("compare", spelling.format(port=single.port), "--expect", "enforced")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == "ENFORCED: 3 of 6 allowed (limit 3)"


def test_compare_says_in_one_line_when_expect_is_not_met(single: ServedApp) -> None:
    run = chatlimit("compare", single.url, "--expect", "bypassed")
    assert run.returncode == 1
    assert run.stdout.splitlines()[-1] == "ENFORCED: 3 of 6 allowed (limit 3)"
    assert run.stderr.splitlines() == ["chatlimit compare: expected BYPASSED, got ENFORCED"]


def test_compare_refuses_a_url_that_is_not_http_in_one_line() -> None:
    run = chatlimit("compare", "ftp://127.0.0.1:8080")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "chatlimit compare: the URL must start with http:// or https://, not ftp://127.0.0.1:8080"
    ]
