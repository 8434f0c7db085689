"""Storage keys: chatlimit:{address}:user:fw:chat:3/1minute.

The strategy's tag is part of the key, so switching strategies on a shared Redis never meets a
key of the wrong type. The braces hold the address digest only, so a user's keys and their
address's ceiling share one Redis Cluster slot and one script can count them together.
"""

from __future__ import annotations

from limits import RateLimitItem

from ..strategies import strategy as lookup


def key_suffix(strategy: str, scope: str, item: RateLimitItem) -> str:
    """The part of a storage key that depends on the route and limit only: "fw:chat:3/1minute"."""
    tag = lookup(strategy).tag
    return f"{tag}:{scope}:{item.amount}/{item.multiples}{item.GRANULARITY.name}"


def key_for(identity: str, suffix: str) -> str:
    """identity "address:user" -> chatlimit:{address}:user:<suffix>; "address" alone (the
    per-address ceiling) -> chatlimit:{address}:<suffix>."""
    slot, _, rest = identity.partition(":")
    return f"chatlimit:{{{slot}}}:{rest}:{suffix}" if rest else f"chatlimit:{{{slot}}}:{suffix}"

