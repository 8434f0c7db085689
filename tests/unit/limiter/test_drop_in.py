"""chatlimit.limiter.Limiter as a drop-in for slowapi's: the options slowapi documents, async
callables awaited, every limit of a request in one storage call, and the differences refused
at construction in one sentence."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import pytest
from fastapi import FastAPI
from limits import RateLimitItem
from limits.errors import ConfigurationError
from slowapi import _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient

from chatlimit.limiter import Limiter
from chatlimit.limiter.slowapi_surface import SYNC_MIDDLEWARE
from chatlimit.storage import MemoryCounter, Verdict
from chatlimit.web.ratelimit import RateLimitMiddleware


class CountingMemory(MemoryCounter):
    """memory:// that counts its calls: the limiter must make one per request."""

    calls = 0

    async def hit(self, keys: Sequence[str], items: Sequence[RateLimitItem],
                  costs: Sequence[int], lease: Any = None) -> Verdict:
        self.calls += 1
        return await super().hit(keys, items, costs, lease)


def build(middleware: Any = RateLimitMiddleware, **options: Any) -> tuple[FastAPI, Limiter]:
    options.setdefault("key_func", lambda: "someone")
    limiter = Limiter(**options)
    app = FastAPI()
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    if middleware is not None:
        app.add_middleware(middleware)
    return app, limiter


def counting(limiter: Limiter) -> CountingMemory:
    counter = CountingMemory(limiter.strategy)
    limiter.breaker.counter = limiter.counter = counter
    return counter


def statuses(client: TestClient, path: str, times: int, **kwargs: Any) -> list[int]:
    return [client.get(path, **kwargs).status_code for _ in range(times)]


