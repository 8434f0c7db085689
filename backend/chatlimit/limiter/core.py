"""chatlimit's Limiter: slowapi's Limiter, async and whole; it decides, never writes HTTP.

It takes slowapi's constructor arguments and decorators (`limit`, `shared_limit`, `exempt`,
dynamic limits, `cost`, `exempt_when`, default and application limits) and keeps slowapi's
public surface: limit strings, key functions, `RateLimitExceeded`. What changes is how it
counts: slowapi 0.1.x calls the synchronous `limits` storage from inside async routes
(blocking the event loop on every Redis round trip), once per limit plus two more round trips
for the headers. This Limiter awaits every async callable and counts all of a request's limits
in one atomic Counter step (one Redis round trip), whose answer also gives the headers. Its
outcome travels as one typed Decision on `request.state.rate_limit`. What it deliberately does
differently is refused at construction with one sentence, or listed in
docs/slowapi-compatibility.md.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from limits import RateLimitItem
from limits.errors import ConfigurationError
from slowapi import Limiter as SlowapiLimiter
from slowapi.errors import RateLimitExceeded
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..observe import Observer
from ..storage import MemoryCounter, Quota, Verdict, counter_for
from ..strategies import STRATEGIES
from ..uri import parse_storage_uri
from .breaker import Breaker
from .budget import Ask, Standing, TokenBudget, ask_of, standing
from .keys import key_for
from .plans import CACHE_BOUND, Plan, Plans, shown_limit
from .rules import LimitValue, Rule, charges, settle_identity
from .slowapi_surface import SlowapiSurface

# Handed to stock slowapi (RATE_LIMIT_ENGINE=slowapi) so that it reads no .env file.
EMPTY_CONFIG = Path(str(resources.files("chatlimit.limiter"))) / "slowapi.env"
STORAGE_OPTIONS = ("connect_timeout", "socket_timeout", "memory_max_keys")


@dataclass(slots=True)  # not frozen: see Quota
class Decision:
    """What the limiter decided for one request: the verdict over all of the request's limits,
    and the one limit its quota and headers describe."""

    verdict: Verdict
    quota: Quota
    item: RateLimitItem
    policy: str  # RateLimit-Policy
    degraded: bool  # counted by the fail-open fallback, not the shared storage
    shadow: bool = False  # refused by the limit, let through (RATE_LIMIT_MODE=shadow)
    budget: Standing | None = None  # tokens and stream slots, where the route has a budget
    # RateLimit-Policy and the start of the RateLimit item, encoded once per plan (headers.py
    # builds them when absent).
    head: tuple[bytes, bytes] | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed


def request_state(request: Request) -> dict[str, Any]:
    """What request.state holds, as its dict: on the hot path, since State raises (and
    formats) an AttributeError for every name it lacks."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    return state


def decision_of(request: Request) -> Decision | None:
    state = request_state(request)
    decision: Decision | None = state.get("rate_limit")
    if decision is None and state.get("view_rate_limit") is not None:
        from .stock import stock_decision  # RATE_LIMIT_ENGINE=slowapi

        decision = request.state.rate_limit = stock_decision(request)
    return decision


def route_name(func: Callable[..., Any]) -> str:
    """slowapi's name for a route: where its limits are filed."""
    return f"{func.__module__}.{func.__name__}"


