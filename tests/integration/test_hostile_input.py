"""Hostile input gets a 4xx in the stable error shape, never a 500: schemathesis against the
OpenAPI schema, then the classics one by one, in-process, under uvicorn and through nginx."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from chatlimit.app import create_app
from chatlimit.tools.processes import MissingBinary, free_port

from ..support import ClientFactory, ServedApp, make_settings, missing

JSON = {"Content-Type": "application/json"}
HEAD_LIMIT = 16384  # MAX_HEADER_BYTES' default


def assert_error_shape(status: int, body: bytes, expected: int, *codes: str) -> None:
    assert status == expected, body[:300]
    payload = json.loads(body)
    assert set(payload) >= {"error", "detail"}
    assert isinstance(payload["detail"], str) and payload["detail"]
    if codes:
        assert payload["error"] in codes
    assert b"Traceback" not in body


# ---------------------------------------------------------------------------------------------
# schemathesis: every operation, valid and invalid data, responses checked against the schema.


def api_cases(mode: schemathesis.GenerationMode, **overrides: str) -> st.SearchStrategy[schemathesis.Case]:
    """Cases for every operation of a fresh app's schema; the app is built when the test runs."""

    def build() -> st.SearchStrategy[schemathesis.Case]:
        app = create_app(make_settings(rate_limit="1000/minute", **overrides))
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        return st.one_of(*(op.as_strategy(generation_mode=mode) for op in operations))

    return st.deferred(build)


FUZZ = settings(
    deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck),
)


@settings(FUZZ, max_examples=250)
@given(case=api_cases(schemathesis.GenerationMode.POSITIVE))
def test_schemathesis_valid_requests_get_schema_conforming_answers(case: schemathesis.Case) -> None:
    case.call_and_validate()


@settings(FUZZ, max_examples=150)
@given(case=api_cases(schemathesis.GenerationMode.NEGATIVE))
def test_schemathesis_invalid_requests_are_refused_with_a_4xx(case: schemathesis.Case) -> None:
    case.call_and_validate()


@settings(FUZZ, max_examples=60)
@given(case=api_cases(schemathesis.GenerationMode.POSITIVE, storage_uri=f"redis://127.0.0.1:{free_port()}/0",
                      fail_mode="closed"))
def test_schemathesis_with_storage_down_and_failing_closed(case: schemathesis.Case) -> None:
    # The designed 503 is what this test is about; everything else is still checked.
    response = case.call_and_validate(excluded_checks=[not_a_server_error])
    assert response.status_code != HTTPStatus.INTERNAL_SERVER_ERROR


# ---------------------------------------------------------------------------------------------
# In-process: bodies the JSON parser must survive.


@pytest.mark.parametrize(
    "body",
    [
        b'{"message": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b"[" * 30_000 + b"]" * 30_000,  # under the 64 KiB cap, so the parser sees it
        b'{"message": "hi", "x": ' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"}",
    ],
    ids=["10k-deep-message", "30k-deep-top-level-array", "10k-deep-extra-object"],
)
def test_json_nesting_bombs_are_a_400(make_client: ClientFactory, body: bytes) -> None:
    answer = make_client().post("/chat", content=body, headers=JSON)
    assert_error_shape(answer.status_code, answer.content, 400)


@pytest.mark.parametrize(
    ("body", "expected", "code"),
    [
        (b'{"message": "\xff\xfe\xfd"}', 400, "bad_request"),
        (b'{"message": "ok", "\xc3\x28": 1}', 400, "bad_request"),
        (b'{"message": "a\x00b"}', 400, "invalid_json"),  # a raw NUL is not JSON
        (b'{"message": "a\\u0000b"}', 422, "invalid_request"),
        (b'{"message": "\\ud800"}', 422, "invalid_request"),  # a lone surrogate
        (b'{"message": "bell\\u0007"}', 422, "invalid_request"),
        (b'{"message": "c1\\u0085c1"}', 422, "invalid_request"),
    ],
    ids=["utf8-in-value", "utf8-in-key", "raw-nul", "escaped-nul", "lone-surrogate", "c0-control",
         "c1-control"],
)
def test_invalid_utf8_nul_bytes_and_control_characters_are_refused(
    make_client: ClientFactory, body: bytes, expected: int, code: str
) -> None:
    answer = make_client().post("/chat", content=body, headers=JSON)
    assert_error_shape(answer.status_code, answer.content, expected, code)


@pytest.mark.parametrize("method", ["PATCH", "PROPFIND", "TRACE", "OPTIONS", "PURGE"])
def test_unknown_methods_are_405_json(make_client: ClientFactory, method: str) -> None:
    answer = make_client().request(method, "/chat")
    assert_error_shape(answer.status_code, answer.content, 405, "method_not_allowed")


@pytest.mark.parametrize(
    "path", ["/admin", "/static/../backend/chatlimit/settings.py", "/%00", "/%ff%fe", "/static/",
             "/" + "ü" * 500, "/api/quota/../../etc/passwd"],
)
def test_unknown_paths_are_404_json(make_client: ClientFactory, path: str) -> None:
    answer = make_client().get(path)
    assert_error_shape(answer.status_code, answer.content, 404, "not_found")


