"""POST /chat as Server-Sent Events: `meta`, then `delta` per chunk, then `done` or `error`.

A plain StreamingResponse rather than sse-starlette: the stream is four event names, no pings
or retries, and Starlette's StreamingResponse already cancels the generator when the client
disconnects (under uvicorn it listens for http.disconnect beside the stream). That
cancellation closes the Reply, which closes the upstream HTTP stream, so the model stops
generating. The rate-limit headers are on the response before its first byte, because they
are decided before the model is called (slowapi's own middleware breaks streaming:
laurentS/slowapi #249, #260).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from ..model import Reply, UpstreamError
from .errors import error_body

MEDIA_TYPE = "text/event-stream"


def wants_event_stream(request: Request) -> bool:
    return MEDIA_TYPE in request.headers.get("accept", "")


def event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _events(reply: Reply, meta: dict[str, Any]) -> AsyncIterator[bytes]:
    yield event("meta", meta)
    try:
        async for text in reply:
            yield event("delta", {"text": text})
    except UpstreamError as exc:
        yield event("error", error_body(exc.status, exc.detail, exc.code,
                                        usage=reply.settled_usage().as_dict()))
        return
    finally:
        # Every way out, a client gone (cancelled here) included, closes the upstream stream.
        await reply.aclose()
    yield event("done", {"usage": reply.settled_usage().as_dict(), "quota": meta.get("quota")})


def event_stream(
    reply: Reply, meta: dict[str, Any], raw_headers: list[tuple[bytes, bytes]]
) -> StreamingResponse:
    response = StreamingResponse(
        _events(reply, meta), media_type=MEDIA_TYPE,
        # X-Accel-Buffering: nginx passes each event on at once even where a config buffers.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.raw_headers.extend(raw_headers)
    return response
