"""Request and response bodies: the JSON contract of the HTTP API."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Message = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000, strict=True)
]
# C0 and C1 controls and DEL, except tab, line feed and carriage return.
_CONTROLS = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f"
_CONTROL = re.compile(f"[{_CONTROLS}]")
# The message after trimming, as a JSON Schema pattern: maxLength would count the whitespace
# that trimming removes. 1 to 2000 characters, starting and ending with a visible one.
MESSAGE_PATTERN = (
    f"^\\s*[^\\s{_CONTROLS}](?:[^{_CONTROLS}]{{0,1998}}[^\\s{_CONTROLS}])?\\s*$"
)


def _message_schema(schema: dict[str, Any]) -> None:
    schema.pop("minLength", None)
    schema.pop("maxLength", None)
    schema["pattern"] = MESSAGE_PATTERN


class TurnBody(BaseModel):
    """An earlier turn of the conversation, as the page remembers it."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant"]
    # No maxLength: the server cuts each turn (model/conversation.py), and MAX_BODY_BYTES
    # bounds the whole body anyway.
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: Message = Field(
        description="1 to 2000 characters after trimming, no control characters but tab and "
        "line breaks",
        # What the constraints and the validator enforce, so the OpenAPI schema is exact.
        json_schema_extra=_message_schema,
    )
    history: list[TurnBody] = Field(
        default=[], max_length=12,
        description="earlier turns, oldest first; the server forwards the last "
        "LLM_CONTEXT_TURNS of them",
    )

    @field_validator("message")
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("message must not contain control characters")
        return value


class QuotaBody(BaseModel):
    limit: int
    remaining: int
    reset_after: int = Field(description="seconds until the quota next grows")


class UsageBody(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    reported: bool = Field(description="false when the upstream sent no usage and the "
                           "completion tokens are the chunks counted")


class TokensBody(BaseModel):
    """The token budget's side of one reply: what was reserved before the model was called,
    what the reply was charged when it ended, and the budget's quota after."""

    reserved: int
    charged: int | None = None
    refunded: int | None = None
    settled: bool | None = Field(default=None, description="false when the storage could not "
                                 "be reached to settle: the reservation then stays charged")
    limit: int | None = None
    remaining: int | None = None
    reset_after: int | None = Field(default=None, description="seconds until it next grows")


class StreamsBody(BaseModel):
    limit: int = Field(description="MAX_STREAMS: replies in flight per user at once")
    free: int
    in_flight: int


class ChatResponse(BaseModel):
    reply: str
    served_by: str
    quota: QuotaBody | None
    usage: UsageBody
    tokens: TokensBody | None = None


class ErrorBody(BaseModel):
    error: str
    detail: str


class RateLimitedBody(ErrorBody):
    retry_after: int
    quota: QuotaBody
    exceeded: Literal["requests", "tokens", "streams"] = Field(
        default="requests", description="which limit refused: RATE_LIMIT (or the address "
        "ceiling), TOKEN_LIMIT or MAX_STREAMS")
    tokens: QuotaBody | None = None


class QuotaResponse(BaseModel):
    served_by: str
    enabled: bool
    tier: str | None = Field(default=None, description="the caller's tier, with API_KEYS set")
    quota: QuotaBody | None = Field(description="requests (RATE_LIMIT)")
    tokens: QuotaBody | None = Field(default=None, description="TOKEN_LIMIT, when on")
    streams: StreamsBody | None = Field(default=None, description="MAX_STREAMS, when on")
    user: str | None = Field(default=None, description="your hashed key: the `user` the "
                             "model is sent, and your row in `chatlimit model`'s ledger")


class StorageInfo(BaseModel):
    kind: Literal["memory", "redis"]
    uri: str = Field(description="the storage URI with any password masked")


class ModelInfo(BaseModel):
    kind: Literal["demo", "openai-compatible"]
    name: str
    base_url: str = Field(description="empty for the in-process demo model; any password "
                          "masked. The API key is never shown.")
    max_tokens: int


class InfoResponse(BaseModel):
    instance: str
    mode: Literal["single", "scaled"]
    engine: Literal["chatlimit", "slowapi"]  # RATE_LIMIT_ENGINE: who counts
    replicas: list[str]
    storage: StorageInfo
    strategy: str
    rate_limit: str
    limits: list[str]
    enabled: bool
    fail_mode: str
    model: ModelInfo
    # TIER_LIMITS when API_KEYS is set: tier names and limits, never a key.
    tiers: dict[str, str] | None = None


class StatsSeries(BaseModel):
    allowed: list[int]
    blocked: list[int]
    shadow: list[int]


class StatsResponse(BaseModel):
    """GET /api/stats: /chat decisions on this replica, in buckets, oldest first."""

    served_by: str
    mode: Literal["enforce", "shadow"]
    window_seconds: int
    bucket_seconds: int
    allowed: int
    blocked: int
    shadow: int = Field(description="let through by RATE_LIMIT_MODE=shadow; the limit refused")
    series: StatsSeries


class HealthResponse(BaseModel):
    status: str
    served_by: str
    storage: str | None = None
