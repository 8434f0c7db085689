"""The one settings object: every environment variable chatlimit reads is a field here."""

from __future__ import annotations

import ipaddress
import re
import socket
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from limits import RateLimitItem
from limits.util import parse_many
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .strategies import NAMES as STRATEGY_NAMES
from .strategies import WEIGHTED, StrategyName
from .uri import REDIS_SCHEMES, StorageLocation, mask_uri, parse_storage_uri

FailMode = Literal["open", "closed"]
OnOff = Literal["on", "off"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# What each variable accepts, for the one-line start-up error.
ACCEPTS = {
    "storage_uri": "memory:// or a Redis URI ("
    + ", ".join(f"{s}://" for s in REDIS_SCHEMES)
    + "), "
    "e.g. redis+sentinel://host:26379,host:26380/mymaster or redis+cluster://host:7000,host:7001",
    "rate_limit": "a slowapi limit string such as 3/minute, or several joined by ';' "
    "(3/minute;20/hour)",
    "rate_limit_per_address": "a slowapi limit string such as 30/minute, a multiple of RATE_LIMIT "
    "such as 10x, or off",
    "rate_limit_strategy": ", ".join(STRATEGY_NAMES[:-1]) + " or " + STRATEGY_NAMES[-1],
    "rate_limit_enabled": "true or false",
    "trusted_proxies": "comma-separated IP addresses or CIDR networks, e.g. 127.0.0.1,10.0.0.0/8",
    "instance_name": "a name of 1 to 64 letters, digits, '.', '_' or '-'",
    "replica_names": "comma-separated instance names, e.g. app-1,app-2,app-3",
    "host": "an address to bind, e.g. 127.0.0.1 or 0.0.0.0",
    "port": "a TCP port from 1 to 65535",
    "fail_mode": "open or closed",
    "redis_connect_timeout": "seconds greater than 0 and at most 30, e.g. 0.25",
    "redis_socket_timeout": "seconds greater than 0 and at most 30, e.g. 0.25",
    "max_body_bytes": "a number of bytes from 1024 to 10485760",
    "max_header_bytes": "a number of bytes from 1024 to 1048576",
    "memory_max_keys": "a number of keys from 1000 to 100000000",
    "cors_origins": "comma-separated origins such as https://chat.example.org "
    "(scheme, host, optional port; no paths, no *)",
    "access_log": "true or false",
    "log_level": "debug, info, warning or error",
    "metrics": "on or off",
    "rate_limit_mode": "enforce or shadow",
    "rate_limit_engine": "chatlimit (default) or slowapi (stock slowapi.Limiter, which has no "
    "shadow mode: only with RATE_LIMIT_MODE=enforce)",
    "log_format": "text or json",
    "tier_limits": "tier=limit pairs joined by ';', with a 'free' tier, e.g. "
    "free=3/minute;pro=30/minute (a tier's several limits: free=3/minute;20/hour;pro=30/minute)",
    "api_keys": "key=tier pairs joined by ',' (or one per line in a file given as @/path), each "
    "tier one of TIER_LIMITS, e.g. k1=pro,k2=free",
    "llm_base_url": "empty (the built-in demo model) or an OpenAI-compatible API's base URL, "
    "e.g. http://127.0.0.1:8001/v1 or https://router.huggingface.co/v1",
    "llm_model": "a model name of 1 to 200 characters, e.g. chatlimit-demo",
    "llm_api_key": "the upstream's API key (a secret; empty when the server needs none)",
    "llm_max_tokens": "a number of tokens from 1 to 32768",
    "llm_timeout": "seconds greater than 0 and at most 600, e.g. 30",
    "llm_system_prompt": "a text of at most 4000 characters (empty: none)",
    "llm_context_turns": "a number of earlier turns from 0 to 12 (what /chat accepts)",
    "model_token_delay_ms": "milliseconds from 0 to 5000 between streamed tokens",
    "token_limit": "a slowapi limit string counted in tokens such as 2000/hour, several joined by "
    "';' (2000/hour;10000/day), or off",
    "max_streams": "a number of replies in flight per user at once from 1 to 1000, or off",
    "lease_ttl": "seconds from 1 to 600 that a reply's stream slot outlives its last heartbeat",
    "model_busy": "0, or the Retry-After in seconds (1 to 3600) of the 429 that `chatlimit "
    "model` then answers to every completion",
}

_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MULTIPLE = re.compile(r"(\d{1,6})x")
_OFF = ("", "off", "none", "false")
def parse_tiers(value: str) -> dict[str, str]:
    """"free=3/minute;20/hour;pro=30/minute" -> {"free": "3/minute;20/hour", "pro": ...}: a
    piece without '=' is one more limit of the tier before it."""
    tiers: dict[str, list[str]] = {}
    current = None
    for piece in (p.strip() for p in value.split(";") if p.strip()):
        name, sep, limit = piece.partition("=")
        if sep:
            current = name.strip()
            if not _NAME.fullmatch(current) or current in tiers:
                raise ValueError("a tier name is invalid or repeated")
            tiers[current] = []
            piece = limit
        if current is None:
            raise ValueError("a limit comes before any tier name")
        parse_many(piece)
        tiers[current].append(piece.strip())
    return {name: ";".join(limits) for name, limits in tiers.items()}


def parse_api_keys(value: str) -> dict[str, str]:
    """"k1=pro,k2=free", or "@/path" to a file holding the same (commas or lines)."""
    value = value.strip()
    if value.startswith("@"):
        try:
            value = Path(value[1:]).read_text()
        except OSError:
            raise ValueError("the API_KEYS file cannot be read") from None
    keys: dict[str, str] = {}
    for entry in (e.strip() for e in re.split(r"[,\n]", value) if e.strip()):
        key, sep, tier = entry.rpartition("=")  # a key may end in base64 padding
        if not sep or not key.strip() or any(c.isspace() for c in key.strip()):
            raise ValueError("an entry is not key=tier")
        keys[key.strip()] = tier.strip()
    return keys


DEFAULT_TOKEN_LIMIT = "2000/hour"  # why: the comment on Settings.token_limit
DEFAULT_MAX_STREAMS = 5


class SettingsError(Exception):
    """A configuration error, reported as one line naming the variable and what it accepts."""


class Settings(BaseSettings):
    """chatlimit's configuration. Defaults run with no environment at all."""

    # No env_file on purpose: a stray .env must not change behaviour silently.
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    storage_uri: str = "memory://"
    redis_url: str | None = None
    rate_limit: str = "3/minute"
    # A coarser ceiling per client address (an IPv6 /64 counts as one address), so rotating the
    # User-Agent cannot mint fresh quotas. "10x" is ten times each RATE_LIMIT limit; "off" none.
    rate_limit_per_address: str = "10x"
    rate_limit_strategy: StrategyName = "fixed-window"
    rate_limit_enabled: bool = True
    trusted_proxies: Annotated[tuple[IPNetwork, ...], NoDecode] = (
        ipaddress.ip_network("127.0.0.1/32"),
    )
    instance_name: str = Field(default_factory=socket.gethostname)
    # The names of all replicas behind the same load balancer (scaled mode), for the page's
    # per-replica view through nginx's /replica/<name>/ routes. Empty in single mode.
    replica_names: Annotated[tuple[str, ...], NoDecode] = ()
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    fail_mode: FailMode = "open"
    redis_connect_timeout: float = Field(default=0.25, gt=0, le=30)
    redis_socket_timeout: float = Field(default=0.25, gt=0, le=30)
    max_body_bytes: int = Field(default=65536, ge=1024, le=10 * 1024 * 1024)
    # The request line plus headers; uvicorn's httptools parser has no limit of its own.
    max_header_bytes: int = Field(default=16384, ge=1024, le=1024 * 1024)
    # memory:// counts at most this many keys; the oldest window goes first (README).
    memory_max_keys: int = Field(default=100_000, ge=1000, le=100_000_000)
    # Browser origins allowed to call the API cross-site. Empty: no CORS headers at all.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    access_log: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    # GET /metrics. Off by default: the single container (the Space) has no proxy in front, so
    # its /metrics would be public; the scaled stacks turn it on behind nginx (README).
    metrics: OnOff = "off"
    # shadow: count and report every refusal (metrics, X-RateLimit-Shadow, a log line) but
    # refuse nothing, to try a limit before enforcing it.
    rate_limit_mode: Literal["enforce", "shadow"] = "enforce"
    # Who counts: chatlimit's Limiter, or stock slowapi.Limiter beside it for comparison
    # (README: "Stock slowapi beside it"). The routes and their decorators are the same.
    rate_limit_engine: Literal["chatlimit", "slowapi"] = "chatlimit"
    # Each tier's limits for /chat, used once API_KEYS names a key; anonymous users are free.
    tier_limits: str = "free=3/minute;pro=30/minute"
    # A secret: "key=tier,..." or "@/path/to/file". Empty: no keys, RATE_LIMIT for everyone.
    api_keys: SecretStr = SecretStr("")
    # The model behind /chat (model/backends.py). Empty base URL: the in-process demo model.
    llm_base_url: str = ""
    llm_model: str = Field(default="chatlimit-demo", min_length=1, max_length=200)
    # A secret: SecretStr keeps it out of reprs and errors; nothing logs or shows it.
    llm_api_key: SecretStr = SecretStr("")
    llm_max_tokens: int = Field(default=256, ge=1, le=32768)
    # Both the wait for the first token and the longest silence mid-stream.
    llm_timeout: float = Field(default=30.0, gt=0, le=600)
    llm_system_prompt: str = Field(
        default="You are the assistant of chatlimit, a demo chat whose messages are rate "
        "limited. Answer briefly.",
        max_length=4000,
    )
    # Earlier turns the page sends that are forwarded upstream, at most (the prompt's cost).
    llm_context_turns: int = Field(default=6, ge=0, le=12)
    # The demo model's pace when streaming (in process and `chatlimit model`).
    model_token_delay_ms: int = Field(default=30, ge=0, le=5000)
    # `chatlimit model` only: answer every completion with 429 and this Retry-After (0: never),
    # so the app's 503 upstream_busy can be seen against a real process.
    model_busy: int = Field(default=0, ge=0, le=3600)
    # The token budget per user (README "Token budgets"): each /chat reply reserves its
    # prompt's estimate plus its max_tokens before the model is called, and is charged its
    # usage when it ends. The default is spent by four "tell me a story" messages, so a
    # newcomer meets it within two minutes (three messages a minute). Off by default under
    # moving-window, which keeps one entry per unit and so cannot hold weighted reservations.
    # Empty (or unset) is the default, so a compose file can pass ${TOKEN_LIMIT:-} through.
    token_limit: str = ""
    # Replies in flight per user at once. Above the default RATE_LIMIT (3), so Burst still
    # shows the request limit refusing; low enough that one user cannot hold many of the
    # model's slots. None: off.
    # 0 stands for the default while validating (an empty value); it is never left at 0.
    max_streams: int | None = Field(default=0, ge=0, le=1000)
    # A reply's slot expires this long after its last heartbeat (every third of it), so a
    # replica killed mid-reply frees its users' slots within this many seconds.
    lease_ttl: float = Field(default=15.0, ge=1, le=600)

    @model_validator(mode="before")
    @classmethod
    def _redis_url_is_the_guides_name(cls, data: object) -> object:
        # The guide calls the variable REDIS_URL; STORAGE_URI wins when both are set.
        if isinstance(data, dict):
            lowered = {k.lower(): v for k, v in data.items()}
            if not lowered.get("storage_uri") and lowered.get("redis_url"):
                data = {**data, "storage_uri": lowered["redis_url"]}
        return data

    @field_validator("storage_uri")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        parse_storage_uri(value)  # ValueError names what is wrong
        return value

    @field_validator("rate_limit")
    @classmethod
    def _parsable_limit(cls, value: str) -> str:
        value = value.strip()
        parse_many(value)  # raises ValueError with a clear message
        return value

    @field_validator("rate_limit_per_address")
    @classmethod
    def _parsable_ceiling(cls, value: str) -> str:
        value = value.strip().lower()
        if value in _OFF:
            return "off"
        multiple = _MULTIPLE.fullmatch(value)
        if multiple:
            if int(multiple[1]) < 1:
                raise ValueError("a multiple must be at least 1x")
            return value
        parse_many(value)
        return value

    @field_validator("rate_limit_engine")
    @classmethod
    def _engine_can_do_the_mode(cls, value: str, info: ValidationInfo) -> str:
        if value == "slowapi" and info.data.get("rate_limit_mode") == "shadow":
            raise ValueError("stock slowapi has no shadow mode")
        return value

    @field_validator("tier_limits")
    @classmethod
    def _parsable_tiers(cls, value: str) -> str:
        tiers = parse_tiers(value)
        if "free" not in tiers:
            raise ValueError("no free tier (anonymous users count as free)")
        return value.strip()

    @field_validator("api_keys")
    @classmethod
    def _known_tiers(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        # The messages never repeat a key: the value is a secret.
        tiers = parse_tiers(info.data.get("tier_limits") or "free=3/minute")
        for tier in parse_api_keys(value.get_secret_value()).values():
            if tier not in tiers:
                raise ValueError("a key names a tier that TIER_LIMITS does not define")
        return value

    @field_validator("token_limit")
    @classmethod
    def _parsable_token_limit(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        if value.lower() in _OFF:
            return "off"
        parse_many(value)
        return value

    @field_validator("max_streams", mode="before")
    @classmethod
    def _streams_or_off(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            if value in ("0", "+0", "-0"):
                raise ValueError("at least 1")
            if not value:
                return 0
            if value in _OFF:
                return None
        return value

    @model_validator(mode="after")
    def _tokens_need_a_weighted_strategy(self) -> Settings:
        """The defaults step aside where they cannot be counted; a choice is refused there."""
        chosen_tokens = self.token_limit not in ("", "off")
        chosen_streams = self.max_streams not in (0, None)
        if self.rate_limit_engine == "slowapi":
            if chosen_tokens or chosen_streams:
                name = "TOKEN_LIMIT" if chosen_tokens else "MAX_STREAMS"
                raise ValueError(f"{name} needs RATE_LIMIT_ENGINE=chatlimit (stock slowapi "
                                 f"counts requests only); or set {name}=off")
            object.__setattr__(self, "token_limit", "off")
            object.__setattr__(self, "max_streams", None)
            return self
        if self.max_streams == 0:
            object.__setattr__(self, "max_streams", DEFAULT_MAX_STREAMS)
        if self.rate_limit_strategy not in WEIGHTED:
            if chosen_tokens:
                raise ValueError(
                    f"TOKEN_LIMIT={self.token_limit!r} needs RATE_LIMIT_STRATEGY "
                    f"{' or '.join(WEIGHTED)} ({self.rate_limit_strategy} keeps one entry per "
                    "unit, so it cannot hold a weighted reservation); or set TOKEN_LIMIT=off"
                )
            object.__setattr__(self, "token_limit", "off")
        elif not self.token_limit:
            object.__setattr__(self, "token_limit", DEFAULT_TOKEN_LIMIT)
        return self

    @field_validator("llm_base_url")
    @classmethod
    def _http_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError("not an http(s) URL")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            return tuple(ipaddress.ip_network(p, strict=False) for p in parts)
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(p.strip().rstrip("/") for p in value.split(",") if p.strip())
        return value

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(_ORIGIN.fullmatch(origin) for origin in value):
            raise ValueError("bad origin")
        return value

    @field_validator("replica_names", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("instance_name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("bad instance name")
        return value

    @field_validator("replica_names")
    @classmethod
    def _safe_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(_NAME.fullmatch(name) for name in value):
            raise ValueError("bad replica name")
        return value

    @field_validator("metrics", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> object:
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str):
            lowered = value.strip().lower()
            return {"true": "on", "1": "on", "false": "off", "0": "off"}.get(lowered, lowered)
        return value

    @property
    def metrics_enabled(self) -> bool:
        return self.metrics == "on"

    @property
    def shadow(self) -> bool:
        return self.rate_limit_mode == "shadow"

    @cached_property
    def limits(self) -> list[RateLimitItem]:
        return parse_many(self.rate_limit)

    @cached_property
    def token_limits(self) -> list[RateLimitItem]:
        """TOKEN_LIMIT parsed; empty when it is off."""
        return [] if self.token_limit == "off" else parse_many(self.token_limit)

    @cached_property
    def address_limit(self) -> str | None:
        """RATE_LIMIT_PER_ADDRESS as a limit string, or None when it is off."""
        value = self.rate_limit_per_address
        if value == "off":
            return None
        multiple = _MULTIPLE.fullmatch(value)
        if not multiple:
            return value
        factor = int(multiple[1])
        return ";".join(
            f"{item.amount * factor} per {item.multiples} {item.GRANULARITY.name}"
            for item in self.limits
        )

    @cached_property
    def tiers(self) -> dict[str, str]:
        """TIER_LIMITS as {tier: limit string}."""
        return parse_tiers(self.tier_limits)

    @cached_property
    def api_key_tiers(self) -> dict[str, str]:
        """API_KEYS as {key: tier}; empty when unset. Secret: never logged or shown."""
        return parse_api_keys(self.api_keys.get_secret_value())

    @cached_property
    def storage(self) -> StorageLocation:
        """STORAGE_URI, parsed once."""
        return parse_storage_uri(self.storage_uri)

    @property
    def storage_kind(self) -> Literal["memory", "redis"]:
        return self.storage.kind

    @property
    def storage_uri_masked(self) -> str:
        return mask_uri(self.storage_uri)

    @property
    def scaled(self) -> bool:
        """The one rule for scaled mode: more than one replica behind the load balancer."""
        return len(self.replica_names) > 1


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and overrides), or one SettingsError line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        if not error["loc"]:  # a rule across variables: its message names them
            raise SettingsError(str(error["msg"]).removeprefix("Value error, ")) from None
        field = str(error["loc"][0])
        raw = error.get("input")
        shown = mask_uri(raw) if isinstance(raw, str) else raw
        if field in ("llm_api_key", "api_keys"):
            shown = "***"
        variable = field.upper()
        accepts = ACCEPTS.get(field, "a valid value")
        raise SettingsError(f"{variable}={shown!r} is invalid: accepts {accepts}") from None
