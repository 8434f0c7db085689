"""Default and application limits for chatlimit's Limiter: an async SlowAPIASGIMiddleware.

slowapi's middlewares call the limiter synchronously, so with them a Redis storage can count
decorated routes only. This one awaits the check: undecorated routes get the default and the
application limits, and a decorated route is left to its decorator, which counts the
application limits together with its own in the same storage call (slowapi counts them
separately, or not at all for a route with a static limit).

    app.state.limiter = limiter
    app.add_middleware(RateLimitMiddleware)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from slowapi import _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..limiter import Limiter, route_name


def _endpoint(app: Any, scope: Scope) -> Callable[..., Any] | None:
    handler = None
    for route in app.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL and hasattr(route, "endpoint"):
            handler = route.endpoint
    return handler


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        app = scope["app"]
        limiter: Limiter = app.state.limiter
        handler = _endpoint(app, scope)
        if not limiter.enabled or not limiter._auto_check or handler is None:
            return await self.app(scope, receive, send)
        name = route_name(handler)
        request = Request(scope, receive, send)
        if name in limiter.decorated:
            request.state._chatlimit_app_limits = True  # counted by its decorator
            return await self.app(scope, receive, send)
        try:
            decision = await limiter.check_request(request, name, in_middleware=True)
        except Exception as exc:
            on_error = app.exception_handlers.get(type(exc))
            if on_error is None and isinstance(exc, RateLimitExceeded):
                on_error = _rate_limit_exceeded_handler
            if on_error is None:
                raise
            answer = on_error(request, exc)
            response: Response = await answer if inspect.isawaitable(answer) else answer
            return await response(scope, receive, send)
        pairs = limiter.header_pairs(decision) if decision is not None else []
        if not pairs:
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *pairs]
            await send(message)

        await self.app(scope, receive, with_headers)
