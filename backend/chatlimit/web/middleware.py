"""Pure-ASGI middleware: a body-size cap and the headers every response carries."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_bytes

log = logging.getLogger("chatlimit.errors")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class BodyTooLarge(HTTPException):
    """Raised from receive(); an HTTPException so FastAPI's body reader passes it through."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"Request body is larger than {max_bytes} bytes.")


def _json_error(status: int, detail: str, code: str | None = None) -> tuple[Message, Message]:
    body = error_bytes(status, detail, code)
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimit:
    """Refuse request bodies over max_bytes with 413, whether announced by Content-Length or
    streamed in chunks, before the app buffers them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"Request body is larger than {self.max_bytes} bytes."
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    for message in _json_error(413, detail):
                        await send(message)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                for message in _json_error(413, detail):
                    await send(message)


class StandardHeaders:
    """X-Served-By on every response, plus the security headers the page and API need.

    Outermost, it also turns an unhandled exception into the 500 of the error shape, so that
    answer carries these headers too; the traceback goes to the log, never to the client."""

    def __init__(self, app: ASGIApp, instance_name: str) -> None:
        self.app = app
        self.headers = [
            (b"x-served-by", instance_name.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"content-security-policy", CSP.encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            log.error("unhandled %s on %s %s", type(exc).__name__, scope.get("method"),
                      str(scope.get("path", ""))[:200], exc_info=exc)
            if started:
                raise  # a response is half sent: only the server can end the connection
            for message in _json_error(500, "Internal server error.", "internal_error"):
                await send_with_headers(message)
