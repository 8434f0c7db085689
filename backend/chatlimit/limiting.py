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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from limits import RateLimitItem
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.wrappers import Limit
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .counters import (
    Counter,
    MemoryCounter,
    Quota,
    StorageUnavailable,
    Verdict,
    ceil_seconds,
    key_for,
    key_suffix,
)

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


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a route's check needs besides the request, worked out once per route."""

    limits: tuple[Limit, ...]
    items: tuple[RateLimitItem, ...]
    suffixes: tuple[str, ...]  # storage key suffix per limit
    ceiling: tuple[bool, ...]  # which limits are per-address ceilings
    policies: tuple[str, ...]  # RateLimit-Policy when limit i is the one shown
    own: tuple[int, ...]  # indices of the caller's own limits


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
        self._plans: dict[str, _Plan] = {}

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
            self._plans.pop(name, None)
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
                    response.raw_headers.extend(self.raw_headers_for(request))
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

    def raw_headers_for(self, request: Request) -> list[tuple[bytes, bytes]]:
        """headers_for as ASGI header pairs, for the hot path of every limited response."""
        state = request.state
        quota: Quota = state.quota
        reset_after = ceil_seconds(quota.reset_after)
        remaining = str(quota.remaining).encode()
        headers = [
            (b"x-ratelimit-limit", str(quota.limit).encode()),
            (b"x-ratelimit-remaining", remaining),
            (b"x-ratelimit-reset", str(math.ceil(time.time() + quota.reset_after)).encode()),
            (b"ratelimit-policy", state.quota_policy.encode("latin-1")),
            (b"ratelimit", b'"%s";r=%s;t=%d' % (
                policy_name(state.quota_item).encode(), remaining, reset_after)),
        ]
        if state.rate_limit_degraded:
            headers.append((DEGRADED_HEADER.lower().encode(), b"storage-unreachable"))
        return headers

    def headers_for(self, request: Request) -> dict[str, str]:
        state = request.state
        headers = quota_headers(state.quota, state.quota_item, state.quota_policy)
        if getattr(state, "rate_limit_degraded", False):
            headers[DEGRADED_HEADER] = "storage-unreachable"
        return headers

    def _plan(self, name: str, limits: list[Limit]) -> _Plan:
        plan = self._plans.get(name)
        if plan is None or len(plan.limits) != len(limits):
            scope = self._scopes.get(name, name)
            items = tuple(lim.limit for lim in limits)
            ceiling = tuple(lim.key_func in self._ceilings for lim in limits)
            own_items = [item for item, c in zip(items, ceiling, strict=True) if not c]
            plan = self._plans[name] = _Plan(
                limits=tuple(limits),
                items=items,
                suffixes=tuple(
                    key_suffix(self.strategy, lim.scope or scope, lim.limit) for lim in limits
                ),
                ceiling=ceiling,
                policies=tuple(
                    policy_header(own_items if not c else [*own_items, item])
                    for item, c in zip(items, ceiling, strict=True)
                ),
                own=tuple(i for i, c in enumerate(ceiling) if not c) or (0,),
            )
        return plan

    async def _count(
        self, request: Request, name: str, limits: list[Limit], *, peek: bool
    ) -> Verdict:
        plan = self._plan(name, limits)
        identities: dict[Callable[..., str], str] = {}
        keys = []
        for lim, suffix in zip(plan.limits, plan.suffixes, strict=True):
            identity = identities.get(lim.key_func)
            if identity is None:
                identity = identities[lim.key_func] = lim.key_func(request)
            keys.append(key_for(identity, suffix))
        first = plan.limits[0]
        cost = first.cost(request) if callable(first.cost) else first.cost
        verdict, degraded = await self._guarded(keys, plan.items, cost, peek)
        shown = self._shown(plan, verdict, peek)
        state = request.state
        state.quota = verdict.quotas[shown]
        state.quota_item = plan.items[shown]
        state.quota_policy = plan.policies[shown]
        state.rate_limit_degraded = degraded
        return verdict

    @staticmethod
    def _shown(plan: _Plan, verdict: Verdict, peek: bool) -> int:
        """Which limit the quota and headers describe: the one that refuses (for a peek, an
        exhausted ceiling refuses the next request), else the caller's own tightest."""
        if verdict.failed is not None:
            return verdict.failed
        quotas = verdict.quotas
        if peek:
            for index, quota in enumerate(quotas):
                if plan.ceiling[index] and quota.remaining == 0:
                    return index
        own = [i for i in plan.own if i < len(quotas)] or [0]
        if len(own) == 1:
            return own[0]
        return min(own, key=lambda i: (quotas[i].remaining, -quotas[i].reset_after))

    async def _guarded(
        self, keys: list[str], items: Sequence[RateLimitItem], cost: int, peek: bool
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