def test_async_key_func_exempt_when_cost_and_dynamic_limit_are_awaited() -> None:
    async def key(request: Request) -> str:
        await asyncio.sleep(0)
        return request.headers.get("who", "anon")

    async def limit_for(key: str) -> str:
        await asyncio.sleep(0)
        return "4/minute" if key == "vip" else "2/minute"

    async def exempt(request: Request) -> bool:
        await asyncio.sleep(0)
        return request.headers.get("exempt") == "yes"

    async def cost(request: Request) -> int:
        await asyncio.sleep(0)
        return int(request.headers.get("cost", "1"))

    app, limiter = build(key_func=key)

    @app.get("/t")
    @limiter.limit(limit_for, exempt_when=exempt, cost=cost)
    async def t(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    client = TestClient(app)
    assert statuses(client, "/t", 3) == [200, 200, 429]
    assert statuses(client, "/t", 5, headers={"who": "vip"}) == [200, 200, 200, 200, 429]
    assert statuses(client, "/t", 3, headers={"exempt": "yes"}) == [200, 200, 200]
    assert statuses(client, "/t", 2, headers={"who": "big", "cost": "2"}) == [200, 429]


def test_each_limit_is_charged_its_own_cost_in_one_storage_call() -> None:
    app, limiter = build()
    counter = counting(limiter)

    @app.get("/t")
    @limiter.limit("10/minute", cost=5)
    @limiter.limit("3/minute")
    async def t(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    # Charging the first cost to both would refuse the very first request (5 > 3).
    assert statuses(TestClient(app), "/t", 3) == [200, 200, 429]
    assert counter.calls == 3


def test_application_limits_count_with_the_routes_own_in_the_same_call() -> None:
    app, limiter = build(application_limits=["5/minute"])
    counter = counting(limiter)

    @app.get("/a")
    @limiter.limit("3/minute")
    async def a(request: Request) -> PlainTextResponse:
        return PlainTextResponse("a")

    @app.get("/b")
    async def b(request: Request) -> PlainTextResponse:
        return PlainTextResponse("b")

    client = TestClient(app)
    assert statuses(client, "/a", 4) == [200, 200, 200, 429]
    # The application limit is shared by every route: 3 of its 5 are gone.
    assert statuses(client, "/b", 3) == [200, 200, 429]
    assert counter.calls == 7


def test_default_limits_apply_to_undecorated_routes_and_combine_when_asked() -> None:
    app, limiter = build(default_limits=["2/minute"])

    @app.get("/plain")
    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("p")

    @app.get("/own")
    @limiter.limit("5/minute")
    async def own(request: Request) -> PlainTextResponse:
        return PlainTextResponse("o")

    @app.get("/both")
    @limiter.limit("5/minute", override_defaults=False)
    async def both(request: Request) -> PlainTextResponse:
        return PlainTextResponse("b")

    @app.get("/free")
    @limiter.exempt
    async def free(request: Request) -> PlainTextResponse:
        return PlainTextResponse("f")

    client = TestClient(app)
    assert statuses(client, "/plain", 3) == [200, 200, 429]
    assert statuses(client, "/own", 4) == [200, 200, 200, 200]
    assert statuses(client, "/both", 3) == [200, 200, 429]
    assert statuses(client, "/free", 5) == [200] * 5


def test_shared_limit_is_one_count_across_routes_and_per_method_splits_it() -> None:
    app, limiter = build()
    shared = limiter.shared_limit("3/minute", scope="pair")

    @app.get("/x")
    @shared
    async def x(request: Request) -> PlainTextResponse:
        return PlainTextResponse("x")

    @app.get("/y")
    @shared
    async def y(request: Request) -> PlainTextResponse:
        return PlainTextResponse("y")

    @app.api_route("/m", methods=["GET", "POST"])
    @limiter.limit("1/minute", per_method=True)
    async def m(request: Request) -> PlainTextResponse:
        return PlainTextResponse("m")

    @app.api_route("/only-post", methods=["GET", "POST"])
    @limiter.limit("1/minute", methods=["POST"])
    async def only_post(request: Request) -> PlainTextResponse:
        return PlainTextResponse("p")

    client = TestClient(app)
    assert statuses(client, "/x", 2) + statuses(client, "/y", 2) == [200, 200, 200, 429]
    assert [client.get("/m").status_code, client.post("/m").status_code,
            client.get("/m").status_code] == [200, 200, 429]
    assert statuses(client, "/only-post", 3) == [200, 200, 200]
    assert [client.post("/only-post").status_code for _ in range(2)] == [200, 429]


def test_reset_forgets_every_count() -> None:
    app, limiter = build()

    @app.get("/t")
    @limiter.limit("1/minute")
    async def t(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    client = TestClient(app)
    assert statuses(client, "/t", 2) == [200, 429]
    limiter.reset()
    assert statuses(client, "/t", 2) == [200, 429]


def test_headers_name_the_limit_and_send_retry_after_on_429s_only() -> None:
    app, limiter = build(headers_enabled=True,
                         headers_name_mapping={"X-RateLimit-Limit": "X-Quota"})

    @app.get("/t")
    @limiter.limit("1/minute")
    async def t(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    client = TestClient(app)
    first, second = client.get("/t"), client.get("/t")
    assert first.headers["X-Quota"] == "1" and "X-RateLimit-Limit" not in first.headers
    assert first.headers["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" not in first.headers
    assert second.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert 1 <= int(second.headers["Retry-After"]) <= 60


def test_slowapis_own_middleware_counts_default_limits_in_memory() -> None:
    app, _ = build(SlowAPIMiddleware, default_limits=["1/minute"])

    @app.get("/plain")
    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("p")

    assert statuses(TestClient(app), "/plain", 2) == [200, 429]


def test_slowapis_own_middleware_refuses_to_pretend_with_redis(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens there: the refusal comes before any storage call. slowapi's middleware
    # hands the error to its 429 handler, which fails on it: the log line says why.
    app, _ = build(SlowAPIMiddleware, default_limits=["1/minute"],
                         storage_uri="redis://127.0.0.1:9/0")

    @app.get("/plain")
    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("p")

    with pytest.raises(AttributeError):
        TestClient(app).get("/plain")
    assert SYNC_MIDDLEWARE in caplog.text
    assert "chatlimit.web.ratelimit.RateLimitMiddleware" in SYNC_MIDDLEWARE


@pytest.mark.parametrize(("options", "says"), [
    ({"config_filename": ".env"}, "reads no configuration file"),
    ({"in_memory_fallback": ["1/minute"]}, "in_memory_fallback limits are not supported"),
    ({"strategy": "token-bucket"}, "Invalid rate limiting strategy"),
    ({"storage_uri": "mongodb://db"}, "storage_uri"),
    ({"storage_options": {"ssl": True}}, "storage_options accepts"),
    ({"default_limits": ["three a minute"]}, "three a minute|couldn't parse"),
])
def test_what_it_does_not_do_is_refused_at_construction(options: dict[str, Any], says: str) -> None:
    with pytest.raises((ConfigurationError, ValueError), match=says):
        Limiter(key_func=lambda: "k", **options)


def test_a_bad_limit_string_is_refused_at_decoration_not_ignored() -> None:
    limiter = Limiter(key_func=lambda: "k")
    with pytest.raises(ValueError):
        limiter.limit("five per fortnight")
