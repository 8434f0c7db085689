"""Hosted Redis: rediss:// (TLS) and passworded URIs, against a real redis-server that listens
on a TLS port only, with a CA and server certificate this module makes with openssl.

The password never shows: not in /api/info, the page, error bodies, nor the logs of a real
`chatlimit serve` (debug level, access log on), nor the one-line start-up error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
import redis

from chatlimit.tools.processes import (
    MissingBinary,
    Process,
    find_binary,
    free_port,
    wait_until,
)

from ..support import ClientFactory, ServedApp, missing
from ..traffic import chat

pytestmark = [pytest.mark.integration, pytest.mark.redis]

# Characters a hosted provider's generated password may hold; the URI carries it %-encoded.
PASSWORD = "s3cr3t-p@ss/w:rd+TLS"
ENCODED = urllib.parse.quote(PASSWORD, safe="")
SECRETS = (PASSWORD, ENCODED, "s3cr3t")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(workdir: Path, name: str) -> tuple[Path, Path]:
    key, cert = workdir / f"{name}.key", workdir / f"{name}.pem"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key.name, "-out", cert.name, "-days", "2", "-subj", f"/CN={name}",
        cwd=workdir,
    )
    return key, cert


def make_server_cert(workdir: Path, ca_key: Path, ca_cert: Path) -> tuple[Path, Path]:
    key, csr, cert = workdir / "server.key", workdir / "server.csr", workdir / "server.pem"
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key.name, "-out", csr.name, "-subj", "/CN=127.0.0.1", cwd=workdir,
    )
    (workdir / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", csr.name, "-CA", ca_cert.name, "-CAkey", ca_key.name,
        "-CAcreateserial", "-out", cert.name, "-days", "2", "-extfile", "san.cnf", cwd=workdir,
    )
    key.chmod(0o644)  # redis-server may run as another user than the one that wrote it
    return key, cert


@dataclass
class TlsRedis:
    port: int
    ca: Path
    other_ca: Path
    process: Process

    def uri(self, *, user: str = "", password: str = ENCODED, ca: Path | None = None) -> str:
        query = urllib.parse.urlencode(
            {"ssl_cert_reqs": "required", "ssl_ca_certs": str(ca or self.ca)}
        )
        return f"rediss://{user}:{password}@127.0.0.1:{self.port}/0?{query}"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=PASSWORD, ssl=True,
            ssl_ca_certs=str(self.ca), socket_timeout=2,
        )

    def ping(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    try:
        binary = find_binary("redis-server")
        find_binary("openssl")
    except MissingBinary as exc:
        missing(str(exc))
    workdir = tmp_path_factory.mktemp("tls-redis")
    ca_key, ca = make_ca(workdir, "test-ca")
    _, other_ca = make_ca(workdir, "other-ca")
    key, cert = make_server_cert(workdir, ca_key, ca)
    port = free_port()
    process = Process(
        "redis-tls",
        [
            binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
            "--requirepass", PASSWORD, "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--daemonize", "no", "--logfile", "",
        ],
        workdir / "redis.log",
    )
    process.start()
    server = TlsRedis(port, ca, other_ca, process)
    try:
        wait_until(server.ping, what="redis-server with TLS")
    except TimeoutError as exc:
        process.stop()
        raise RuntimeError(f"{exc}\n{process.log_tail()}") from None
    yield server
    process.stop()


@pytest.fixture
def tls_uri(tls_redis: TlsRedis) -> TlsRedis:
    with tls_redis.client() as client:
        client.flushall()
    return tls_redis


@pytest.mark.parametrize("user", ["", "default"], ids=["password only", "user and password"])
def test_a_passworded_rediss_uri_counts_in_the_tls_redis(
    make_client: ClientFactory, tls_uri: TlsRedis, user: str
) -> None:
    client = make_client(storage_uri=tls_uri.uri(user=user))
    assert client.get("/readyz").status_code == HTTPStatus.OK
    codes = [chat(client, agent="curl/8").status_code for _ in range(4)]
    assert codes == [HTTPStatus.OK] * 3 + [HTTPStatus.TOO_MANY_REQUESTS]
    with tls_uri.client() as store:
        # The user's requests and tokens, and the address's (the stream lease is released).
        assert len(store.keys("chatlimit:*")) == 3


def test_the_servers_certificate_is_checked_against_the_given_ca(
    make_client: ClientFactory, tls_uri: TlsRedis
) -> None:
    client = make_client(storage_uri=tls_uri.uri(ca=tls_uri.other_ca), fail_mode="closed")
    assert client.get("/readyz").status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert chat(client, agent="curl/8").status_code == HTTPStatus.SERVICE_UNAVAILABLE


def test_plain_redis_to_a_tls_only_server_is_not_ready(
    make_client: ClientFactory, tls_uri: TlsRedis
) -> None:
    plain = f"redis://:{ENCODED}@127.0.0.1:{tls_uri.port}/0"
    client = make_client(storage_uri=plain)
    assert client.get("/readyz").status_code == HTTPStatus.SERVICE_UNAVAILABLE


def test_a_wrong_password_is_refused_without_echoing_it(
    make_client: ClientFactory, tls_uri: TlsRedis
) -> None:
    client = make_client(storage_uri=tls_uri.uri(password="not-the-one"), fail_mode="closed")
    ready = client.get("/readyz")
    refused = chat(client, agent="curl/8")
    assert ready.status_code == refused.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert "not-the-one" not in ready.text + refused.text


def serve(workdir: Path, name: str, storage_uri: str, fail_mode: str) -> ServedApp:
    return ServedApp(workdir, name, STORAGE_URI=storage_uri, FAIL_MODE=fail_mode,
                     LOG_LEVEL="debug", ACCESS_LOG="true").start()


def test_the_password_never_appears_in_info_page_errors_or_logs(
    tls_uri: TlsRedis, tmp_path: Path
) -> None:
    working = serve(tmp_path, "working", tls_uri.uri(user="default"), "open")
    failing = serve(tmp_path, "failing", tls_uri.uri(ca=tls_uri.other_ca), "closed")
    seen: list[str] = []
    try:
        for app in (working, failing):
            with httpx.Client(base_url=app.url, timeout=10) as http:
                info = http.get("/api/info")
                assert "***" in info.json()["storage"]["uri"]
                seen += [info.text, http.get("/").text, http.get("/readyz").text]
                seen += [http.get("/api/quota").text, http.get("/nowhere").text]
                seen += [chat(http, agent="curl/8").text for _ in range(4)]
    finally:
        working.stop()
        failing.stop()
    logs = working.log + failing.log
    assert "storage=rediss://default:***@127.0.0.1" in logs
    assert "SSLError" in logs or "ConnectionError" in logs  # the failing one said why, by type
    for text in [*seen, logs]:
        for secret in SECRETS:
            assert secret not in text


def test_a_bad_storage_uri_stops_start_up_with_one_masked_line() -> None:
    env = {**os.environ, "STORAGE_URI": f"ftp://admin:{ENCODED}@db.example.com:21"}
    result = subprocess.run(
        [sys.executable, "-m", "chatlimit", "serve"], env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("chatlimit: STORAGE_URI='ftp://admin:***@db.example.com:21'")
    for secret in SECRETS:
        assert secret not in result.stderr + result.stdout
