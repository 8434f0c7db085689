"""slowapi, configured explicitly: the limiter, its rate-limit headers and its 429 answer.

slowapi keeps its public surface: the `@limiter.limit("3/minute")` decorator, limit strings,
the key function and `RateLimitExceeded`. What changes is where the counting runs: slowapi
0.1.x calls the synchronous `limits` storage from inside async routes (blocking the event loop
on every Redis round trip) and spends two more round trips on the headers. ChatLimiter awaits
one atomic Counter step per request instead and reuses its answer for the headers.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from importlib import resources
from pathlib import Path

from limits import RateLimitItem
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.wrappers import Limit
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .counters import Counter, ceil_seconds, MemoryCounter, Quota, StorageUnavailable, Verdict, storage_key

log = logging.getLogger("chatlimit.limiting")

# While storage is failing, try it again at most this often (the rest go to the fallback).
STORAGE_RETRY_SECONDS = 1.0
DEGRADED_HEADER = "X-RateLimit-Degraded"
EMPTY_CONFIG = Path(str(resources.files("chatlimit"))) / "slowapi.env"


def policy_name(item: RateLimitItem) -> str:
    return f"{item.amount}-per-{item.multiples}-{item.GRANULARITY.name}"


def policy_header(items: Sequence[RateLimitItem]) -> str:
    """RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers): every limit in force."""
    return _policy_header(tuple(items))


@functools.lru_cache(maxsize=256)  # one value per route and limit shown: built once
def _policy_header(items: tuple[RateLimitItem, ...]) -> str:
    return ", ".join(
        f'"{policy_name(i)}";q={i.amount};w={int(i.get_expiry())}' for i in items
    )


def quota_headers(quota: Quota, item: RateLimitItem, policy: str) -> dict[str, str]:
    """Headers describing the tightest limit. X-RateLimit-Reset is a Unix time, as in slowapi
    and GitHub; the draft's RateLimit t= is seconds from now."""
    reset_after = ceil_seconds(quota.reset_after)
    return {
        "X-RateLimit-Limit": str(quota.limit),
        "X-RateLimit-Remaining": str(quota.remaining),
        "X-RateLimit-Reset": str(math.ceil(time.time() + quota.reset_after)),
        "RateLimit-Policy": policy,
        "RateLimit": f'"{policy_name(item)}";r={quota.remaining};t={reset_after}',
    }


