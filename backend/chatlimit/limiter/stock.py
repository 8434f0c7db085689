"""Stock slowapi beside chatlimit's Limiter (RATE_LIMIT_ENGINE=slowapi), for comparison.

The app builds `slowapi.Limiter` as slowapi's README shows, and the routes keep their
decorators. What the routes need besides the decorators (the quota in the body, /api/quota,
/readyz) comes from here for either engine; for stock slowapi it is what slowapi itself does
for its headers: a synchronous `get_window_stats` on its `limits` storage, on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from limits import RateLimitItem
from slowapi import Limiter as SlowapiLimiter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..storage import Quota, Verdict
from .core import EMPTY_CONFIG, Decision, Limiter, route_name
from .headers import policy_header

AnyLimiter = Limiter | SlowapiLimiter


def stock_limiter(
    key_func: Callable[..., str], storage_uri: str, strategy: str, *, enabled: bool
) -> SlowapiLimiter:
    """slowapi.Limiter exactly as its README builds it, plus an empty config file so that no
    .env file in the working directory changes it behind our back."""
    return SlowapiLimiter(key_func=key_func, storage_uri=storage_uri, strategy=strategy,
                          headers_enabled=True, enabled=enabled,
                          config_filename=str(EMPTY_CONFIG))


def engine_of(limiter: AnyLimiter) -> str:
    return "chatlimit" if isinstance(limiter, Limiter) else "slowapi"


def _decision(limiter: SlowapiLimiter, items: Sequence[RateLimitItem],
              args: Sequence[Sequence[str]]) -> Decision | None:
    """The quotas of `items` (each counted under `args`), the tightest shown, as slowapi's
    own headers work them out."""
    quotas = []
    for item, keys in zip(items, args, strict=True):
        reset, remaining = limiter.limiter.get_window_stats(item, *keys)
        quotas.append(Quota(item.amount, remaining, max(0.0, reset - time.time())))
    if not quotas:
        return None
    shown = min(range(len(quotas)), key=lambda i: (quotas[i].remaining, -quotas[i].reset_after))
    return Decision(verdict=Verdict(tuple(quotas)), quota=quotas[shown], item=items[shown],
                    policy=policy_header(tuple(items)), degraded=False)


def stock_decision(request: Request) -> Decision | None:
    """The limit slowapi chose for its headers (request.state.view_rate_limit) as a Decision."""
    view = getattr(request.state, "view_rate_limit", None)
    limiter = request.app.state.limiter
    if not isinstance(view, tuple) or isinstance(limiter, Limiter):
        return None
    item, args = view
    return _decision(limiter, [item], [args])


async def standing(limiter: AnyLimiter, request: Request, route: Callable[..., Any],
                   path: str) -> Decision | None:
    """The caller's standing against `route`'s limits (the route function, served at
    `path`: stock slowapi files its counts under the path), consuming nothing."""
    if isinstance(limiter, Limiter):
        return await limiter.quota(request, route)
    if not limiter.enabled:
        return None
    name = route_name(route)
    limits = [lim for lim in limiter._route_limits.get(name, []) if not lim.is_exempt(request)]
    for group in limiter._dynamic_route_limits.get(name, []):
        limits += [lim for lim in group.with_request(request)  # type: ignore[no-untyped-call]
                   if not lim.is_exempt(request)]
    args = [[lim.key_func(request), path] for lim in limits]
    return _decision(limiter, [lim.limit for lim in limits], args)


async def reachable(limiter: AnyLimiter) -> bool:
    if isinstance(limiter, Limiter):
        return await limiter.counter.ping()
    return bool(await run_in_threadpool(limiter._storage.check))
