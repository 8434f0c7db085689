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
import socket
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.types import Scope

from ..settings import IPNetwork

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# The parsing and hashing below run for every request. IPv4 hops take a fast path (the C
# parser socket.inet_pton, strict: dotted decimal only, so its input is already canonical, and
# trust as integer masks): at a million users per window every request is a new address, and
# ipaddress objects cost about ten times more (bench users curve, docs/benchmarks.md). The
# rest (IPv6, ports, brackets) is cached. The caches stay small because their keys are
# client-chosen strings of up to MAX_HEADER_BYTES: 1024 entries bound them to a few MB however
# hostile the headers, and a miss costs only the work it would have saved.
_AF_INET = socket.AF_INET
_inet_pton = socket.inet_pton


def _v4(value: str) -> int | None:
    try:
        return int.from_bytes(_inet_pton(_AF_INET, value), "big")
    except (OSError, ValueError):
        return None


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


class Trust:
    """TRUSTED_PROXIES, worked out once: IPv4 networks as integer masks for the fast path.
    Hashed by identity, so the caches below never hash the networks themselves."""

    __slots__ = ("networks", "v4")

    def __init__(self, networks: Sequence[IPNetwork]) -> None:
        self.networks = tuple(networks)
        self.v4 = tuple(
            (int(n.network_address), int(n.netmask)) for n in self.networks if n.version == 4
        )

    def hop(self, raw: str) -> tuple[str, bool] | None:
        """One hop as (the address, canonical, and whether it is a trusted proxy), or None
        when it is no address at all."""
        value = raw.strip()
        try:
            number = int.from_bytes(_inet_pton(_AF_INET, value), "big")
        except (OSError, ValueError):
            return _slow_hop(value, self)
        for network, mask in self.v4:  # a loop: any() over a generator costs twice as much
            if number & mask == network:
                return value, True
        return value, False


@functools.lru_cache(maxsize=1024)
def _slow_hop(value: str, trust: Trust) -> tuple[str, bool] | None:
    address = _parse(value)
    if address is None:
        return None
    return str(address), any(address in network for network in trust.networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork] | Trust
) -> str:
    """The address to rate limit.

    X-Forwarded-For is only believed when the direct peer is a trusted proxy. Walking it from the
    right, each trusted hop is skipped and the first untrusted hop is the client: the left-most
    values are whatever the client chose to write, so they never decide the identity.
    """
    trust = trusted if isinstance(trusted, Trust) else Trust(trusted)
    first = trust.hop(peer) if peer else None
    if first is None:
        return peer or "unknown"
    current, is_trusted = first
    if not is_trusted:
        return current
    for header in reversed(forwarded_for):
        for raw in reversed(header.split(",")):
            hop = trust.hop(raw)
            if hop is None:
                # Garbage in the chain: stop at the last hop we could verify.
                return current
            current, is_trusted = hop
            if not is_trusted:
                return current
    return current


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


hashed = functools.lru_cache(maxsize=1024)(_digest)
hashed.__doc__ = "A short, stable digest, so raw addresses never become storage keys."


IPV6_GROUP_PREFIX = 64


def client_group(address: str) -> str:
    """The unit counted as one client: an IPv4 address, or the /64 an IPv6 address is in."""
    if _v4(address) is not None:
        return address
    return _v6_group(address)


@functools.lru_cache(maxsize=1024)
def _v6_group(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # "unknown": no peer address at all
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, IPV6_GROUP_PREFIX), strict=False))
    return str(ip)


@functools.lru_cache(maxsize=1024)
def _address_digest_of(peer: str | None, forwarded: tuple[str, ...], trust: Trust) -> str:
    address = client_address(peer, forwarded, trust)
    # client_group() for what client_address() answers: a canonical IPv4 address (dotted
    # decimal, no colon), an IPv6 address, or a peer that is no address at all, kept as is.
    return hashed(address if ":" not in address else _v6_group(address))


@functools.lru_cache(maxsize=1024)
def _user_identity(address: str, agent: str) -> str:
    return f"{address}:{_digest(address, agent)}"  # hashed(), without a second cache


def _who(scope: Scope, trusted: Trust) -> tuple[str, str]:
    """The request's address digest and User-Agent. Both key functions need them: worked out
    once per request, from one pass over the raw headers (Starlette's Headers lookups walk
    them once per name), and kept in the ASGI scope."""
    who: tuple[str, str] | None = scope.get("chatlimit.who")
    if who is None:
        agent = None
        forwarded = []
        for name, value in scope["headers"]:
            if name == b"user-agent":
                if agent is None:  # the first, as request.headers["user-agent"] reads it
                    agent = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                forwarded.append(value.decode("latin-1"))
        client = scope.get("client")
        address = _address_digest_of(client[0] if client else None, tuple(forwarded), trusted)
        who = scope["chatlimit.who"] = (address, agent or "")
    return who


def make_key_func(trusted: Sequence[IPNetwork]) -> Callable[[Request], str]:
    """slowapi's key_func: hash of client address plus User-Agent (the guide's session key).

    The key is "<address digest>:<user digest>": key_for makes the address digest the
    Redis Cluster hash tag, so a user's keys and their address's ceiling share one slot.
    """
    trust = Trust(trusted)

    def key_func(request: Request) -> str:
        return _user_identity(*_who(request.scope, trust))

    return key_func


def make_address_key_func(trusted: Sequence[IPNetwork]) -> Callable[[Request], str]:
    """The per-address ceiling's key_func: the hashed client address (IPv6: its /64)."""
    trust = Trust(trusted)

    def address_key_func(request: Request) -> str:
        return _who(request.scope, trust)[0]

    return address_key_func
