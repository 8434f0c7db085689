"""slowapi, configured explicitly: the limiter that decides, never writes HTTP.

slowapi keeps its public surface: the `@limiter.limit("3/minute")` decorator, limit strings,
the key function and `RateLimitExceeded`. What changes is where the counting runs: slowapi
0.1.x calls the synchronous `limits` storage from inside async routes (blocking the event loop
on every Redis round trip) and spends two more round trips on the headers. ChatLimiter awaits
one atomic Counter step per request instead and reuses its answer for the headers.
Its outcome travels as one typed Decision on `request.state.rate_limit`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from limits import RateLimitItem
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.wrappers import Limit
from starlette.requests import Request
from starlette.responses import Response

from ..observe import Observer
from ..storage import Quota, Verdict
from .breaker import Breaker
from .headers import policy_header, raw_headers
from .keys import key_for, key_suffix

EMPTY_CONFIG = Path(str(resources.files("chatlimit.limiter"))) / "slowapi.env"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the limiter decided for one request: the verdict over all of the route's limits,
    and the one limit its quota and headers describe."""

    verdict: Verdict
    quota: Quota
    item: RateLimitItem
    policy: str  # RateLimit-Policy
    degraded: bool  # counted by the fail-open fallback, not the shared storage
    shadow: bool = False  # refused by the limit, let through (RATE_LIMIT_MODE=shadow)

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed


def decision_of(request: Request) -> Decision | None:
    decision: Decision | None = getattr(request.state, "rate_limit", None)
    return decision


def route_name(func: Callable[..., Any]) -> str:
    """slowapi's name for a route: where its limits are filed."""
    return f"{func.__module__}.{func.__name__}"


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
    """slowapi's Limiter whose checks are awaited on an async, fail-mode guarded Counter."""

    def __init__(
        self,
        *,
        key_func: Callable[[Request], str],
        breaker: Breaker,
        strategy: str,
        enabled: bool = True,
        shadow: bool = False,
        observer: Observer | None = None,
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
        self.breaker = breaker
        self.counter = breaker.counter
        self.strategy = strategy
        self.shadow = shadow
        self.observer = observer or Observer(shadow=shadow)
        self._scopes: dict[str, str] = {}  # route name -> the scope in its storage keys
        self._ceilings: set[Callable[..., str]] = set()  # key_funcs of ceilings (per address)
        self._plans: dict[str, _Plan] = {}

    def get_app_config(self, key: str, default_value: Any = None) -> Any:
        return default_value

    def limit(self, limit_value: Any, **options: Any) -> Callable[..., Any]:  # type: ignore[override]
        register = super().limit(limit_value, **options)

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            register(func)  # slowapi parses the limit string and files it under the route
            name = route_name(func)
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
                decision = await self.check(request, name)
                response = kwargs.get("response")
                if decision is not None and isinstance(response, Response):
                    # Appended raw: a fresh response holds none of these, and MutableHeaders
                    # would scan the list once per header.
                    response.raw_headers.extend(raw_headers(decision))
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

    async def check(self, request: Request, name: str) -> Decision | None:
        """Count this request against the route's limits; raise RateLimitExceeded if over."""
        limits = self.route_limits(name)
        if not self.enabled or not limits:
            return None
        decision = await self._count(request, name, limits, peek=False)
        if not decision.allowed:
            if self.shadow:  # counted and reported (observer, header), never refused
                decision = request.state.rate_limit = replace(decision, shadow=True)
                return decision
            assert decision.verdict.failed is not None
            raise RateLimitExceeded(limits[decision.verdict.failed])
        return decision

    async def quota(self, request: Request, route: Callable[..., Any]) -> Decision | None:
        """The caller's standing against `route`'s limits (the route function), consuming
        nothing."""
        name = route_name(route)
        limits = self.route_limits(name)
        if not self.enabled or not limits:
            return None
        return await self._count(request, name, limits, peek=True)

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
                    policy_header(tuple(own_items) if not c else (*own_items, item))
                    for item, c in zip(items, ceiling, strict=True)
                ),
                own=tuple(i for i, c in enumerate(ceiling) if not c) or (0,),
            )
            self.observer.declare(plan.items, plan.ceiling)
        return plan

    async def _count(
        self, request: Request, name: str, limits: list[Limit], *, peek: bool
    ) -> Decision:
        plan = self._plan(name, limits)
        identities: dict[Callable[..., str], str] = {}
        keys = []
        for lim, suffix in zip(plan.limits, plan.suffixes, strict=True):
            identity = identities.get(lim.key_func)
            if identity is None:
                identity = identities[lim.key_func] = lim.key_func(request)
            keys.append(key_for(identity, suffix))
        # Each limit is charged its own cost, as slowapi does.
        costs = [lim.cost(request) if callable(lim.cost) else lim.cost for lim in plan.limits]
        verdict, degraded = await self.breaker.count(keys, plan.items, costs, peek=peek)
        if not peek:  # the observer hook: one call per decision (metrics, stats, refusal log)
            failed = verdict.failed
            self.observer.decided(plan.items, plan.ceiling, verdict, "" if failed is None
                                  else identities[plan.limits[failed].key_func])
        shown = self._shown(plan, verdict, peek)
        decision = Decision(
            verdict=verdict,
            quota=verdict.quotas[shown],
            item=plan.items[shown],
            policy=plan.policies[shown],
            degraded=degraded,
        )
        request.state.rate_limit = decision
        return decision

    @staticmethod
    def _shown(plan: _Plan, verdict: Verdict, peek: bool) -> int:
        """Which limit the quota and headers describe. When some limit refuses (or would
        refuse the next request): of those, the one that frees up last, so the client is
        never told to come back while another limit still refuses it. Otherwise the caller's
        own tightest limit. An address's ceiling is shown once it refuses (or, for a peek,
        is used up), never while it merely has less left than the caller's own limit."""
        quotas = verdict.quotas
        exhausted = [i for i, q in enumerate(quotas)
                     if q.remaining == 0 and (peek or not plan.ceiling[i])]
        if verdict.failed is not None:
            exhausted = sorted({verdict.failed, *exhausted})
        if exhausted:
            return max(exhausted, key=lambda i: quotas[i].reset_after)
        own = [i for i in plan.own if i < len(quotas)] or [0]
        if len(own) == 1:
            return own[0]
        return min(own, key=lambda i: (quotas[i].remaining, -quotas[i].reset_after))
