"""Who is asking: the client address (trusting proxy headers only from trusted proxies) and the
hashed identities that become rate-limit keys.

Two keys per request, both hashed: the user (address plus User-Agent, the guide's session key)
and the address alone, for the coarser per-address ceiling that stops one address minting fresh
quotas by rotating its User-Agent. An IPv6 client is its whole /64: one subscriber line or host
usually holds a /64 and can pick any address in it, so per-/128 keys would be free quotas.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Callable, Sequence

from starlette.requests import Request

from ..settings import IPNetwork

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# The parsing and hashing below are pure and run for every request, mostly on the same few
# inputs: cached, a request's two keys cost about half the CPU they did (18 -> 9 µs). The
# caches stay small because their keys are client-chosen strings of up to MAX_HEADER_BYTES:
# 1024 entries bound them to a few MB however hostile the headers.
@functools.lru_cache(maxsize=1024)
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


@functools.lru_cache(maxsize=1024)
def hashed(*parts: str) -> str:
    """A short, stable digest, so raw addresses never become storage keys."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


IPV6_GROUP_PREFIX = 64


@functools.lru_cache(maxsize=1024)
def client_group(address: str) -> str:
    """The unit counted as one client: an IPv4 address, or the /64 an IPv6 address is in."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # "unknown": no peer address at all
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, IPV6_GROUP_PREFIX), strict=False))
    return str(ip)


@functools.lru_cache(maxsize=1024)
def _address_digest_of(
    peer: str | None, forwarded: tuple[str, ...], trusted: tuple[IPNetwork, ...]
) -> str:
    return hashed(client_group(client_address(peer, forwarded, trusted)))


def _address_digest(request: Request, trusted: tuple[IPNetwork, ...]) -> str:
    # Both key functions need it: worked out once per request, kept in the ASGI scope.
    scope = request.scope
    cached: str | None = scope.get("chatlimit.address")
    if cached is None:
        client = scope.get("client")
        peer = client[0] if client else None
        forwarded = tuple(request.headers.getlist("x-forwarded-for"))
        cached = scope["chatlimit.address"] = _address_digest_of(peer, forwarded, trusted)
    return cached


def make_key_func(trusted: Sequence[IPNetwork]) -> Callable[[Request], str]:
    """slowapi's key_func: hash of client address plus User-Agent (the guide's session key).

    The key is "<address digest>:<user digest>": key_for makes the address digest the
    Redis Cluster hash tag, so a user's keys and their address's ceiling share one slot.
    """
    trusted = tuple(trusted)

    def key_func(request: Request) -> str:
        address = _address_digest(request, trusted)
        return f"{address}:{hashed(address, request.headers.get('user-agent', ''))}"

    return key_func


def make_address_key_func(trusted: Sequence[IPNetwork]) -> Callable[[Request], str]:
    """The per-address ceiling's key_func: the hashed client address (IPv6: its /64)."""
    trusted = tuple(trusted)

    def address_key_func(request: Request) -> str:
        return _address_digest(request, trusted)

    return address_key_func
