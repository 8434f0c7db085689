"""The parts of slowapi's Limiter that its middlewares and exception handler call.

slowapi's `SlowAPIMiddleware`, `SlowAPIASGIMiddleware` and `_rate_limit_exceeded_handler` call
`_check_request_limit` (synchronously), `_inject_headers` and `_inject_asgi_headers` on
whatever limiter sits on `app.state.limiter`. Here they answer from the Decision of the one
awaited check, so those middlewares and that handler work with chatlimit's Limiter unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response

from ..storage import MemoryCounter, ceil_seconds
from .headers import raw_headers

if TYPE_CHECKING:
    from .core import Decision, Limiter

log = logging.getLogger("chatlimit.limiter")

SYNC_MIDDLEWARE = (
    "slowapi's middlewares check limits synchronously, which a Redis storage cannot answer: "
    "use chatlimit.web.ratelimit.RateLimitMiddleware for default and application limits"
)
DEFAULT_NAMES = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After")


class SlowapiSurface:
    """Mixed into Limiter: slowapi's header options and the hooks its middlewares call."""

    _headers_enabled: bool
    _names: dict[bytes, bytes]
    _retry_after: str | None

    def _init_headers(
        self, enabled: bool, retry_after: str | None, mapping: dict[str, str] | None
    ) -> None:
        self._headers_enabled = enabled
        self._retry_after = retry_after
        mapping = mapping or {}
        unknown = set(mapping) - set(DEFAULT_NAMES)
        if unknown:
            raise ValueError(f"headers_name_mapping renames {', '.join(DEFAULT_NAMES)}; "
                             f"not {', '.join(sorted(unknown))}")
        self._names = {k.lower().encode(): v.encode("latin-1") for k, v in mapping.items()}

    def header_pairs(self, decision: Decision, retry_after: int | None = None) -> list[
            tuple[bytes, bytes]]:
        """The rate-limit headers as ASGI pairs, renamed by headers_name_mapping; none when
        headers are off. Retry-After only when given (a 429)."""
        if not self._headers_enabled:
            return []
        pairs = raw_headers(decision, retry_after)
        if self._retry_after == "http-date" and retry_after is not None:
            pairs[-1] = (b"retry-after", formatdate(time.time() + retry_after, usegmt=True)
                         .encode())
        if self._names:
            pairs = [(self._names.get(k, k), v) for k, v in pairs]
        return pairs

    def _retry(self, decision: Decision | None, status: int) -> int | None:
        if decision is None or status != 429:
            return None
        return max(1, ceil_seconds(decision.quota.reset_after))

    def _inject_headers(self, response: Response, current_limit: Any) -> Response:
        """slowapi's hook: the headers of `current_limit` (our Decision) on `response`."""
        limiter: Limiter = self  # type: ignore[assignment]
        if not (limiter.enabled and self._headers_enabled and current_limit is not None):
            return response
        if not isinstance(response, Response):
            raise Exception(
                "parameter `response` must be an instance of starlette.responses.Response")
        pairs = self.header_pairs(current_limit, self._retry(current_limit,
                                                             response.status_code))
        present = {k for k, _ in response.raw_headers}
        # A decorated route under slowapi's middleware gets here twice: add them once.
        response.raw_headers.extend(p for p in pairs if p[0] not in present)
        return response

    def _inject_asgi_headers(self, headers: MutableHeaders, current_limit: Any) -> MutableHeaders:
        limiter: Limiter = self  # type: ignore[assignment]
        if limiter.enabled and self._headers_enabled and current_limit is not None:
            for key, value in self.header_pairs(current_limit):
                if key.decode() not in headers:
                    headers[key.decode()] = value.decode("latin-1")
        return headers

    def _check_request_limit(
        self, request: Request, endpoint_func: Any, in_middleware: bool = True
    ) -> None:
        """slowapi's synchronous check, as its middlewares call it. A decorated route is left
        to its decorator, which counts the application limits with the route's own in one
        call. An undecorated one is counted here, synchronously: possible with memory://
        only, whose counting never waits."""
        from .core import route_name

        limiter: Limiter = self  # type: ignore[assignment]
        request.state.view_rate_limit = None
        name = route_name(endpoint_func) if endpoint_func is not None else ""
        if name in limiter.decorated:
            if in_middleware:
                request.state._chatlimit_app_limits = True
            return
        if not (limiter._app_limits or limiter._defaults):
            return
        if not isinstance(limiter.counter, MemoryCounter):
            log.error(SYNC_MIDDLEWARE)
            raise RuntimeError(SYNC_MIDDLEWARE)
        _run_now(limiter.check_request(request, name, in_middleware=in_middleware))

    def reset(self) -> None:
        """Forget every count (memory:// only: a Redis storage cannot be reset without a
        round trip, and slowapi's reset() is synchronous)."""
        limiter: Limiter = self  # type: ignore[assignment]
        counter = limiter.counter
        if not isinstance(counter, MemoryCounter):
            raise RuntimeError("reset() clears memory:// only: delete the chatlimit:* keys "
                               "in Redis (or FLUSHDB its database) instead")
        counter.clear()
        fallback = limiter.breaker.fallback
        if isinstance(fallback, MemoryCounter):
            fallback.clear()


def _run_now(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (memory:// counting) to its end, here and now."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    message = "a key function, limit or cost awaited something: " + SYNC_MIDDLEWARE
    raise RuntimeError(message)

