"""Graceful shutdown: SIGTERM lets in-flight requests finish, and `chatlimit cluster` stops
nginx, the replicas and Redis cleanly (SIGTERM honoured, nothing left behind)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chatlimit.tools.processes import MissingBinary, find_binary, free_port, port_open, wait_until

from ..support import ServedApp, descendants, missing

pytestmark = pytest.mark.integration


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_sigterm_lets_an_in_flight_request_finish(tmp_path: Path) -> None:
    app = ServedApp(tmp_path, STORAGE_URI="memory://").start()
    try:
        body = json.dumps({"message": "still there?"}).encode()
        sock = socket.create_connection(("127.0.0.1", app.port), timeout=10)
        # Headers and half the body: the request is in flight until the rest arrives.
        sock.sendall(
            b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body[:5]
        )
        app.terminate()
        # Shutdown has begun once the listening socket is closed.
        wait_until(lambda: not port_open(app.port), timeout=10, what="listener closed")
        assert app.process.alive()
        sock.sendall(body[5:])
        answer = read_response(sock)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b'"reply"' in answer
        code = app.process.popen.wait(15)  # type: ignore[union-attr]
    finally:
        app.stop()
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in app.log
    assert "Traceback" not in app.log




def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.redis
@pytest.mark.nginx
def test_cluster_stop_ends_nginx_replicas_and_redis_by_sigterm(tmp_path: Path) -> None:
    from chatlimit.tools.stack import LocalStack as Cluster

    try:
        cluster = Cluster(tmp_path, replicas=2)
    except MissingBinary as exc:
        missing(str(exc))
    cluster.start()
    assert cluster.redis is not None
    pids = set(cluster.pids())
    pids |= {child for pid in pids for child in descendants(pid)}  # nginx's workers
    cluster.stop()
    assert not [pid for pid in pids if alive(pid)]
    # Each exited on SIGTERM by itself: nobody needed SIGKILL.
    assert cluster.nginx.popen is not None and cluster.nginx.popen.returncode == 0
    assert cluster.redis.process.popen is not None and cluster.redis.process.popen.returncode == 0
    assert "ready to exit, bye bye" in cluster.redis.process.log_path.read_text()
    for process in cluster.replicas.values():
        assert process.popen is not None and process.popen.returncode in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in process.log_path.read_text()
    nginx_log = cluster.nginx.log_path.read_text()
    assert "[emerg]" not in nginx_log and "[alert]" not in nginx_log


@pytest.mark.redis
@pytest.mark.nginx
def test_chatlimit_cluster_command_stops_everything_on_sigterm(tmp_path: Path) -> None:
    try:
        find_binary("nginx")
        find_binary("redis-server")
    except MissingBinary as exc:
        missing(str(exc))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "STORAGE_URI")}
    out = tmp_path / "cluster.out"
    with open(out, "w") as log:
        command = subprocess.Popen(
            [sys.executable, "-m", "chatlimit", "cluster", "--replicas", "2", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True,
        )
    try:
        wait_until(lambda: "ready:" in out.read_text() or command.poll() is not None,
                   timeout=60, what="chatlimit cluster")
        assert command.poll() is None, out.read_text()
        children = descendants(command.pid)
        assert len(children) >= 4  # redis, two replicas, nginx and its workers
        command.send_signal(signal.SIGTERM)
        code = command.wait(20)
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
            command.wait()
    assert code == 128 + signal.SIGTERM
    assert "chatlimit cluster: stopped" in out.read_text()
    assert not [pid for pid in children if alive(pid)]
    assert not port_open(port)
