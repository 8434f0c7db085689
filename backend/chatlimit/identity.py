"""Who is asking: the client address (trusting proxy headers only from trusted proxies) and the
hashed identity that becomes the rate-limit key."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Sequence

from starlette.requests import Request

from .settings import IPNetwork

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(value: str) -> Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [2001:db8::1]:443
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # 203.0.113.7:5000
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str:
    """The address to rate limit.

    X-Forwarded-For is only believed when the direct peer is a trusted proxy. Walking it from the
    right, each trusted hop is skipped and the first untrusted hop is the client: the left-most
    values are whatever the client chose to write, so they never decide the identity.
    """
    current = _parse(peer) if peer else None
    if current is None:
        return peer or "unknown"

    def is_trusted(address: Address) -> bool:
        return any(address in network for network in trusted)

    if not is_trusted(current):
        return str(current)
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for raw in reversed(hops):
        hop = _parse(raw)
        if hop is None:
            # Garbage in the chain: stop at the last hop we could verify.
            return str(current)
        current = hop
        if not is_trusted(current):
            return str(current)
    return str(current)


def hashed(*parts: str) -> str:
    """A short, stable digest, so raw addresses never become storage keys."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


def make_key_func(trusted: Sequence[IPNetwork]) -> Callable[[Request], str]:
    """slowapi's key_func: hash of client address plus User-Agent (the guide's session key)."""
    trusted = tuple(trusted)

    def key_func(request: Request) -> str:
        peer = request.client.host if request.client else None
        forwarded = request.headers.getlist("x-forwarded-for")
        address = client_address(peer, forwarded, trusted)
        return hashed(address, request.headers.get("user-agent", ""))

    return key_func
