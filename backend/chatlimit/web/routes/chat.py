"""POST /chat, the rate-limited endpoint, and GET /api/quota, which reads the same limits."""

from __future__ import annotations

from collections.abc import Callable
from email.message import Message
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from ...limiter import decision_of
from ...limiter.headers import raw_headers
from ...limiter.stock import AnyLimiter, standing
from ...limiter.tiers import Tiers
from ...model import ChatModel, Turn, conversation
from ...settings import Settings
from ..deps import require_known_key
from ..schemas import (
    ChatRequest,
    ChatResponse,
    ErrorBody,
    QuotaBody,
    QuotaResponse,
    RateLimitedBody,
    UsageBody,
)
from ..sse import event_stream, wants_event_stream


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


def build_router(
    limiter: AnyLimiter, settings: Settings, model: ChatModel,
    user_key: Callable[[Request], str], address_key: Callable[[Request], str],
    tiers: Tiers | None = None,
) -> APIRouter:
    router = APIRouter(tags=["chat"])
    # RATE_LIMIT_PER_ADDRESS: one address cannot mint quotas by rotating its User-Agent.
    # slowapi's own decorator on either engine; chatlimit's counts it as a ceiling (app.py).
    # A known API key is exempt from it: it is one client whatever its address.
    per_address: Callable[[Callable[..., Any]], Callable[..., Any]] = (
        limiter.limit(settings.address_limit, key_func=address_key,
                      exempt_when=tiers.keyed if tiers else None)
        if settings.address_limit
        else _unlimited
    )
    # API_KEYS: slowapi's dynamic limit, a callable of the key, picks the caller's tier.
    own_limit: str | Callable[[str], str] = tiers.limit_for if tiers else settings.rate_limit

    @router.post(
        "/chat",
        dependencies=[Depends(require_known_key), Depends(require_json)],
        responses={
            401: {"model": ErrorBody},
            400: {"model": ErrorBody},
            413: {"model": ErrorBody},
            415: {"model": ErrorBody},
            422: {"model": ErrorBody},
            429: {"model": RateLimitedBody},
            502: {"model": ErrorBody},
            503: {"model": ErrorBody},
            504: {"model": ErrorBody},
        },
    )
    @per_address
    @limiter.limit(own_limit)
    async def chat(request: Request, response: Response, body: ChatRequest) -> ChatResponse:
        """Send a message and get the model's reply, as JSON or (Accept: text/event-stream)
        streamed; each accepted message costs one request of quota."""
        # The limit has been decided by now (the decorators): a refused request never gets here,
        # so it never reaches the model.
        decision = decision_of(request)
        quota = decision.quota.as_dict() if decision else None
        turns = conversation(
            body.message, [Turn(t.role, t.content) for t in body.history],
            system_prompt=settings.llm_system_prompt, max_turns=settings.llm_context_turns,
        )
        streaming = wants_event_stream(request)
        reply = await model.open(turns, user=user_key(request),
                                 max_tokens=settings.llm_max_tokens, stream=streaming)
        if streaming:
            meta = {"served_by": settings.instance_name, "quota": quota}
            return event_stream(reply, meta, response.raw_headers)  # type: ignore[return-value]
        await reply.collect()  # a cut mid-way raises: 502 upstream_cut
        return ChatResponse(
            reply=reply.text,
            served_by=settings.instance_name,
            quota=QuotaBody(**quota) if quota else None,
            usage=UsageBody(**reply.settled_usage().as_dict()),
        )

    @router.get("/api/quota", dependencies=[Depends(require_known_key)],
                responses={401: {"model": ErrorBody}, 503: {"model": ErrorBody}})
    async def quota(request: Request, response: Response) -> QuotaResponse:
        """The caller's current /chat quota, consuming nothing."""
        decision = await standing(limiter, request, chat, "/chat")
        if decision is not None:
            response.raw_headers.extend(raw_headers(decision))
        return QuotaResponse(
            served_by=settings.instance_name,
            enabled=limiter.enabled,
            quota=QuotaBody(**decision.quota.as_dict()) if decision else None,
            tier=tiers.tier_of(request) if tiers else None,
        )

    return router
