"""Request and response bodies: the JSON contract of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Message = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000, strict=True)
]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: Message = Field(description="1 to 2000 characters after trimming")

    @field_validator("message")
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        if any(ord(ch) < 32 and ch not in "\n\t\r" for ch in value):
            raise ValueError("message must not contain control characters")
        return value


class QuotaBody(BaseModel):
    limit: int
    remaining: int
    reset_after: int = Field(description="seconds until the quota next grows")


class ChatResponse(BaseModel):
    reply: str
    served_by: str
    quota: QuotaBody | None


class ErrorBody(BaseModel):
    error: str
    detail: str


class RateLimitedBody(ErrorBody):
    retry_after: int
    quota: QuotaBody


class QuotaResponse(BaseModel):
    served_by: str
    enabled: bool
    quota: QuotaBody | None


class StorageInfo(BaseModel):
    kind: Literal["memory", "redis"]
    uri: str = Field(description="the storage URI with any password masked")


class InfoResponse(BaseModel):
    instance: str
    mode: Literal["single", "scaled"]
    replicas: list[str]
    storage: StorageInfo
    strategy: str
    rate_limit: str
    limits: list[str]
    enabled: bool
    fail_mode: str


class HealthResponse(BaseModel):
    status: str
    served_by: str
    storage: str | None = None
