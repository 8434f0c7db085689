"""The token budget and the stream slots of a route (TOKEN_LIMIT, MAX_STREAMS).

A request reserves its prompt's estimate plus the max_tokens it will send upstream (OpenAI's
own rule) and takes a stream lease, in the same admission call as its request limits (core.py
appends these keys to the route's). When the reply ends, its Ticket settles in one more call:
the usage is charged instead of the reservation, the rest refunded, the lease dropped. A lease
has a TTL and a heartbeat, so a replica that dies mid-reply frees its slots within the TTL.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from limits import RateLimitItem, parse
from slowapi.wrappers import Limit
from starlette.requests import Request

from ..observe import Observer
from ..storage import Lease, Quota, Verdict
from .breaker import Breaker
from .headers import BudgetHeads, budget_heads
from .keys import key_for, key_suffix
from .plans import CACHE_BOUND

log = logging.getLogger("chatlimit.limiter")

Kind = str  # "requests", "tokens" or "streams": which limit refused


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request asks of the budget: `tokens` reserved, of which `prompt` is the
    prompt's estimate; the rest is the max_tokens sent upstream."""

    tokens: int
    prompt: int

    @property
    def max_tokens(self) -> int:
        return self.tokens - self.prompt


# Lease ids: unique across replicas and across workers forked from one process (a random
# prefix, drawn again in a forked child) and per reply (a counter): cheaper than a uuid4 per
# reply.
_LEASE_PREFIX = [""]
_LEASE_COUNT = itertools.count()


def _new_lease_prefix() -> None:
    _LEASE_PREFIX[0] = f"{os.urandom(8).hex()}{os.getpid():x}-"


_new_lease_prefix()
os.register_at_fork(after_in_child=_new_lease_prefix)


def _lease_id() -> str:
    return f"{_LEASE_PREFIX[0]}{next(_LEASE_COUNT):x}"


def _unit_limit(item: RateLimitItem) -> Limit:
    return Limit(item, str, None, False, None, f"{item.amount} tokens per {item.multiples} "
                 f"{item.GRANULARITY.name}", None, 1, False)


class TokenBudget:
    """TOKEN_LIMIT and MAX_STREAMS for one route, keyed by the route's own user identity."""

    def __init__(
        self, items: Sequence[RateLimitItem], max_streams: int | None, lease_ttl: float, *,
        strategy: str, scope: str, breaker: Breaker | None, observer: Observer | None = None,
    ) -> None:
        self.items = tuple(items)
        self.max_streams = max_streams
        self.lease_ttl = lease_ttl
        if breaker is None and (items or max_streams):
            raise ValueError("a token budget or stream limit needs chatlimit's Limiter")
        self.breaker: Breaker = breaker  # type: ignore[assignment]  # None: never used
        self.observer = observer or (breaker.observer if breaker else Observer())
        self.suffixes = tuple(key_suffix(strategy, f"{scope}-tokens", i) for i in self.items)
        self.lease_suffix = f"streams:{scope}"
        # slowapi Limits, so a refusal raises RateLimitExceeded as a request limit's does.
        self.limits = tuple(_unit_limit(i) for i in self.items)
        self.streams_limit = Limit(
            parse(f"{max_streams}/second"), str, None, False, None,
            f"{max_streams} replies in flight at once", None, 1, False,
        ) if max_streams else None
        # The largest reservation that can ever fit: a tiny budget must not refuse everything.
        self.ceiling = min((i.amount for i in self.items), default=None)
        self.heads = budget_heads(self.items, max_streams)
        # The limiter's key_prefix (Limiter.add_budget sets it): apps sharing a storage.
        self.prefix = ""
        # Per user: the token keys and the lease set's key (bounded, as Plans.named is).
        self._keys: dict[str, tuple[tuple[str, ...], str]] = {}
        # The replies in flight that hold a lease, and the one heartbeat that renews them all.
        self._held: set[Ticket] = set()
        self._beat: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return bool(self.items) or self.max_streams is not None

    def ask(self, prompt: int, max_tokens: int) -> Ask:
        """The reservation for a prompt of `prompt` estimated tokens and up to `max_tokens`
        generated ones, with max_tokens cut so that it fits the smallest token limit."""
        if self.ceiling is not None and prompt + max_tokens > self.ceiling:
            max_tokens = max(1, self.ceiling - prompt)
        return Ask(prompt + max_tokens, prompt)

    def hold(self, ticket: Ticket) -> None:
        """Keep `ticket`'s lease alive until release(): one heartbeat task for every reply in
        flight, not a task per reply (a thousand streams, a thousand sleeping tasks)."""
        loop = asyncio.get_running_loop()
        ticket.renewed = loop.time()  # just taken: the admission ran in this same step
        self._held.add(ticket)
        beat = self._beat
        if beat is None or beat.done() or beat.get_loop() is not loop:
            self._beat = loop.create_task(self._heartbeat())

    def release(self, ticket: Ticket) -> None:
        self._held.discard(ticket)
        if not self._held and self._beat is not None:
            self._beat.cancel()  # nothing left to keep alive: no task outlives the last reply
            self._beat = None

    async def _heartbeat(self) -> None:
        """Every TTL / 3, push one TTL ahead each held lease older than TTL / 6 (the renewals
        go out pipelined, together), so a lease outlives its TTL exactly as long as its reply
        is in flight and is never older than half its TTL when renewed. A reply shorter than
        TTL / 6 is never renewed: it costs its two storage calls and no more (renewing every
        lease at each beat cost a burst of a hundred short replies a hundred renewals)."""
        loop = asyncio.get_running_loop()
        while self._held:
            await asyncio.sleep(self.lease_ttl / 3)
            now = loop.time()
            due = [(t, t.lease) for t in self._held
                   if t.lease is not None and now - t.renewed >= self.lease_ttl / 6]
            for ticket, _ in due:
                ticket.renewed = now
            await asyncio.gather(*(self.breaker.renew(lease, degraded=t.degraded)
                                   for t, lease in due), return_exceptions=True)

    def keys(self, identity: str) -> tuple[tuple[str, ...], Lease | None]:
        known = self._keys.get(identity)
        if known is None:
            if len(self._keys) > CACHE_BOUND:
                self._keys.clear()
            prefix = f"{self.prefix}:" if self.prefix else ""
            known = self._keys[identity] = (
                tuple([prefix + key_for(identity, suffix) for suffix in self.suffixes]),
                prefix + key_for(identity, self.lease_suffix))
        keys, lease_key = known
        lease = Lease(lease_key, _lease_id(), self.max_streams, self.lease_ttl) \
            if self.max_streams else None
        return keys, lease


