"""Plans: what counting a route's limits needs besides the request, worked out once.

A plan holds the limits' items, storage key suffixes, which are per-address ceilings and the
RateLimit-Policy to show; a fixed plan (a route whose limits are plain strings with fixed
costs) also holds the limits and key functions, so a request only asks its key functions.
Both are cached and bounded: dynamic limits and URL scopes make new sets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem
from slowapi.wrappers import Limit

from ..observe import Observer
from ..storage import Verdict
from .headers import policy_header, policy_name
from .keys import key_suffix
from .rules import Charge, Rule, parameters

CACHE_BOUND = 4096


@dataclass(frozen=True, slots=True)
class Plan:
    """What counting a set of limits needs besides the request, worked out once per set."""

    items: tuple[RateLimitItem, ...]
    suffixes: tuple[str, ...]  # storage key suffix per limit
    ceiling: tuple[bool, ...]  # which limits are per-address ceilings
    policies: tuple[str, ...]  # RateLimit-Policy when limit i is the one shown
    own: tuple[int, ...]  # indices of the caller's own limits
    # Per limit, encoded once: its RateLimit-Policy and the start of its RateLimit item.
    heads: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Fixed:
    """A route (and endpoint key) whose limits need nothing from a request but the answers of
    its key functions: worked out once, so the hot path only asks those."""

    plan: Plan
    limits: tuple[Limit, ...]
    costs: tuple[int, ...]
    # Each distinct key function once, with whether slowapi passes it the request, and per
    # limit the index of its key function there: one call per key function per request.
    callers: tuple[tuple[Callable[..., Any], bool], ...] = ()
    slots: tuple[int, ...] = ()
    direct: bool = False  # each limit its own key function, in order: slots is 0, 1, 2...


FixedKey = tuple[str, bool, str]  # route name, under a middleware, endpoint key


class Plans:
    def __init__(self, strategy: str, observer: Observer) -> None:
        self.strategy = strategy
        self.observer = observer
        self._suffixes: dict[tuple[str, RateLimitItem], str] = {}
        self._plans: dict[tuple[tuple[RateLimitItem, str, bool], ...], Plan] = {}
        # Read by the hot path first: a known route costs one dict lookup.
        self.known: dict[FixedKey, Fixed | None] = {}
        # (route key, what its key functions answered) -> each limit's identity and storage
        # key: a client's next request finds its keys here. One table for every route, bounded
        # (CACHE_BOUND clients, then it starts over), however many paths and clients there are.
        self.named: dict[tuple[FixedKey, tuple[str, ...]],
                         tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def forget(self) -> None:
        """A decorator added limits to a route: its fixed plans are stale."""
        self.known.clear()
        self.named.clear()

    def fixed(self, key: FixedKey, rules: Sequence[Rule]) -> Fixed | None:
        """The fixed plan of a route's limits at this endpoint key, None when some limit needs
        the request (a dynamic limit, an exemption, a callable cost or scope, per_method)."""
        if key in self.known:
            return self.known[key]
        endpoint_key = key[2]
        fixed = None
        if all(rule.plain for rule in rules):
            ordered = sorted(rules, key=lambda r: r.ceiling)  # stable: ceilings last
            found = [Charge(lim, "", rule.scope_for(endpoint_key, None), int(rule.cost),  # type: ignore[arg-type]
                            rule.ceiling) for rule in ordered for lim in rule.static]
            key_funcs = tuple(r.key_func for r in ordered for _ in r.static)
            distinct = list(dict.fromkeys(key_funcs))
            fixed = Fixed(self.of(found), tuple(c.limit for c in found),
                          tuple(c.cost for c in found),
                          callers=tuple((f, "request" in parameters(f)) for f in distinct),
                          slots=tuple(distinct.index(f) for f in key_funcs),
                          direct=len(distinct) == len(key_funcs)) if found else None
        if len(self.known) > CACHE_BOUND:  # URL key style: one per path; stay bounded
            self.known.clear()
        self.known[key] = fixed
        return fixed

    def of(self, found: Sequence[Charge]) -> Plan:
        """The plan of these limits (their scopes and items; identities do not matter)."""
        suffixes = []
        for charge in found:
            item = charge.limit.limit
            suffix = self._suffixes.get((charge.scope, item))
            if suffix is None:
                suffix = self._suffixes[(charge.scope, item)] = key_suffix(
                    self.strategy, charge.scope, item)
            suffixes.append(suffix)
        signature = tuple((c.limit.limit, s, c.ceiling)
                          for c, s in zip(found, suffixes, strict=True))
        plan = self._plans.get(signature)
        if plan is None:
            if len(self._plans) > CACHE_BOUND:  # dynamic limits and URL scopes vary: stay bounded
                self._plans.clear()
            items = tuple(c.limit.limit for c in found)
            ceiling = tuple(c.ceiling for c in found)
            own_items = tuple(item for item, c in zip(items, ceiling, strict=True) if not c)
            policies = tuple(policy_header(own_items if not c else (*own_items, item))
                             for item, c in zip(items, ceiling, strict=True))
            plan = self._plans[signature] = Plan(
                items=items,
                suffixes=tuple(suffixes),
                ceiling=ceiling,
                policies=policies,
                own=tuple(i for i, c in enumerate(ceiling) if not c) or (0,),
                heads=tuple((policy.encode("latin-1"),
                             f'"{policy_name(item)}";r='.encode("latin-1"))
                            for policy, item in zip(policies, items, strict=True)),
            )
            self.observer.declare(plan.items, plan.ceiling)
        return plan


def shown_limit(plan: Plan, verdict: Verdict, peek: bool) -> int:
    """Which limit the quota and headers describe. When some limit refuses (or would
    refuse the next request): of those, the one that frees up last, so the client is
    never told to come back while another limit still refuses it. Otherwise the caller's
    own tightest limit. An address's ceiling is shown once it refuses (or, for a peek,
    is used up), never while it merely has less left than the caller's own limit."""
    quotas = verdict.quotas
    own = plan.own
    if verdict.failed is None and len(own) == 1:
        for quota in quotas:  # a loop: all() over a generator costs twice as much
            if not quota.remaining:
                break
        else:
            return own[0]  # the hot path: nothing refuses, one limit of the caller's own
    exhausted = [i for i, q in enumerate(quotas)
                 if q.remaining == 0 and (peek or not plan.ceiling[i])]
    if verdict.failed is not None:
        exhausted = sorted({verdict.failed, *exhausted})
    if exhausted:
        return max(exhausted, key=lambda i: quotas[i].reset_after)
    candidates = [i for i in own if i < len(quotas)] or [0]
    if len(candidates) == 1:
        return candidates[0]
    return min(candidates, key=lambda i: (quotas[i].remaining, -quotas[i].reset_after))
