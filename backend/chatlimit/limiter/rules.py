"""What a request is limited by: slowapi's limit options, resolved per request and awaited.

slowapi resolves key functions, dynamic limits, `exempt_when` and `cost` synchronously and
then makes one storage call per limit. Here each of them may be a coroutine function (awaited),
and the outcome is one list of Charges that the limiter counts in one storage call.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from limits import RateLimitItem
from limits.util import parse_many
from slowapi.wrappers import Limit
from starlette.requests import Request

log = logging.getLogger("chatlimit.limiter")

LimitValue = str | Callable[..., Any]


@functools.cache  # a route's functions are few and live as long as the app
def parameters(func: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(func).parameters)


async def _call(func: Callable[..., Any], *args: Any) -> Any:
    value = func(*args)
    return await value if inspect.isawaitable(value) else value


async def identity_of(key_func: Callable[..., Any], request: Request) -> str:
    """slowapi's rule: the key function gets the request if it has a `request` parameter."""
    value = key_func(request) if "request" in parameters(key_func) else key_func()
    if type(value) is str:  # the hot path: a sync key function's answer, nothing to await
        return value
    return await settle_identity(value)


async def settle_identity(value: Any) -> str:
    """A key function's answer that is not a plain str: awaited if it is awaitable (an async
    key function), then made a str, as slowapi does."""
    if inspect.isawaitable(value):
        value = await value
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True, slots=True)
class Rule:
    """One `limit`/`shared_limit` decorator (or a default or application limit) as declared."""

    value: LimitValue  # a limit string, or a callable returning one (a dynamic limit)
    key_func: Callable[..., Any]
    scope: str | Callable[[str], str] | None = None  # shared_limit's scope, else the route's
    per_method: bool = False
    methods: tuple[str, ...] | None = None  # lower case, as slowapi compares them
    error_message: str | Callable[[], str] | None = None
    exempt_when: Callable[..., Any] | None = None
    cost: int | Callable[..., Any] = 1
    override_defaults: bool = True
    ceiling: bool = False  # a per-address ceiling: counted last, shown only when it refuses
    static: tuple[Limit, ...] = ()  # the parsed limits of a limit string

    @property
    def plain(self) -> bool:
        """Nothing to resolve per request but the key: the limits, scope and cost are fixed."""
        return not (callable(self.value) or callable(self.cost) or callable(self.scope)
                    or self.exempt_when is not None or self.methods is not None
                    or self.per_method)

    @classmethod
    def build(cls, value: LimitValue, key_func: Callable[..., Any], **options: Any) -> Rule:
        methods = options.pop("methods", None)
        rule = cls(value, key_func, methods=tuple(m.lower() for m in methods)
                   if methods is not None else None, **options)
        if callable(value):
            return rule
        # slowapi logs a bad limit string and limits nothing; a typo must not be silent.
        items = parse_many(value)  # ValueError names what is wrong
        return rule._with(items)

    def _with(self, items: Sequence[RateLimitItem]) -> Rule:
        return replace(self, static=tuple(self.limit(i, self.error_message) for i in items))

    def limit(self, item: RateLimitItem, message: str | Callable[[], str] | None) -> Limit:
        if message is None and self.ceiling:
            message = f"{item} from one address"
        return Limit(item, self.key_func, self.scope, self.per_method,
                     list(self.methods) if self.methods is not None else None, message,
                     self.exempt_when, self.cost, self.override_defaults)

    async def limits(self, request: Request, identity: str) -> Sequence[Limit]:
        """The limits in force for this request: a dynamic limit is asked now (with the key,
        if it takes one), as slowapi does; a string it cannot parse is logged and skipped."""
        if not callable(self.value):
            return self.static
        raw = await (_call(self.value, identity) if "key" in parameters(self.value)
                     else _call(self.value))
        try:
            items = parse_many(raw)
        except ValueError as exc:
            log.error("failed to load the dynamic rate limit %r (%s)", raw, exc)
            return ()
        return tuple(self.limit(item, self.error_message) for item in items)

    async def exempt(self, request: Request) -> bool:
        if self.methods is not None and request.method.lower() not in self.methods:
            return True
        when = self.exempt_when
        if when is None:
            return False
        # slowapi passes the request when exempt_when takes exactly one parameter.
        return bool(await (_call(when, request) if len(parameters(when)) == 1 else _call(when)))

    async def cost_of(self, request: Request) -> int:
        cost = await _call(self.cost, request) if callable(self.cost) else self.cost
        # The counters count whole units: a fractional cost is rounded up, never down.
        return max(0, math.ceil(cost))

    def scope_for(self, endpoint: str, request: Request | None) -> str:
        scope = self.scope
        name = (scope(endpoint) if callable(scope) else scope) or endpoint
        return f"{name}:{request.method}" if self.per_method and request else name


@dataclass(frozen=True, slots=True)
class Charge:
    """One limit as this request meets it."""

    limit: Limit
    identity: str
    scope: str
    cost: int
    ceiling: bool


async def charges(
    rules: Sequence[Rule], request: Request, endpoint: str, known: dict[Any, str]
) -> list[Charge]:
    """The request's charges, in declaration order, ceilings last. `known` caches each key
    function's identity for this request (a key function runs once, however many limits)."""
    found: list[Charge] = []
    last: list[Charge] = []
    for rule in rules:
        if (rule.exempt_when is not None or rule.methods is not None) and \
                await rule.exempt(request):
            continue
        identity = known.get(rule.key_func)
        if identity is None:
            identity = known[rule.key_func] = await identity_of(rule.key_func, request)
        scope = rule.scope_for(endpoint, request)
        if not identity or not scope:
            log.error("skipping limit %s: empty key or scope", rule.value)
            continue
        cost = await rule.cost_of(request) if rule.cost != 1 else 1
        for lim in await rule.limits(request, identity):
            (last if rule.ceiling else found).append(
                Charge(lim, identity, scope, cost, rule.ceiling))
    return found + last