@dataclass(slots=True)
class Standing:
    """The budget's part of one decision: the token quotas, the free stream slots, what was
    reserved, and the Ticket that settles it (None for a peek or a refusal)."""

    tokens: tuple[Quota, ...]
    items: tuple[RateLimitItem, ...]
    streams: Quota | None
    ask: Ask | None
    heads: BudgetHeads  # the budget's header parts, encoded once
    ticket: Ticket | None = None
    refused: Kind | None = None
    # The token limit the headers describe: the one with least left (first on a tie).
    token_quota: Quota | None = None


def standing(
    budget: TokenBudget, verdict: Verdict, offset: int, ask: Ask | None, keys: Sequence[str],
    lease: Lease | None, *, peek: bool, degraded: bool,
) -> Standing:
    """Split the budget's answers off a verdict whose first `offset` quotas are the route's
    request limits, and open a Ticket when the request was admitted."""
    tokens = verdict.quotas[offset:]
    refused: Kind | None = None
    if verdict.failed is not None:
        refused = "streams" if verdict.refused_streams else (
            "tokens" if verdict.failed >= offset else "requests")
    ticket = None
    if not peek and ask is not None:
        if verdict.allowed:
            budget.observer.tokens(reserved=ask.tokens if budget.items else 0)
        ticket = Ticket(budget, keys, verdict.windows[offset:], ask, lease,
                        degraded=degraded, charged=verdict.allowed)
    return Standing(tokens, budget.items, verdict.streams, ask, budget.heads, ticket, refused,
                    min(tokens, key=_remaining) if tokens else None)


def _remaining(quota: Quota) -> int:
    return quota.remaining


@dataclass(eq=False)
class Ticket:
    """One admitted reply's reservation and lease, until it is settled (once)."""

    budget: TokenBudget
    keys: Sequence[str]
    windows: Sequence[float]
    ask: Ask
    lease: Lease | None
    degraded: bool
    # False when the admission charged nothing (refused, let through by shadow mode).
    charged: bool = True
    settled: tuple[Quota, ...] | None = None
    used: int | None = None
    held: bool = False
    renewed: float = 0.0  # loop time the lease was taken or last renewed (while held)

    def hold(self) -> None:
        """Keep the lease alive (the budget's heartbeat) while the reply is in flight."""
        if self.lease is not None and self.charged and not self.held and self.used is None:
            self.held = True
            self.budget.observer.stream(+1)
            self.budget.hold(self)

    async def settle(self, used: int) -> tuple[Quota, ...] | None:
        """Charge `used` tokens instead of the reservation and drop the lease. Runs once (a
        second call answers the first's result) and is shielded from cancellation: a client
        that goes away must never leave its lease or reservation behind (LiteLLM #27955)."""
        if self.used is not None:
            return self.settled
        self.used = used
        if self.held:
            self.budget.release(self)
            self.budget.observer.stream(-1)
        if not self.charged:
            return None
        budget = self.budget
        deltas = [used - self.ask.tokens] * len(self.keys)
        with anyio.CancelScope(shield=True):
            self.settled = await budget.breaker.settle(
                self.keys, budget.items, self.windows, deltas, self.lease,
                degraded=self.degraded)
        if budget.items:
            budget.observer.tokens(charged=used, refunded=max(0, self.ask.tokens - used))
        return self.settled

    def settled_quota(self) -> Quota | None:
        """The tightest token quota after the settlement."""
        if not self.settled:
            return None
        return min(self.settled, key=lambda q: q.remaining)


def ask_of(request: Request) -> Ask | None:
    """The reservation the route put on the request before its limits were checked."""
    ask: Ask | None = request.scope.get("state", {}).get("token_ask")
    return ask
