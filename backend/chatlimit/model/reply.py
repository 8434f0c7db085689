"""A reply in flight, and the ways an upstream can fail: the contract between the model
backends (backends.py) and whoever shows the reply (web/routes/chat.py, web/sse.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    # False when the upstream sent no usage and the completion tokens are the chunks counted.
    reported: bool = True

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens, "reported": self.reported}


class UpstreamError(Exception):
    """The model could not answer. Each subclass is one designed answer (web/errors.py)."""

    status = 502
    code = "upstream_error"

    def __init__(self, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    status, code = 502, "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status, code = 504, "upstream_timeout"


class UpstreamBusy(UpstreamError):
    status, code = 503, "upstream_busy"


class UpstreamCut(UpstreamError):
    """The stream broke off after it had started: the partial reply is what there is."""

    status, code = 502, "upstream_cut"


# What a backend yields: text deltas, then at most one Usage.
Part = str | Usage


class Reply:
    """One model reply: iterate for the text deltas; `usage` is known once it has ended.

    Its first part has already arrived when the Reply exists (backends.py waits for it), so
    the HTTP status can still say how the upstream failed. `aclose()` closes the upstream
    stream; it runs on every way out, including a client that went away (cancellation)."""

    def __init__(self, parts: AsyncGenerator[Part, None], first: Part | None,
                 prompt_tokens: int) -> None:
        self._parts = parts
        self._first = first
        self._prompt_tokens = prompt_tokens
        self.chunks = 0
        self.text = ""
        self.usage: Usage | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            if self._first is not None:
                for text in self._take(self._first):
                    yield text
            async for part in self._parts:
                for text in self._take(part):
                    yield text
        except UpstreamCut:
            raise
        except UpstreamError as exc:
            # Once text has flowed, any failure is a cut: the status line has gone out.
            raise UpstreamCut(f"The model's reply broke off: {exc.detail}") from exc
        finally:
            await self.aclose()

    def _take(self, part: Part) -> list[str]:
        if isinstance(part, Usage):
            self.usage = part
            return []
        if not part:
            return []
        self.chunks += 1
        self.text += part
        return [part]

    def settled_usage(self) -> Usage:
        """The upstream's usage, or the chunks counted when it sent none (or was cut)."""
        return self.usage or Usage(self._prompt_tokens, self.chunks, reported=False)

    async def collect(self) -> str:
        async for _ in self:
            pass
        return self.text

    async def aclose(self) -> None:
        await self._parts.aclose()
