"""The one place that calls the model: the in-process demo model (LLM_BASE_URL empty) or an
OpenAI-compatible API through the official `openai` SDK. Both hand back a Reply whose first
part has arrived, or raise the UpstreamError that says why not."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, Protocol, cast

import openai

from ..settings import Settings
from . import demo
from .conversation import Turn
from .reply import (
    Part,
    Reply,
    UpstreamBusy,
    UpstreamCut,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    Usage,
)

log = logging.getLogger("chatlimit.model")


class ChatModel(Protocol):
    name: str

    async def open(
        self, turns: Sequence[Turn], *, user: str, max_tokens: int, stream: bool
    ) -> Reply: ...

    async def aclose(self) -> None: ...


async def _first_reply(parts: AsyncGenerator[Part, None], timeout: float,
                       prompt_tokens: int) -> Reply:
    """Wait for the first part within LLM_TIMEOUT: until then the answer can still be a 5xx."""
    try:
        async with asyncio.timeout(timeout):
            first = await anext(parts, None)
    except TimeoutError:
        await parts.aclose()
        raise UpstreamTimeout(f"The model sent nothing within {timeout:g} s.") from None
    return Reply(parts, first, prompt_tokens)


class DemoModel:
    """The demo model inside the app process: no network. Streams are paced like `chatlimit
    model` (MODEL_TOKEN_DELAY_MS) so the page shows the same word-by-word reply; a JSON answer
    is given at once, since nobody watches it arrive."""

    name = "chatlimit-demo"

    def __init__(self, delay_ms: int, timeout: float) -> None:
        self.delay = delay_ms / 1000
        self.timeout = timeout

    async def open(
        self, turns: Sequence[Turn], *, user: str, max_tokens: int, stream: bool
    ) -> Reply:
        answer = demo.answer(turns, max_tokens)
        prompt_tokens = demo.count_tokens(turns)
        return await _first_reply(self._parts(answer, prompt_tokens, stream), self.timeout,
                                  prompt_tokens)

    async def _parts(self, answer: demo.Answer, prompt_tokens: int,
                     stream: bool) -> AsyncGenerator[Part, None]:
        for n, token in enumerate(answer.tokens):
            if n == answer.cut_after:
                raise UpstreamCut("The demo model broke off mid-reply (the cut drill).")
            if n and stream and self.delay:
                await asyncio.sleep(self.delay)
            yield token
        yield Usage(prompt_tokens, len(answer.tokens))

    async def aclose(self) -> None:
        return None


# The longest event held while its end has not arrived (a chunk is some 200 bytes).
SSE_EVENT_BOUND = 1 << 20


async def sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The `data` of each server-sent event in a byte stream (its lines joined by newlines, as
    the SSE spec has it; lines end in LF or CRLF); comments, `event:` and the other fields are
    skipped."""
    buffer = b""
    data: list[bytes] = []
    size = 0
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:  # the event's end
                if data:
                    yield b"\n".join(data)
                    data, size = [], 0
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
                size += len(line)
        if len(buffer) + size > SSE_EVENT_BOUND:
            raise UpstreamCut("The model sent an event longer than 1 MiB.")
    # An event the stream ended inside of is dropped, as the spec says: it may be half of one.


def _parts_of(data: bytes) -> list[Part]:
    """What one chunk of an OpenAI-compatible stream carries: its text, then its usage; a
    chunk a model should not send ends the reply (UpstreamCut)."""
    try:
        chunk = json.loads(data)
    except ValueError:
        raise UpstreamCut("The model sent a chunk that is not JSON.") from None
    if not isinstance(chunk, dict):
        raise UpstreamCut("The model sent a chunk that is not a JSON object.")
    if chunk.get("error"):
        raise UpstreamCut("The model's stream broke off with an error.")
    parts: list[Part] = [str(content) for choice in chunk.get("choices") or ()
                         if (content := (choice.get("delta") or {}).get("content"))]
    usage = chunk.get("usage")
    if usage:
        parts.append(Usage(int(usage.get("prompt_tokens") or 0),
                           int(usage.get("completion_tokens") or 0)))
    return parts


def _retry_after(error: openai.APIStatusError) -> int:
    value = error.response.headers.get("retry-after", "")
    try:
        return max(1, int(float(value)))
    except ValueError:
        return 1


class OpenAIModel:
    """An OpenAI-compatible API (OpenAI, Hugging Face's router, vLLM, Ollama, llama.cpp,
    LM Studio, `chatlimit model`), always streamed so a JSON answer and an SSE answer take the
    same path and both get `usage` (stream_options.include_usage)."""

    def __init__(self, settings: Settings) -> None:
        self.name = settings.llm_model
        self.timeout = settings.llm_timeout
        self.client = openai.AsyncOpenAI(
            base_url=settings.llm_base_url,
            # Servers without auth (vLLM, Ollama, chatlimit model) still need some string here.
            api_key=settings.llm_api_key.get_secret_value() or "none",
            timeout=settings.llm_timeout,
            # No retries: the user's quota is already spent on this request, and a model that
            # refuses or is down should be answered now (502/503/504), not minutes later.
            max_retries=0,
        )

    async def open(
        self, turns: Sequence[Turn], *, user: str, max_tokens: int, stream: bool
    ) -> Reply:
        return await _first_reply(self._parts(turns, user, max_tokens), self.timeout,
                                  demo.count_tokens(turns))

    async def _parts(self, turns: Sequence[Turn], user: str,
                     max_tokens: int) -> AsyncGenerator[Part, None]:
        # The SDK makes the request (base URL, key, timeout, its errors); the chunks are read
        # as plain JSON: building the SDK's typed object per chunk was 40% of the app's time
        # on a streamed reply, under cProfile (README, Benchmarks).
        request = self.client.chat.completions.with_streaming_response.create(
            model=self.name,
            messages=cast(Any, [t.as_message() for t in turns]),
            stream=True,
            stream_options={"include_usage": True},
            # max_tokens, not max_completion_tokens: the one every compatible server reads.
            max_tokens=max_tokens,
            # The hashed user key (never an address), so the upstream's bill is per user.
            user=user,
        )
        async with contextlib.AsyncExitStack() as closing:  # the response, on every way out
            try:
                response = await closing.enter_async_context(request)
            except openai.APITimeoutError:
                raise UpstreamTimeout(
                    f"The model sent nothing within {self.timeout:g} s.") from None
            except openai.APIConnectionError:
                raise UpstreamUnavailable("The model cannot be reached.") from None
            except openai.RateLimitError as exc:
                raise UpstreamBusy("The model is busy (it answered 429); try again shortly.",
                                   retry_after=_retry_after(exc)) from None
            except openai.APIStatusError as exc:
                log.warning("the model answered %s", exc.status_code)
                raise UpstreamError(f"The model answered {exc.status_code}.") from None
            try:
                async for data in sse_data(response.iter_bytes()):
                    if data == b"[DONE]":
                        continue  # read on to the body's end, so the connection is reused
                    for part in _parts_of(data):
                        yield part
            except UpstreamError:
                raise
            except Exception as exc:  # the connection dropped or timed out mid-reply
                raise UpstreamCut(f"The model's stream broke off ({type(exc).__name__}).") \
                    from None

    async def aclose(self) -> None:
        await self.client.close()


def model_for(settings: Settings) -> ChatModel:
    if settings.llm_base_url:
        return OpenAIModel(settings)
    return DemoModel(settings.model_token_delay_ms, settings.llm_timeout)


__all__ = ["ChatModel", "DemoModel", "OpenAIModel", "UpstreamError", "model_for"]
