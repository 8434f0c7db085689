"""Tiers through slowapi's dynamic limits: an API key's tier picks the limit of /chat.

slowapi's own mechanism, so both engines run it: the route's limit is a callable of the key
(`limit_for(key)`), and the key function gives a known API key its own identity, hashed, so
neither the key nor its hash's source ever becomes a storage key. No key keeps the
address-plus-User-Agent identity, and the `free` tier. The web layer refuses an unknown key
with 401 before anything is counted (`presented`, `known`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.requests import Request

from .identity import hashed

ANONYMOUS_TIER = "free"
KEYED = "key"  # the identity of a known key: "<digest>:key"


class MalformedAuthorization(ValueError):
    """An Authorization header that is not `Bearer <key>`."""


class Tiers:
    def __init__(
        self, keys: Mapping[str, str], limits: Mapping[str, str],
        user_key: Callable[[Request], str],
    ) -> None:
        # The keys themselves stay in this process's memory only, as digests.
        self._tier_of_digest = {self.digest(key): tier for key, tier in keys.items()}
        self.limits = dict(limits)
        self._user_key = user_key

    @staticmethod
    def digest(key: str) -> str:
        return hashed("api-key", key)

    @staticmethod
    def presented(request: Request) -> str | None:
        """The API key the request presents, None without an Authorization header."""
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, key = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise MalformedAuthorization("Authorization must be 'Bearer <API key>'.")
        return key.strip()

    def known(self, key: str) -> bool:
        return self.digest(key) in self._tier_of_digest

    def keyed(self, request: Request) -> bool:
        """The request presents a known key (checked before the limits run)."""
        try:
            key = self.presented(request)
        except MalformedAuthorization:
            return False
        return key is not None and self.known(key)

    def key_func(self, request: Request) -> str:
        """slowapi's key function: a known key's digest, else the address and User-Agent."""
        key = self.presented(request) if "authorization" in request.headers else None
        if key is not None and self.known(key):
            return f"{self.digest(key)}:{KEYED}"
        return self._user_key(request)

    def tier_for(self, identity: str) -> str:
        digest, _, rest = identity.partition(":")
        if rest == KEYED:
            return self._tier_of_digest.get(digest, ANONYMOUS_TIER)
        return ANONYMOUS_TIER

    def limit_for(self, key: str) -> str:
        """slowapi's dynamic limit, called with the key function's answer."""
        return self.limits[self.tier_for(key)]

    def tier_of(self, request: Request) -> str:
        return self.tier_for(self.key_func(request))
