"""Graceful shutdown: SIGTERM lets in-flight requests finish, and `chatlimit cluster` stops
nginx, the replicas and Redis cleanly (SIGTERM honoured, nothing left behind)."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest
from chatlimit.servers import port_open, wait_until

from .served import ServedApp

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

