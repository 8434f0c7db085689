"""HTTP request metrics: count and time every request by route template, method and status."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import Metrics

# Anything else a client sends is one label value: methods are client-chosen strings.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of(scope: Scope) -> str:
    """The matched route's template ("/chat"), "/static" for files, "none" when nothing
    matched: never the raw path, which the client chooses."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if scope.get("path", "").startswith("/static/"):
        return "/static"
    return "none"


class HttpMetrics:
    """Pure ASGI, just inside StandardHeaders: it sees the status of every answer, and an
    unhandled exception as the 500 StandardHeaders will send."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            count, duration = self.metrics.http(route_of(scope), method, status)
            count.inc()
            duration.observe(time.perf_counter() - start)
