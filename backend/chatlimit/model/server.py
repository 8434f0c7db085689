"""`chatlimit model`: the demo model as a standalone OpenAI-compatible server.

POST /v1/chat/completions (streamed or not, usage in every answer), GET /v1/models, and
GET /v1/ledger: the tokens generated per `user`, the upstream's bill that the rate limit exists
to protect. It runs from the app's own image and dependencies (a runtime part, not a tool): the
scaled stand puts it behind the replicas as a real deployment puts vLLM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from ..settings import Settings
from . import demo
from .conversation import Turn
from .ledger import Ledger

log = logging.getLogger("chatlimit.model")


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | None = ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = "chatlimit-demo"
    messages: list[Message]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    user: str | None = None

    def turns(self) -> list[Turn]:
        role = {"developer": "system", "tool": "user"}
        return [Turn(role.get(m.role, m.role), m.content or "")  # type: ignore[arg-type]
                for m in self.messages]


def _openai_error(status: int, message: str, kind: str,
                  headers: dict[str, str] | None = None) -> JSONResponse:
    # OpenAI's error shape, so the official SDK raises the matching exception.
    body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return JSONResponse(body, status_code=status, headers=headers)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def create_model_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="chatlimit model", summary="The demo model, OpenAI-compatible.",
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    ledger = Ledger()
    delay = settings.model_token_delay_ms / 1000
    app.state.ledger = ledger

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        """The one model served."""
        return {"object": "list", "data": [
            {"id": "chatlimit-demo", "object": "model", "created": 0, "owned_by": "chatlimit"}]}

    @app.get("/v1/ledger")
    async def read_ledger() -> dict[str, Any]:
        """Tokens generated per user: the bill."""
        return ledger.as_dict()

    @app.post("/v1/chat/completions", response_model=None)
    async def completions(body: CompletionRequest) -> JSONResponse | StreamingResponse:
        """A chat completion from the demo model."""
        if settings.model_busy:
            return _openai_error(429, "The demo model is busy (MODEL_BUSY).",
                                 "rate_limit_exceeded",
                                 headers={"Retry-After": str(settings.model_busy)})
        turns = body.turns()
        limit = body.max_completion_tokens or body.max_tokens or 4096
        answer = demo.answer(turns, max(1, limit))
        user = body.user or "anonymous"
        prompt = demo.count_tokens(turns)
        ledger.request(user, prompt)
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
                "model": body.model}
        if not body.stream:
            ledger.generated(user, len(answer.tokens))
            text = "".join(answer.tokens)
            return JSONResponse({
                **meta, "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": answer.finish_reason,
                             "message": {"role": "assistant", "content": text}}],
                "usage": _usage(prompt, len(answer.tokens)),
            })
        return StreamingResponse(
            _chunks(meta, answer, user, prompt, ledger, delay), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    return app


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


async def _chunks(meta: dict[str, Any], answer: demo.Answer, user: str, prompt: int,
                  ledger: Ledger, delay: float) -> AsyncIterator[bytes]:
    """The stream, one word per chunk. Each token enters the ledger as it is sent, so a client
    that goes away stops the bill at once (Starlette cancels this generator on disconnect)."""
    head = {**meta, "object": "chat.completion.chunk"}

    def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
        return _sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    ledger.open_streams += 1
    try:
        yield chunk({"role": "assistant", "content": ""})
        for n, token in enumerate(answer.tokens):
            if n == answer.cut_after:
                # The drill: drop the connection mid-reply, without the end of the chunked body.
                raise ConnectionAbortedError("the cut drill")
            if n and delay:
                await asyncio.sleep(delay)
            ledger.generated(user, 1)
            yield chunk({"content": token})
    finally:
        ledger.open_streams -= 1
    yield chunk({}, answer.finish_reason)
    # Usage always, whether or not stream_options asked for it: the bill is the point.
    yield _sse({**head, "choices": [], "usage": _usage(prompt, len(answer.tokens))})
    yield b"data: [DONE]\n\n"
