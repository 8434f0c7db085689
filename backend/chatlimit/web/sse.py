"""POST /chat as Server-Sent Events: `meta`, then `delta` per chunk, then `done` or `error`.

A plain StreamingResponse rather than sse-starlette: the stream is four event names, no pings
or retries, and Starlette's StreamingResponse already cancels the generator when the client
disconnects (under uvicorn it listens for http.disconnect beside the stream). That
cancellation closes the Reply, which closes the upstream HTTP stream, so the model stops
generating. The rate-limit headers are on the response before its first byte, because they
are decided before the model is called (slowapi's own middleware breaks streaming:
laurentS/slowapi #249, #260).

The token budget settles in the generator's `finally`, so every way out (the end, a cut, Stop,
a client gone) charges what was used and frees the stream slot; the response itself settles
too if its generator never started (a client gone before the first byte).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..model import Reply, UpstreamError
from .billing import Bill
from .errors import error_body

MEDIA_TYPE = "text/event-stream"
CLOSE_SECONDS = 2.0


def wants_event_stream(request: Request) -> bool:
    return MEDIA_TYPE in request.headers.get("accept", "")


# One encoder for every event: json.dumps with separators builds a new one per call, and a
# reply is some forty events.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {_encode(data)}\n\n".encode()


async def _events(reply: Reply, meta: dict[str, Any], bill: Bill) -> AsyncIterator[bytes]:
    yield event("meta", meta)
    complete = False
    failure: UpstreamError | None = None
    tokens: dict[str, Any] | None = None
    try:
        try:
            async for text in reply:
                yield event("delta", {"text": text})
            complete = True
        except UpstreamError as exc:
            failure = exc
    finally:
        try:
            # Every way out, a client gone (cancelled here) included, closes the upstream stream.
            await _close(reply)
        finally:
            tokens = await bill.reply_ended(reply, complete=complete)
    usage = reply.settled_usage().as_dict()
    extra = {"tokens": tokens} if tokens is not None else {}
    if failure is not None:
        yield event("error", error_body(failure.status, failure.detail, failure.code,
                                        usage=usage, **extra))
        return
    yield event("done", {"usage": usage, "quota": meta.get("quota"), **extra})


async def _close(reply: Reply) -> None:
    """Close the upstream stream even while this task is being cancelled (a client gone):
    anyio cancels every await in a cancelled scope, and an unshielded close would leave the
    model generating, and billing, until it noticed by itself. Bounded, in case it hangs."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_SECONDS):
        await reply.aclose()


class _SettledStream(StreamingResponse):
    """A stream whose reply is closed and settled even when its generator never ran."""

    def __init__(self, reply: Reply, meta: dict[str, Any], bill: Bill) -> None:
        super().__init__(
            _events(reply, meta, bill), media_type=MEDIA_TYPE,
            # X-Accel-Buffering: nginx passes each event on at once even where a config buffers.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.reply = reply
        self.bill = bill

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await _close(self.reply)
            finally:
                await self.bill.reply_ended(self.reply, complete=False)  # once: a no-op after


def event_stream(
    reply: Reply, meta: dict[str, Any], raw_headers: list[tuple[bytes, bytes]],
    bill: Bill | None = None,
) -> StreamingResponse:
    response = _SettledStream(reply, meta, bill or Bill(None, None))
    response.raw_headers.extend(raw_headers)
    return response
