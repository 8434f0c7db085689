"""POST /chat, the rate-limited endpoint, and GET /api/quota, which reads the same limits."""

from __future__ import annotations

from collections.abc import Callable
from email.message import Message
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from ...bot import reply_to
from ...limiter import ChatLimiter, decision_of
from ...limiter.headers import raw_headers
from ...limiter.identity import make_address_key_func
from ...settings import Settings
from ..schemas import (
    ChatRequest,
    ChatResponse,
    ErrorBody,
    QuotaBody,
    QuotaResponse,
    RateLimitedBody,
)


async def require_json(request: Request) -> None:
    """Refuse non-JSON bodies with 415 rather than a confusing validation error."""
    # async: FastAPI runs a plain `def` dependency in a worker thread, a hop per request.
    content_type = request.headers.get("content-type", "")
    if content_type == "application/json":
        return
    parsed = Message()
    parsed["content-type"] = content_type
    subtype = parsed.get_content_subtype()
    if parsed.get_content_maintype() != "application" or not (
        subtype == "json" or subtype.endswith("+json")
    ):
        raise HTTPException(415, "Send the message as JSON: Content-Type: application/json.")


def _unlimited(func: Callable[..., Any]) -> Callable[..., Any]:
    return func


def build_router(limiter: ChatLimiter, settings: Settings) -> APIRouter:
    router = APIRouter(tags=["chat"])
    # RATE_LIMIT_PER_ADDRESS: one address cannot mint quotas by rotating its User-Agent.
    per_address: Callable[[Callable[..., Any]], Callable[..., Any]] = (
        limiter.ceiling(
            settings.address_limit, key_func=make_address_key_func(settings.trusted_proxies)
        )
        if settings.address_limit
        else _unlimited
    )

    @router.post(
        "/chat",
        dependencies=[Depends(require_json)],
        responses={
            400: {"model": ErrorBody},
            413: {"model": ErrorBody},
            415: {"model": ErrorBody},
            422: {"model": ErrorBody},
            429: {"model": RateLimitedBody},
            503: {"model": ErrorBody},
        },
    )
    @per_address
    @limiter.limit(settings.rate_limit)
    async def chat(request: Request, response: Response, body: ChatRequest) -> ChatResponse:
        """Send a message and get a reply; each accepted message costs one request of quota."""
        decision = decision_of(request)
        return ChatResponse(
            reply=reply_to(body.message),
            served_by=settings.instance_name,
            quota=QuotaBody(**decision.quota.as_dict()) if decision else None,
        )

    @router.get("/api/quota", responses={503: {"model": ErrorBody}})
    async def quota(request: Request, response: Response) -> QuotaResponse:
        """The caller's current /chat quota, consuming nothing."""
        decision = await limiter.quota(request, chat)
        if decision is not None:
            response.raw_headers.extend(raw_headers(decision))
        return QuotaResponse(
            served_by=settings.instance_name,
            enabled=limiter.enabled,
            quota=QuotaBody(**decision.quota.as_dict()) if decision else None,
        )

    return router
