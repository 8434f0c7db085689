"""The page and the API send the security headers on every answer, errors included, and CORS
stays closed unless CORS_ORIGINS names an origin."""

from __future__ import annotations

from http import HTTPStatus

import httpx
import pytest

from ...support import ClientFactory

JSON = {"Content-Type": "application/json"}


def answers(client: httpx.Client) -> dict[str, httpx.Response]:
    """One of each kind: page, static file, API, 200, 429 and every error status."""
    chats = [client.post("/chat", json={"message": "hi"}) for _ in range(4)]
    return {
        "page": client.get("/"),
        "static": client.get("/static/chat.js"),
        "info": client.get("/api/info"),
        "quota": client.get("/api/quota"),
        "healthz": client.get("/healthz"),
        "readyz": client.get("/readyz"),
        "openapi": client.get("/openapi.json"),
        "chat-200": chats[0],
        "chat-429": chats[3],
        "400": client.post("/chat", content=b"{", headers=JSON),
        "404": client.get("/nope"),
        "405": client.put("/chat"),
        "413": client.post("/chat", content=b"x" * 100_000, headers=JSON),
        "415": client.post("/chat", content=b"hi"),
        "422": client.post("/chat", json={"message": ""}),
    }


def test_every_answer_carries_the_security_headers(make_client: ClientFactory) -> None:
    for name, answer in answers(make_client()).items():
        headers = answer.headers
        assert headers["X-Content-Type-Options"] == "nosniff", name
        assert headers["Referrer-Policy"] == "no-referrer", name
        assert headers["X-Frame-Options"] == "DENY", name
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, name
        assert "object-src 'none'" in csp and "unsafe-inline" not in csp, name


def test_the_status_codes_above_are_the_ones_named(make_client: ClientFactory) -> None:
    statuses = {name: a.status_code for name, a in answers(make_client()).items()}
    assert statuses["chat-429"] == HTTPStatus.TOO_MANY_REQUESTS
    assert [statuses[s] for s in ("400", "404", "405", "413", "415", "422")] == [400, 404, 405, 413, 415, 422]


def test_cors_is_closed_by_default(make_client: ClientFactory) -> None:
    client = make_client()
    origin = {"Origin": "https://evil.example"}
    preflight = client.options(
        "/chat", headers={**origin, "Access-Control-Request-Method": "POST",
                          "Access-Control-Request-Headers": "content-type"},
    )
    assert preflight.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    simple = client.post("/chat", json={"message": "hi"}, headers=origin)
    for answer in (preflight, simple, client.get("/api/info", headers=origin)):
        assert not [h for h in answer.headers if h.lower().startswith("access-control-")]


@pytest.mark.parametrize("origin", ["https://chat.example.org", "http://localhost:3000"])
def test_cors_origins_opens_the_api_to_exactly_those_origins(make_client: ClientFactory, origin: str) -> None:
    client = make_client(cors_origins="https://chat.example.org, http://localhost:3000")
    preflight = client.options(
        "/chat", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                          "Access-Control-Request-Headers": "content-type"},
    )
    assert preflight.status_code == HTTPStatus.OK
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Content-Security-Policy"]
    answer = client.post("/chat", json={"message": "hi"}, headers={"Origin": origin})
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    assert "X-RateLimit-Remaining" in answer.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in answer.headers

    other = client.post("/chat", json={"message": "hi"}, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    refused = client.options(
        "/chat", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == HTTPStatus.BAD_REQUEST
    assert "Access-Control-Allow-Origin" not in refused.headers
