"""`chatlimit serve` runs the real app under uvicorn, in one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from chatlimit.tools.processes import free_port, port_open, wait_until


def test_serve_answers_chat_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "INSTANCE_NAME": "served", "RATE_LIMIT": "2/minute", "STORAGE_URI": "memory://"}
    env.pop("REDIS_URL", None)
    # A .env file and RATELIMIT_* variables must not change behaviour (slowapi reads both).
    (tmp_path / ".env").write_text("RATELIMIT_ENABLED=false\nRATELIMIT_DEFAULT=100/second\n")
    env["RATELIMIT_ENABLED"] = "false"
    env["RATELIMIT_STORAGE_URL"] = "redis://127.0.0.1:1"
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "chatlimit", "serve", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: port_open(port), timeout=30, what="chatlimit serve")
        statuses = []
        for _ in range(3):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/chat", data=json.dumps({"message": "hi"}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    statuses.append(answer.status)
                    assert answer.headers["X-Served-By"] == "served"
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
        assert statuses == [200, 200, 429]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert b"chat-form" in page.read()
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=15)
    # uvicorn finishes its graceful shutdown, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM)
    log = log_path.read_text()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
