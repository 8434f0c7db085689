"""The rate-limit headers, built in one place: slowapi's X-RateLimit-* and the IETF draft's
RateLimit-Policy / RateLimit, as raw ASGI pairs for the hot path or as a dict."""

from __future__ import annotations

import functools
import math
import time
from typing import TYPE_CHECKING

from limits import RateLimitItem

from ..storage import ceil_seconds

if TYPE_CHECKING:
    from .core import Decision

DEGRADED_HEADER = "X-RateLimit-Degraded"
SHADOW_HEADER = "X-RateLimit-Shadow"
EXPOSED = ("Retry-After", "X-Served-By", "X-RateLimit-Limit", "X-RateLimit-Remaining",
           "X-RateLimit-Reset", "RateLimit", "RateLimit-Policy", DEGRADED_HEADER, SHADOW_HEADER)


def policy_name(item: RateLimitItem) -> str:
    return f"{item.amount}-per-{item.multiples}-{item.GRANULARITY.name}"


@functools.lru_cache(maxsize=256)  # one value per route and limit shown: built once
def policy_header(items: tuple[RateLimitItem, ...]) -> str:
    """RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers): every limit in force."""
    return ", ".join(f'"{policy_name(i)}";q={i.amount};w={int(i.get_expiry())}' for i in items)


def raw_headers(decision: Decision, retry_after: int | None = None) -> list[tuple[bytes, bytes]]:
    """The headers of a limited response as ASGI pairs. X-RateLimit-Reset is a Unix time, as in
    slowapi and GitHub; the draft's RateLimit t= is seconds from now."""
    quota = decision.quota
    remaining = str(quota.remaining).encode()
    headers = [
        (b"x-ratelimit-limit", str(quota.limit).encode()),
        (b"x-ratelimit-remaining", remaining),
        (b"x-ratelimit-reset", str(math.ceil(time.time() + quota.reset_after)).encode()),
        (b"ratelimit-policy", decision.policy.encode("latin-1")),
        (b"ratelimit", b'"%s";r=%s;t=%d' % (
            policy_name(decision.item).encode(), remaining, ceil_seconds(quota.reset_after))),
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