# ---------------------------------------------------------------------------------------------
# Under uvicorn: what only a real HTTP parser sees.


def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_part, _, content = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, content


def get(path: bytes = b"/healthz", extra: bytes = b"", method: bytes = b"GET") -> bytes:
    return method + b" " + path + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"Connection: close\r\n\r\n"


def chat_head(extra: bytes = b"", length: int | None = None) -> bytes:
    size = b"" if length is None else b"Content-Length: " + str(length).encode() + b"\r\n"
    return get(b"/chat", b"Content-Type: application/json\r\n" + size + extra, b"POST")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    with ServedApp(tmp_path_factory.mktemp("hostile"), STORAGE_URI="memory://", RATE_LIMIT="100/minute") as app:
        yield app
    assert "Traceback" not in app.log


@pytest.mark.integration
@pytest.mark.parametrize(
    ("head", "expected", "code"),
    [
        (get(extra=b"X-Big: " + b"a" * 100_000 + b"\r\n"), 431, "headers_too_large"),
        (get(extra=b"User-Agent: " + b"a" * 100_000 + b"\r\n"), 431, "headers_too_large"),
        (get(b"/" + b"a" * 100_000), 431, "headers_too_large"),
        (get(extra=b"X-Many: aaaaaaaaaa\r\n" * 2_000), 431, "headers_too_large"),
        (get(extra=b"X-Nul: a\x00b\r\n"), 400, "bad_request"),
        (get(method=b"BREW"), 400, "bad_request"),
        (get(b"/\xff\xfe"), 400, "bad_request"),
        (b"NONSENSE\r\n\r\n", 400, "bad_request"),
        (get(b"/chat", method=b"PROPFIND"), 405, "method_not_allowed"),
        (get(b"/nowhere"), 404, "not_found"),
    ],
    ids=["100KB-header-value", "100KB-user-agent", "100KB-path", "2000-headers", "nul-in-header",
         "unknown-method", "invalid-utf8-path", "garbage-request-line", "webdav-method",
         "unknown-path"],
)
def test_under_uvicorn_hostile_requests_get_the_error_shape(
    served: ServedApp, head: bytes, expected: int, code: str
) -> None:
    status, headers, body = raw_request(served.port, head)
    assert_error_shape(status, body, expected, code)
    assert headers["content-type"] == "application/json"
    assert headers["x-served-by"] == "app"


@pytest.mark.integration
def test_under_uvicorn_long_user_agents_below_the_cap_are_served(served: ServedApp) -> None:
    body = b'{"message": "hi"}'
    for agent in (b"a" * 12_000, b"\xff\xfe latin-1 bytes \xe9"):
        status, headers, content = raw_request(
            served.port, chat_head(b"User-Agent: " + agent + b"\r\n", len(body)), body
        )
        assert status == HTTPStatus.OK, content
        assert headers["x-ratelimit-remaining"] == "99"  # each agent is its own client


@pytest.mark.integration
def test_under_uvicorn_oversize_and_invalid_bodies_are_refused(served: ServedApp) -> None:
    status, _, body = raw_request(served.port, chat_head(length=5_000_000))
    assert_error_shape(status, body, 413, "payload_too_large")
    chunks = b"".join(b"2710\r\n" + b"x" * 10_000 + b"\r\n" for _ in range(10)) + b"0\r\n\r\n"
    status, _, body = raw_request(served.port, chat_head(b"Transfer-Encoding: chunked\r\n"), chunks)
    assert_error_shape(status, body, 413, "payload_too_large")
    bad = b'{"message": "\xff\xfe"}'
    status, _, body = raw_request(served.port, chat_head(length=len(bad)), bad)
    assert_error_shape(status, body, 400, "bad_request")


# ---------------------------------------------------------------------------------------------
# Through nginx: it refuses the biggest things before they reach a replica.


@pytest.mark.integration
@pytest.mark.nginx
def test_through_nginx_oversize_bodies_and_headers_get_the_error_shape(tmp_path: Path) -> None:
    from chatlimit.tools.stack import LocalStack as Cluster

    try:
        cluster = Cluster(tmp_path, replicas=1, storage="memory")
    except MissingBinary as exc:
        missing(str(exc))
    with cluster:
        answer = httpx.post(f"{cluster.url}/chat", content=b"x" * 5_000_000, headers=JSON, timeout=10)
        assert_error_shape(answer.status_code, answer.content, 413, "payload_too_large")
        status, _, body = raw_request(cluster.port, get(extra=b"X-Big: " + b"a" * 100_000 + b"\r\n"))
        assert_error_shape(status, body, 431, "headers_too_large")
        # Under nginx's 16 KiB line buffer but over the app's 16 KiB head: the app's 431.
        status, headers, body = raw_request(cluster.port, get(extra=b"X-Big: " + b"a" * 15_000 + b"\r\n" + b"X-More: " + b"b" * 2_000 + b"\r\n"))
        assert_error_shape(status, body, 431, "headers_too_large")
        assert headers["x-served-by"] == "app-1"
        agent = b"User-Agent: " + b"a" * 12_000 + b"\r\n"
        status, _, body = raw_request(cluster.port, chat_head(agent, 17), b'{"message": "hi"}')
        assert status == HTTPStatus.OK, body