class Limiter(SlowapiSurface, SlowapiLimiter):
    """slowapi's Limiter whose checks are awaited on an async, fail-mode guarded Counter.

    Subclasses slowapi's class so that `isinstance` checks and slowapi's middlewares accept
    it, but builds none of its synchronous `limits` storage: slowapi's own __init__ is not run.
    """

    def __init__(
        self,
        key_func: Callable[..., Any],
        default_limits: Sequence[LimitValue] = (),
        application_limits: Sequence[LimitValue] = (),
        headers_enabled: bool = False,
        strategy: str | None = None,
        storage_uri: str | None = None,
        storage_options: dict[str, Any] | None = None,
        auto_check: bool = True,
        swallow_errors: bool = False,
        in_memory_fallback: Sequence[LimitValue] = (),
        in_memory_fallback_enabled: bool = False,
        retry_after: str | None = None,
        key_prefix: str = "",
        enabled: bool = True,
        config_filename: str | None = None,
        key_style: Literal["endpoint", "url"] = "url",
        headers_name_mapping: dict[str, str] | None = None,
        *,
        breaker: Breaker | None = None,
        shadow: bool = False,
        observer: Observer | None = None,
        ceilings: Sequence[Callable[..., Any]] = (),
    ) -> None:
        """slowapi's arguments, then chatlimit's own: the fail-mode guarded storage (instead
        of storage_uri), shadow mode, the observer, and `ceilings`: key functions whose
        limits are per-address ceilings (counted after the caller's own limits, so a request
        those refuse never uses up the ceiling everyone at the address shares, and shown in
        the headers only once they refuse)."""
        if config_filename is not None:
            raise ConfigurationError("chatlimit's Limiter reads no configuration file: pass "
                                     "every option to Limiter(...) in code.")
        if in_memory_fallback:
            raise ConfigurationError("in_memory_fallback limits are not supported: while the "
                                     "storage is down the fallback counts the route's own "
                                     "limits in memory; pass in_memory_fallback_enabled=True.")
        if key_style not in ("url", "endpoint"):
            raise ConfigurationError("key_style accepts 'url' or 'endpoint'.")
        if retry_after not in (None, "http-date", "delta-seconds"):
            raise ConfigurationError("retry_after accepts None, 'delta-seconds' or 'http-date'.")
        self.strategy = strategy = strategy or "fixed-window"
        if strategy not in STRATEGIES:
            raise ConfigurationError(f"Invalid rate limiting strategy {strategy}: use one of "
                                     f"{', '.join(STRATEGIES)}.")
        self.logger = logging.getLogger("chatlimit.limiter")
        self.observer = observer or Observer(shadow=shadow)
        if breaker is None:
            breaker = self._breaker(storage_uri or "memory://", storage_options or {},
                                    in_memory_fallback_enabled or swallow_errors)
        elif storage_uri is not None or storage_options:
            raise ConfigurationError("pass either breaker= or storage_uri=, not both.")
        self.breaker = breaker
        self.counter = breaker.counter
        self.shadow = shadow
        self._ceilings = frozenset(ceilings)
        self.enabled = enabled
        self._key_func = key_func
        self._key_prefix = key_prefix
        self._key_style = key_style
        self._auto_check = auto_check
        self._swallow_errors = swallow_errors
        self._in_memory_fallback_enabled = breaker.fail_mode == "open"
        self._init_headers(headers_enabled, retry_after, headers_name_mapping)
        self._defaults = [Rule.build(v, key_func, override_defaults=False)
                                for v in dict.fromkeys(default_limits)]
        self._app_limits = [Rule.build(v, key_func, scope="global")
                                    for v in application_limits]
        self._exempt_routes: set[str] = set()
        self._request_filters: list[Callable[..., bool]] = []
        self._route_limits: dict[str, list[Any]] = {}  # what slowapi's middlewares read
        self._rules: dict[str, list[Rule]] = {}  # route name -> its decorators, in order
        self._scopes: dict[str, str] = {}  # route name -> the endpoint in its storage keys
        self.plans = Plans(self.strategy, self.observer)
        self._budgets: dict[str, TokenBudget] = {}  # route name -> TOKEN_LIMIT, MAX_STREAMS

    def _breaker(self, uri: str, options: dict[str, Any], fail_open: bool) -> Breaker:
        unknown = set(options) - set(STORAGE_OPTIONS)
        if unknown:
            raise ConfigurationError(f"storage_options accepts {', '.join(STORAGE_OPTIONS)}; "
                                     f"not {', '.join(sorted(unknown))}.")
        try:
            location = parse_storage_uri(uri)
        except ValueError as exc:
            raise ConfigurationError(f"storage_uri: {exc}") from None
        counter = counter_for(location, self.strategy, **options)
        fallback = MemoryCounter(self.strategy, max_keys=options.get("memory_max_keys", 100_000))
        # slowapi without a fallback lets the storage's exception escape (a 500): here it is
        # StorageUnavailable, which chatlimit's app answers with 503.
        return Breaker(counter, fallback, "open" if fail_open else "closed", self.observer)

    # The decorators, with slowapi's signatures.

    def limit(
        self, limit_value: LimitValue, key_func: Callable[..., Any] | None = None,
        per_method: bool = False, methods: list[str] | None = None,
        error_message: str | None = None, exempt_when: Callable[..., Any] | None = None,
        cost: int | Callable[..., Any] = 1, override_defaults: bool = True,
    ) -> Callable[..., Any]:
        key_func = key_func or self._key_func
        return self._decorator(Rule.build(
            limit_value, key_func, per_method=per_method, methods=methods,
            error_message=error_message, exempt_when=exempt_when, cost=cost,
            override_defaults=override_defaults, ceiling=key_func in self._ceilings))

    def shared_limit(
        self, limit_value: LimitValue, scope: str | Callable[[str], str],
        key_func: Callable[..., Any] | None = None, error_message: str | None = None,
        exempt_when: Callable[..., Any] | None = None, cost: int | Callable[..., Any] = 1,
        override_defaults: bool = True,
    ) -> Callable[..., Any]:
        return self._decorator(Rule.build(
            limit_value, key_func or self._key_func, scope=scope, error_message=error_message,
            exempt_when=exempt_when, cost=cost, override_defaults=override_defaults))

    def add_budget(self, route: Callable[..., Any], budget: TokenBudget) -> None:
        """Count `route`'s token budget and stream slots in the same call as its limits."""
        if budget.active:
            budget.prefix = self._key_prefix  # every key of the call, the lease set's too
            self._budgets[route_name(route)] = budget
            self.observer.declare(budget.items, ("tokens",) * len(budget.items))

    def exempt(self, obj: Callable[..., Any]) -> Callable[..., Any]:
        """No limit applies to this route, not even the default and application limits."""
        self._exempt_routes.add(route_name(obj))
        return obj

    def _decorator(self, rule: Rule) -> Callable[..., Any]:
        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            name = route_name(func)
            self._rules.setdefault(name, []).append(rule)
            if not callable(rule.value):
                self._route_limits.setdefault(name, []).extend(rule.static)
            self._scopes[name] = func.__name__
            self.plans.forget()
            if getattr(func, "_chatlimit_limited", False):
                # A stacked decorator: its limits join the route's, counted by the one check
                # the outer wrapper runs, in the same script call.
                return func
            return self._wrap(func)

        return decorator

    def _wrap(self, func: Callable[..., Any]) -> Callable[..., Any]:
        names = inspect.signature(func).parameters
        at = next((i for i, p in enumerate(names) if p in ("request", "websocket")), None)
        if at is None:
            raise Exception(f'No "request" or "websocket" argument on function "{func}"')
        call = func if inspect.iscoroutinefunction(func) else functools.partial(
            run_in_threadpool, func)
        name = route_name(func)

        @functools.wraps(func)
        async def limited(*args: Any, **kwargs: Any) -> Any:
            if not self.enabled:
                return await call(*args, **kwargs)
            request = kwargs.get("request", args[at] if len(args) > at else None)
            if not isinstance(request, Request):
                raise Exception(
                    "parameter `request` must be an instance of starlette.requests.Request")
            decision = None
            state = request_state(request)
            if self._auto_check and not state.get("_rate_limiting_complete", False):
                decision = await self.check_request(request, name)
                state["_rate_limiting_complete"] = True
            response = kwargs.get("response")
            pairs = None
            if decision is not None and isinstance(response, Response):
                # Before the route runs, so that a streamed answer has them before its first
                # byte; appended raw, since a fresh response holds none of them.
                pairs = self.header_pairs(decision)
                response.raw_headers.extend(pairs)
            answer = await call(*args, **kwargs)
            if decision is not None and self._headers_enabled:
                if isinstance(answer, Response):
                    # Unless the route passed them on (a streamed reply), or owes a 429 its
                    # Retry-After.
                    if not (pairs and pairs[0] in answer.raw_headers and
                            answer.status_code != 429):
                        self._inject_headers(answer, decision)
                elif not isinstance(response, Response):
                    raise Exception("parameter `response` must be an instance of "
                                    "starlette.responses.Response")
            return answer

        limited._chatlimit_limited = True  # type: ignore[attr-defined]
        return limited

    # Checking a request.

    def route_limits(self, name: str) -> list[Rule]:
        return self._rules.get(name, [])

    @property
    def decorated(self) -> Collection[str]:
        """The names of the routes with a limit decorator (they check themselves)."""
        return self._rules.keys()

    def _rules_for(self, name: str, in_middleware: bool) -> list[Rule]:
        """slowapi's selection: the route's own limits, the defaults unless a route limit
        overrides them, and the application limits under a middleware. Those come last
        (slowapi counts them first): a request the route's own limit refuses is charged
        nothing after it, so it does not use up the limit the whole application shares."""
        route = self._rules.get(name, [])
        found = list(route)
        if not route or not all(r.override_defaults for r in route):
            found += self._defaults
        if in_middleware:
            found += self._app_limits
        return found

    async def check_request(
        self, request: Request, name: str, *, in_middleware: bool = False, peek: bool = False,
    ) -> Decision | None:
        """Count the request against every limit in force for the route `name` (see
        route_name), in one storage call; raise RateLimitExceeded if one refuses. None when
        nothing limits it. `in_middleware`: the application limits apply too."""
        if not self.enabled or name in self._exempt_routes or (
                self._request_filters and any(f() for f in self._request_filters)):
            return None
        state = request_state(request)
        in_middleware = in_middleware or state.get("_chatlimit_app_limits", False)
        endpoint_key = request.scope["path"] if self._key_style == "url" else \
            self._scopes.get(name, name)
        key = (name, in_middleware, endpoint_key)
        try:
            fixed = self.plans.known[key]
        except KeyError:
            rules = self._rules_for(name, in_middleware)
            if not rules:
                return None
            fixed = self.plans.fixed(key, rules)
        named = None
        if fixed is not None:
            # The hot path: each key function asked once, called directly (no coroutine
            # unless it answers one). An empty identity skips its limit, as slowapi does: the
            # slow path below does that.
            asked = []
            for key_func, with_request in fixed.callers:
                identity = key_func(request) if with_request else key_func()
                if type(identity) is not str:
                    identity = await settle_identity(identity)
                if not identity:
                    break
                asked.append(identity)
            else:
                who = tuple(asked)
                cache = self.plans.named
                named = cache.get((key, who))
                if named is None:
                    if len(cache) > CACHE_BOUND:
                        cache.clear()
                    identities = who if fixed.direct else tuple([asked[i] for i in fixed.slots])
                    named = cache[(key, who)] = (identities, self._keys(fixed.plan, identities))
        if fixed is not None and named is not None:
            plan, limits, costs = fixed.plan, fixed.limits, fixed.costs
            identities, keys = named
        else:  # dynamic limits, exemptions, callable costs: resolved for this request
            found = await charges(self._rules_for(name, in_middleware), request, endpoint_key,
                                  {})
            if not found:
                return None
            plan = self.plans.of(found)
            limits = tuple(c.limit for c in found)
            identities = tuple(c.identity for c in found)
            keys = self._keys(plan, identities)
            costs = tuple(c.cost for c in found)
        budget = self._budgets.get(name)
        decision = await self._count(request, plan, identities, keys, costs, peek=peek,
                                     budget=budget)
        if peek or decision.verdict.failed is None:
            return decision
        if self.shadow:  # counted and reported (observer, header), never refused
            decision = state["rate_limit"] = state["view_rate_limit"] = replace(
                decision, shadow=True)
            return decision
        failed = decision.verdict.failed
        assert failed is not None
        if budget is not None and failed >= len(limits):  # tokens, or no free stream slot
            raise RateLimitExceeded(
                budget.streams_limit if decision.verdict.refused_streams and
                budget.streams_limit else budget.limits[failed - len(limits)])
        raise RateLimitExceeded(limits[failed])

    async def check(self, request: Request, name: str) -> Decision | None:
        """Count this request against the route `name`'s limits (see check_request)."""
        return await self.check_request(request, name)

    async def quota(self, request: Request, route: Callable[..., Any]) -> Decision | None:
        """The caller's standing against `route`'s limits (the route function), consuming
        nothing."""
        return await self.check_request(request, route_name(route), peek=True)

    def _keys(self, plan: Plan, identities: Sequence[str]) -> tuple[str, ...]:
        prefix = f"{self._key_prefix}:" if self._key_prefix else ""
        return tuple([prefix + key_for(i, s) for i, s in zip(identities, plan.suffixes,
                                                               strict=True)])

    async def _count(
        self, request: Request, plan: Plan, identities: Sequence[str], keys: Sequence[str],
        costs: Sequence[int], *, peek: bool, budget: TokenBudget | None = None,
    ) -> Decision:
        # Each limit is charged its own cost, as slowapi does.
        user, ask, lease = "", None, None
        budget_keys: Sequence[str] = ()
        if budget is None:
            now = self.breaker.count_now(keys, plan.items, costs, peek=peek)
            if now is not None:
                verdict, degraded = now, False
            else:
                verdict, degraded = await self.breaker.count(keys, plan.items, costs, peek=peek)
            whole = verdict
        else:  # appended to the same call; budget.py says why in this order
            user = identities[plan.own[0]]
            # A request without its route's reservation takes a slot and reserves nothing.
            ask = None if peek else ask_of(request) or Ask(0, 0)
            budget_keys, lease = budget.keys(user)  # key_prefix'd, as keys are
            whole, degraded = await self.breaker.count(
                [*keys, *budget_keys], [*plan.items, *budget.items],
                [*costs, *([ask.tokens if ask else 1] * len(budget_keys))],
                peek=peek, lease=lease)
            n = len(keys)
            verdict = Verdict(whole.quotas[:n], whole.failed if whole.failed is None or
                              whole.failed < n else None, whole.windows[:n], whole.streams)
        if not peek:  # the observer hook: one call per decision (metrics, stats, refusal log)
            failed = whole.failed
            if budget is None:
                self.observer.decided(plan.items, plan.ceiling, verdict, "" if failed is None
                                      else identities[failed])
            else:
                self.observer.decided(
                    (*plan.items, *budget.items), (*plan.ceiling, *("tokens",) * len(budget.items)),
                    whole, "" if failed is None else user if failed >= len(keys)
                    else identities[failed], streams=budget.max_streams)
        shown = shown_limit(plan, verdict, peek)
        decision = Decision(
            verdict=whole,
            quota=verdict.quotas[shown],
            item=plan.items[shown],
            policy=plan.policies[shown],
            degraded=degraded,
            budget=None if budget is None else standing(
                budget, whole, len(keys), ask, budget_keys, lease, peek=peek, degraded=degraded),
            head=plan.heads[shown] if plan.heads else None,
        )
        # view_rate_limit: where slowapi's own exception handler and middlewares look.
        state = request_state(request)
        state["rate_limit"] = state["view_rate_limit"] = decision
        return decision



ChatLimiter = Limiter  # the name before the drop-in
