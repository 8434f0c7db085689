"""STORAGE_URI, parsed once: which storage, where its servers are, and how to log in.

URIs follow the `limits` library (what slowapi accepts), so a URI that works there works here:

    memory://
    redis://[user:password@]host:port[/db]          rediss://...  (TLS)
    redis+unix://[user:password@]/path/redis.sock[?db=0]
    redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]
    redis+cluster://[user:password@]host:port[,host:port...]

As in `limits`, the user and password authenticate at the sentinels and at the data nodes
alike; `?sentinel_password=` (and `sentinel_username=`) set the sentinels' own when they
differ. The `/db` after the service name is chatlimit's addition (limits reads only the name).
A leaf module: settings validates with it, storage connects with it.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

REDIS_SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster")
STORAGE_SCHEMES = ("memory", *REDIS_SCHEMES)

# The password runs to the last '@': a raw '@' or '/' in it must not leave a piece unmasked
# (over-masking an '@' later in the URI is the safe error).
_USERINFO = re.compile(r"(?P<scheme>[a-z0-9+.-]+://)(?P<user>[^:@/]*):(?P<password>.*)@", re.I)
_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:password|sentinel_password)=)[^&]*", re.I)


def mask_uri(uri: str) -> str:
    """The URI with any password replaced by ***, safe for logs, pages and /api/info."""
    masked = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", uri)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}***", masked)


@dataclass(frozen=True)
class StorageLocation:
    """What a storage URI names."""

    uri: str
    scheme: str
    hosts: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = None
    path: str = "/"
    query: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> Literal["memory", "redis"]:
        return "memory" if self.scheme == "memory" else "redis"

    @property
    def masked(self) -> str:
        return mask_uri(self.uri)

    @property
    def db(self) -> int:
        """The database of a plain redis:// (/db or ?db=) or redis+unix:// (?db=) URI."""
        if self.scheme == "redis+unix":
            return int(self.query.get("db", "0"))
        path = self.path.strip("/")
        return int(path) if path.isdigit() else int(self.query.get("db", "0"))

    def sentinel_service(self) -> tuple[str, int]:
        """The service name and database of a redis+sentinel URI's path (/mymaster[/db])."""
        parts = [p for p in self.path.split("/") if p]
        if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise ValueError("expected /service_name or /service_name/db after the sentinels")
        return parts[0], int(parts[1]) if len(parts) == 2 else 0


def parse_storage_uri(uri: str) -> StorageLocation:
    """Split a (possibly multi-host) storage URI; ValueError names what is wrong."""
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in STORAGE_SCHEMES:
        raise ValueError("unsupported storage scheme")
    if scheme == "memory":
        return StorageLocation(uri=uri, scheme=scheme)
    if not rest:
        raise ValueError("missing host")
    netloc, _, tail = rest.partition("/")
    path, _, query = ("/" + tail).partition("?")
    if "?" in netloc:  # redis+cluster://host:port?x=y
        netloc, _, query = netloc.partition("?")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) if colon else None
    hosts = []
    for part in filter(None, (p.strip() for p in hostlist.split(","))):
        parsed = urllib.parse.urlsplit(f"//{part}")
        if parsed.hostname is None:
            raise ValueError(f"missing host in {part!r}")
        port = parsed.port
        if port is None:
            if scheme in ("redis+sentinel", "redis+cluster"):
                raise ValueError(f"missing host or port in {part!r}")
            port = 6379
        hosts.append((parsed.hostname, port))
    location = StorageLocation(
        uri=uri,
        scheme=scheme,
        hosts=tuple(hosts),
        username=username,
        password=password,
        path=path,
        query={k: v[-1] for k, v in urllib.parse.parse_qs(query).items()},
    )
    if scheme in ("redis+sentinel", "redis+cluster") and not hosts:
        raise ValueError("expected host:port[,host:port...]")
    if scheme == "redis+sentinel":
        location.sentinel_service()
    return location