class ChatLimiter(Limiter):
    """slowapi's Limiter whose checks are awaited on an async Counter."""

    def __init__(
        self,
        *,
        key_func: Callable[[Request], str],
        counter: Counter,
        strategy: str,
        enabled: bool = True,
        fail_mode: str = "open",
    ) -> None:
        # Every option is passed in code. An empty config file and get_app_config below keep
        # slowapi from reading RATELIMIT_* variables or a .env file on its own.
        # slowapi's own storage stays memory:// and unused: counting belongs to `counter`.
        super().__init__(
            key_func=key_func,
            strategy=strategy,
            storage_uri="memory://",
            headers_enabled=False,
            enabled=enabled,
            swallow_errors=False,
            in_memory_fallback_enabled=False,
            config_filename=str(EMPTY_CONFIG),
        )
        self.counter = counter
        self.strategy = strategy
        self.fail_mode = fail_mode
        self._fallback = MemoryCounter(strategy)
        # Per shard of the storage (see Counter.shard), when to probe it again while it fails:
        # one lost Redis Cluster primary must not push the clients of the others into the
        # fail mode. A single Redis or a Sentinel primary is one shard, "".
        self._down: dict[str, float] = {}
        self._scopes: dict[str, str] = {}  # route name -> the scope in its storage keys
        self._ceilings: set[Callable[..., str]] = set()  # key_funcs of ceilings (per address)

    def get_app_config(self, key: str, default_value: Any = None) -> Any:
        return default_value

    @property
    def degraded(self) -> bool:
        return bool(self._down)

    def limit(self, limit_value: Any, **options: Any) -> Callable[..., Any]:  # type: ignore[override]
        register = super().limit(limit_value, **options)

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            register(func)  # slowapi parses the limit string and files it under the route
            name = f"{func.__module__}.{func.__name__}"
            self._scopes[name] = func.__name__
            self._file_ceilings_last(name)
            if getattr(func, "_chatlimit_limited", False):
                # A stacked decorator: its limits join the route's, counted by the one check
                # the inner wrapper already runs, in the same script call.
                return func

            @functools.wraps(func)
            async def limited(*args: Any, **kwargs: Any) -> Any:
                request: Request = kwargs["request"]
                verdict = await self.check(request, name)
                response = kwargs.get("response")
                if verdict is not None and isinstance(response, Response):
                    # Appended raw: a fresh response holds none of these, and MutableHeaders
                    # would scan the list once per header.
                    response.raw_headers.extend(
                        (k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in self.headers_for(request).items()
                    )
                return await func(*args, **kwargs)

            limited._chatlimit_limited = True  # type: ignore[attr-defined]
            return limited

        return decorator

    def ceiling(self, limit_value: str, *, key_func: Callable[..., str]) -> Callable[..., Any]:
        """A coarser limit on a route, keyed by `key_func` (e.g. the client address alone).

        Stack it on `limit`: it is counted in the same script call, after the route's own
        limits, so a request those refuse never uses up the ceiling of everyone sharing the
        address. The headers keep describing the caller's own limits unless a ceiling refuses.
        """
        self._ceilings.add(key_func)
        return self.limit(limit_value, key_func=key_func)

    def _file_ceilings_last(self, name: str) -> None:
        limits = self._route_limits.get(name, [])
        limits.sort(key=lambda lim: lim.key_func in self._ceilings)  # stable: order kept
        for lim in limits:
            if lim.key_func in self._ceilings and lim.error_message is None:
                lim.error_message = f"{lim.limit} from one address"

    def route_limits(self, name: str) -> list[Limit]:
        return self._route_limits.get(name, [])

    async def check(self, request: Request, name: str) -> Verdict | None:
        """Count this request against the route's limits; raise RateLimitExceeded if over."""
        limits = self.route_limits(name)
        if not self.enabled or not limits:
            return None
        verdict = await self._count(request, name, limits, peek=False)
        if not verdict.allowed:
            assert verdict.failed is not None
            raise RateLimitExceeded(limits[verdict.failed])
        return verdict

    async def quota(self, request: Request, name: str) -> Verdict | None:
        """The caller's standing against the route's limits, consuming nothing."""
        limits = self.route_limits(name)
        if not self.enabled or not limits:
            return None
        return await self._count(request, name, limits, peek=True)

    def headers_for(self, request: Request) -> dict[str, str]:
        state = request.state
        headers = quota_headers(state.quota, state.quota_item, state.quota_policy)
        if getattr(state, "rate_limit_degraded", False):
            headers[DEGRADED_HEADER] = "storage-unreachable"
        return headers

    async def _count(
        self, request: Request, name: str, limits: list[Limit], *, peek: bool
    ) -> Verdict:
        route_scope = self._scopes.get(name, name)
        identities: dict[Callable[..., str], str] = {}
        keys = []
        for lim in limits:
            if lim.key_func not in identities:
                identities[lim.key_func] = lim.key_func(request)
            keys.append(
                storage_key(self.strategy, identities[lim.key_func], lim.scope or route_scope, lim.limit)
            )
        items = [lim.limit for lim in limits]
        cost = limits[0].cost(request) if callable(limits[0].cost) else limits[0].cost
        verdict, degraded = await self._guarded(keys, items, cost, peek)
        shown = self._shown(limits, verdict, peek)
        own = [lim.limit for lim in limits if lim.key_func not in self._ceilings]
        state = request.state
        state.quota = verdict.quotas[shown]
        state.quota_item = items[shown]
        state.quota_policy = policy_header(own if items[shown] in own else [*own, items[shown]])
        state.rate_limit_degraded = degraded
        return verdict

    def _shown(self, limits: list[Limit], verdict: Verdict, peek: bool) -> int:
        """Which limit the quota and headers describe: the one that refuses (for a peek, an
        exhausted ceiling refuses the next request), else the caller's own tightest."""
        if verdict.failed is not None:
            return verdict.failed
        ceiling = [lim.key_func in self._ceilings for lim in limits]
        if peek:
            for index, quota in enumerate(verdict.quotas):
                if ceiling[index] and quota.remaining == 0:
                    return index
        own = [i for i in range(len(verdict.quotas)) if not ceiling[i]] or [0]
        return min(own, key=lambda i: (verdict.quotas[i].remaining, -verdict.quotas[i].reset_after))

    async def _guarded(
        self, keys: list[str], items: list[RateLimitItem], cost: int, peek: bool
    ) -> tuple[Verdict, bool]:
        """Ask the storage; when it fails, apply the fail mode instead of a 500."""
        now = time.monotonic()
        shard = self.counter.shard(keys[0])  # one script's keys share one slot
        down = shard in self._down
        if not down or now >= self._down[shard]:
            if down:
                # One probe at a time: requests arriving while it waits on a hung Redis go
                # straight to the fail mode instead of each waiting out the socket timeout.
                self._down[shard] = now + STORAGE_RETRY_SECONDS
            try:
                if peek:
                    verdict = await self.counter.peek(keys, items)
                else:
                    verdict = await self.counter.hit(keys, items, cost)
            except StorageUnavailable as exc:
                if not self._down:
                    log.warning(
                        "rate-limit storage unreachable (%s): %s", exc,
                        "failing open with this replica's own memory counts"
                        if self.fail_mode == "open"
                        else "failing closed with 503",
                    )
                self._down[shard] = time.monotonic() + STORAGE_RETRY_SECONDS
            else:
                # An answer also proves the storage as a whole ("") reachable.
                recovered = [self._down.pop(s, None) for s in {shard, ""}]
                if any(r is not None for r in recovered) and not self._down:
                    log.warning("rate-limit storage reachable again: shared limiting resumed")
                return verdict, False
        if self.fail_mode == "closed":
            raise StorageUnavailable("storage unreachable")
        if peek:
            return await self._fallback.peek(keys, items), True
        return await self._fallback.hit(keys, items, cost), True


async def rate_limit_exceeded(request: Request, exc: Exception) -> Response:
    """429 with the stable error shape, the quota, Retry-After and the rate-limit headers."""
    assert isinstance(exc, RateLimitExceeded)
    limiter: ChatLimiter = request.app.state.limiter
    quota: Quota = request.state.quota
    retry_after = max(1, ceil_seconds(quota.reset_after))
    headers = limiter.headers_for(request)
    headers["Retry-After"] = str(retry_after)
    body = {
        "error": "rate_limited",
        "detail": f"Rate limit exceeded: {exc.detail}",
        "retry_after": retry_after,
        "quota": quota.as_dict(),
    }
    return JSONResponse(body, status_code=429, headers=headers)


async def storage_unavailable(request: Request, exc: Exception) -> Response:
    """FAIL_MODE=closed: the storage is down, so nobody is let through unmetered."""
    body = {
        "error": "storage_unavailable",
        "detail": "Rate limiting is temporarily unavailable; try again shortly.",
        "retry_after": 1,
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
