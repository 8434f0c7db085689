"""Redis passwords never leave the process: not in logs, /api/info, error bodies or the page,
whether the password is right, wrong, or the storage is down."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest

from chatlimit.limiter.headers import DEGRADED_HEADER
from chatlimit.tools.processes import MissingBinary, RedisServer
from chatlimit.uri import mask_uri

from ..support import ServedApp, missing

pytestmark = [pytest.mark.integration, pytest.mark.redis]

PASSWORD = "pw-" + secrets.token_hex(8)


class PasswordedRedis(RedisServer):
    def ping(self) -> bool:
        try:  # NOAUTH means the server is up and wants the password
            return self.command("PING").startswith(("+PONG", "-NOAUTH"))
        except OSError:
            return False


@pytest.fixture
def passworded_redis(tmp_path: Path) -> Iterator[RedisServer]:
    try:
        server = PasswordedRedis(tmp_path, extra_args=["--requirepass", PASSWORD], name="auth-redis")
    except MissingBinary as exc:
        missing(str(exc))
    server.start()
    yield server
    server.stop()


def everything_a_client_can_see(app: ServedApp) -> str:
    """Bodies and headers of every route, of successes, 429s and each kind of error."""
    seen = []
    with httpx.Client(base_url=app.url, timeout=10) as client:
        answers = [client.post("/chat", json={"message": "hi"}) for _ in range(4)]
        answers += [
            client.get(path)
            for path in ("/", "/api/info", "/api/quota", "/healthz", "/readyz", "/openapi.json",
                         "/docs", "/no/such/path")
        ]
        answers += [
            client.post("/chat", json={"message": ""}),
            client.post("/chat", content=b"{bad", headers={"Content-Type": "application/json"}),
            client.put("/chat"),
        ]
    for answer in answers:
        assert answer.status_code < HTTPStatus.INTERNAL_SERVER_ERROR or answer.status_code == 503
        seen.append(f"{answer.status_code} {answer.headers!r}\n{answer.text}")
    return "\n".join(seen)


def test_the_redis_password_never_appears_in_responses_or_logs(
    tmp_path: Path, passworded_redis: RedisServer
) -> None:
    uri = f"redis://:{PASSWORD}@127.0.0.1:{passworded_redis.port}/0"
    with ServedApp(tmp_path, STORAGE_URI=uri, ACCESS_LOG="true", LOG_LEVEL="debug") as app:
        seen = everything_a_client_can_see(app)
        info = httpx.get(f"{app.url}/api/info", timeout=5).json()
        assert info["storage"]["uri"] == f"redis://:***@127.0.0.1:{passworded_redis.port}/0"
        assert httpx.post(f"{app.url}/chat", json={"message": "x"}, timeout=5).headers.get(DEGRADED_HEADER) is None
        passworded_redis.stop()  # and while the storage is down
        seen += everything_a_client_can_see(app)
        log = app.log
    assert "\"reply\"" in seen and "rate_limited" in seen and "storage-unreachable" in seen
    assert PASSWORD not in seen
    assert PASSWORD not in log
    assert "rate-limit storage unreachable" in log


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_a_wrong_password_gives_the_fail_mode_not_a_500_and_is_not_logged(
    tmp_path: Path, passworded_redis: RedisServer, fail_mode: str
) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    uri = f"redis://default:{wrong}@127.0.0.1:{passworded_redis.port}/0"
    with ServedApp(tmp_path, STORAGE_URI=uri, FAIL_MODE=fail_mode, LOG_LEVEL="debug") as app:
        answer = httpx.post(f"{app.url}/chat", json={"message": "hi"}, timeout=10)
        if fail_mode == "open":
            assert answer.status_code == HTTPStatus.OK
            assert answer.headers[DEGRADED_HEADER] == "storage-unreachable"
        else:
            assert answer.status_code == HTTPStatus.SERVICE_UNAVAILABLE
            assert answer.json()["error"] == "storage_unavailable"
        assert httpx.get(f"{app.url}/readyz", timeout=10).status_code == HTTPStatus.SERVICE_UNAVAILABLE
        seen = everything_a_client_can_see(app)
        log = app.log
    unreachable = [line for line in log.splitlines() if "rate-limit storage unreachable" in line]
    assert len(unreachable) == 1, log
    assert wrong not in log and wrong not in seen and wrong not in answer.text
    assert "Traceback" not in log


def test_rediss_credentials_are_masked_when_tls_fails(tmp_path: Path, passworded_redis: RedisServer) -> None:
    # A TLS client against a plain-text server: the handshake fails, the fail mode applies.
    uri = f"rediss://chat:{PASSWORD}@127.0.0.1:{passworded_redis.port}/0"
    with ServedApp(tmp_path, STORAGE_URI=uri) as app:
        seen = everything_a_client_can_see(app)
        log = app.log
    assert "rediss://chat:***@" in seen
    assert PASSWORD not in seen and PASSWORD not in log
    assert "Traceback" not in log


def test_a_start_up_error_does_not_print_the_password(tmp_path: Path) -> None:
    env = {**os.environ, "STORAGE_URI": f"mongodb://admin:{PASSWORD}@db:27017/0"}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "chatlimit", "serve"], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "STORAGE_URI" in done.stderr and "admin:***@" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("redis://:p@ss/word@h:1/0", "redis://:***@h:1/0"),
        ("rediss://user:p%40ss@h:1", "rediss://user:***@h:1"),
        ("redis+sentinel://:pw@h1:1,h2:2/main?sentinel_password=pw", "redis+sentinel://:***@h1:1,h2:2/main?sentinel_password=***"),
        ("redis://h:1/0?password=pw", "redis://h:1/0?password=***"),
    ],
)
def test_masking_hides_passwords_with_awkward_characters(uri: str, shown: str) -> None:
    assert mask_uri(uri) == shown
