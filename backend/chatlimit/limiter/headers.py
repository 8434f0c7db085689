"""The rate-limit headers, built in one place: slowapi's X-RateLimit-* and the IETF draft's
RateLimit-Policy / RateLimit, as raw ASGI pairs for the hot path or as a dict.

With a token budget the draft's fields list the token policy beside the request policy (the
draft allows several items); it has no token unit (its registry holds requests, content-bytes
and concurrent-requests), so the token item carries a vendor parameter, `chatlimit-qu`. The
stream slots are the registered `concurrent-requests`. OpenAI's x-ratelimit-*-tokens come
along, their reset in OpenAI's duration format ("6m0s")."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits import RateLimitItem

from ..storage import ceil_seconds

if TYPE_CHECKING:
    from .core import Decision

DEGRADED_HEADER = "X-RateLimit-Degraded"
SHADOW_HEADER = "X-RateLimit-Shadow"
EXPOSED = ("Retry-After", "X-Served-By", "X-RateLimit-Limit", "X-RateLimit-Remaining",
           "X-RateLimit-Reset", "RateLimit", "RateLimit-Policy", DEGRADED_HEADER, SHADOW_HEADER,
           "X-RateLimit-Limit-Tokens", "X-RateLimit-Remaining-Tokens",
           "X-RateLimit-Reset-Tokens")
STREAMS_POLICY = "streams"
STREAMS_STATE = f'"{STREAMS_POLICY}";r='.encode("latin-1")  # the start of its RateLimit item


def policy_name(item: RateLimitItem) -> str:
    return f"{item.amount}-per-{item.multiples}-{item.GRANULARITY.name}"


@functools.lru_cache(maxsize=256)  # one value per route and limit shown: built once
def policy_header(items: tuple[RateLimitItem, ...]) -> str:
    """RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers): every limit in force."""
    return ", ".join(f'"{policy_name(i)}";q={i.amount};w={int(i.get_expiry())}' for i in items)


def token_policy_name(item: RateLimitItem) -> str:
    return f"tokens-{policy_name(item)}"


def openai_duration(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: "20ms", "42s", "6m0s", "1h0m0s"."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = ceil_seconds(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass(frozen=True, slots=True)
class BudgetHeads:
    """What a token budget adds to the headers that never changes, encoded once per budget:
    its RateLimit-Policy items, and the start of each of its RateLimit items."""

    policies: bytes
    token_states: tuple[bytes, ...]  # per token limit: b'"tokens-...";r='


def budget_heads(items: Sequence[RateLimitItem], max_streams: int | None) -> BudgetHeads:
    policies = [f'"{token_policy_name(i)}";q={i.amount};w={int(i.get_expiry())};'
                'chatlimit-qu="tokens"' for i in items]
    if max_streams is not None:
        policies.append(f'"{STREAMS_POLICY}";q={max_streams};qu="concurrent-requests"')
    return BudgetHeads(
        ", ".join(policies).encode("latin-1"),
        tuple(f'"{token_policy_name(i)}";r='.encode("latin-1") for i in items),
    )


def _budget_headers(decision: Decision) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    """What the budget adds: policy items, RateLimit items, OpenAI's token headers."""
    standing = decision.budget
    assert standing is not None
    heads = standing.heads
    states = [b"%s%d;t=%d" % (start, quota.remaining, ceil_seconds(quota.reset_after))
              for start, quota in zip(heads.token_states, standing.tokens, strict=True)]
    if standing.streams is not None:
        states.append(b"%s%d" % (STREAMS_STATE, standing.streams.remaining))
    extra: list[tuple[bytes, bytes]] = []
    shown = standing.token_quota
    if shown is not None:
        extra = [
            (b"x-ratelimit-limit-tokens", b"%d" % shown.limit),
            (b"x-ratelimit-remaining-tokens", b"%d" % shown.remaining),
            (b"x-ratelimit-reset-tokens", openai_duration(shown.reset_after).encode()),
        ]
    return heads.policies, b", ".join(states), extra


def raw_headers(decision: Decision, retry_after: int | None = None) -> list[tuple[bytes, bytes]]:
    """The headers of a limited response as ASGI pairs. X-RateLimit-Reset is a Unix time, as in
    slowapi and GitHub; the draft's RateLimit t= is seconds from now."""
    quota = decision.quota
    remaining = b"%d" % quota.remaining
    head = decision.head
    if head is None:
        head = (decision.policy.encode("latin-1"),
                f'"{policy_name(decision.item)}";r='.encode("latin-1"))
    policy = head[0]
    state = b"%s%s;t=%d" % (head[1], remaining, ceil_seconds(quota.reset_after))
    extra: list[tuple[bytes, bytes]] = []
    if decision.budget is not None:
        policies, states, extra = _budget_headers(decision)
        policy, state = b"%s, %s" % (policy, policies), b"%s, %s" % (state, states)
    headers = [
        (b"x-ratelimit-limit", b"%d" % quota.limit),
        (b"x-ratelimit-remaining", remaining),
        (b"x-ratelimit-reset", b"%d" % math.ceil(time.time() + quota.reset_after)),
        (b"ratelimit-policy", policy),
        (b"ratelimit", state),
        *extra,
    ]
    if decision.degraded:
        headers.append((b"x-ratelimit-degraded", b"storage-unreachable"))
    if decision.shadow:
        headers.append((b"x-ratelimit-shadow", b"would-refuse"))
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    return headers


def header_dict(decision: Decision, retry_after: int | None = None) -> dict[str, str]:
    """raw_headers as a dict, for Starlette responses built with headers=."""
    return {k.decode(): v.decode("latin-1") for k, v in raw_headers(decision, retry_after)}

