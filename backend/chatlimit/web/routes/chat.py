"""POST /chat, the rate-limited endpoint, and GET /api/quota, which reads the same limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from ...limiter import Limiter, decision_of
from ...limiter.budget import Ask, TokenBudget
from ...limiter.headers import raw_headers
from ...limiter.stock import AnyLimiter, standing
from ...limiter.tiers import Tiers
from ...model import ChatModel, Turn, conversation
from ...model.conversation import estimate_tokens
from ...settings import Settings
from ..billing import Bill
from ..deps import require_known_key
from ..schemas import (
    ChatRequest,
    ChatResponse,
    ErrorBody,
    QuotaBody,
    QuotaResponse,
    RateLimitedBody,
    StreamsBody,
    TokensBody,
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


@dataclass(frozen=True, slots=True)
class Prompt:
    """What one message sends upstream, and what it reserves of the token budget."""

    turns: list[Turn]
    max_tokens: int
    ask: Ask | None


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
    # TOKEN_LIMIT and MAX_STREAMS need chatlimit's Limiter (settings turns them off, or
    # refuses them, under RATE_LIMIT_ENGINE=slowapi).
    budget = TokenBudget(
        settings.token_limits if isinstance(limiter, Limiter) else (),
        settings.max_streams if isinstance(limiter, Limiter) else None, settings.lease_ttl,
        strategy=settings.rate_limit_strategy, scope="chat",
        breaker=limiter.breaker if isinstance(limiter, Limiter) else None,
        observer=limiter.observer if isinstance(limiter, Limiter) else None,
    )

    async def prompt_of(request: Request, body: ChatRequest) -> Prompt:
        """The turns forwarded and the reservation, worked out before the limits are checked
        (the decorators below count the reservation in the same call as the request)."""
        turns = conversation(
            body.message, [Turn(t.role, t.content) for t in body.history],
            system_prompt=settings.llm_system_prompt, max_turns=settings.llm_context_turns,
        )
        if not budget.items:
            ask = request.state.token_ask = Ask(0, 0) if budget.active else None
            return Prompt(turns, settings.llm_max_tokens, ask)
        # The oldest turns go first when the whole reply would not fit the budget at all.
        estimate = estimate_tokens(turns)
        first = 1 if turns[0].role == "system" else 0  # the oldest earlier turn
        ceiling = budget.ceiling
        while (ceiling is not None and estimate + settings.llm_max_tokens > ceiling
               and len(turns) > first + 1):
            del turns[first]
            estimate = estimate_tokens(turns)
        ask = request.state.token_ask = budget.ask(estimate, settings.llm_max_tokens)
        return Prompt(turns, ask.max_tokens, ask)

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
    async def chat(
        request: Request, response: Response, body: ChatRequest,
        # A default, not Annotated: prompt_of is local, and annotations here are strings.
        prompt: Prompt = Depends(prompt_of),  # noqa: B008
    ) -> ChatResponse:
        """Send a message and get the model's reply, as JSON or (Accept: text/event-stream)
        streamed; each accepted message costs one request of quota, and its tokens."""
        # The limit has been decided by now (the decorators): a refused request never gets here,
        # so it never reaches the model.
        decision = decision_of(request)
        quota = decision.quota.as_dict() if decision else None
        held = decision.budget if decision else None
        bill = Bill(held.ticket if held else None, prompt.ask)
        token_quota = held.token_quota if held else None
        if bill.ticket is not None:
            bill.ticket.hold()  # the lease's heartbeat, until the bill is settled
        streaming = wants_event_stream(request)
        try:
            # max_tokens is what the reservation covers, never more.
            reply = await model.open(prompt.turns, user=user_key(request),
                                     max_tokens=prompt.max_tokens, stream=streaming)
        except BaseException as exc:
            await bill.failed_before_first_token(exc)
            raise
        if streaming:
            meta: dict[str, Any] = {"served_by": settings.instance_name, "quota": quota}
            reserved = bill.reserved(token_quota.as_dict() if token_quota else None)
            if reserved is not None:
                meta["tokens"] = reserved
            return event_stream(  # type: ignore[return-value]
                reply, meta, response.raw_headers, bill)
        complete = False
        try:
            await reply.collect()  # a cut mid-way raises: 502 upstream_cut
            complete = True
        finally:
            tokens = await bill.reply_ended(reply, complete=complete)
        return ChatResponse(
            reply=reply.text,
            served_by=settings.instance_name,
            quota=quota,  # type: ignore[arg-type]  # validated into a QuotaBody, in Rust
            usage=UsageBody(**reply.settled_usage().as_dict()),
            tokens=TokensBody(**tokens) if tokens else None,
        )

    if isinstance(limiter, Limiter):
        limiter.add_budget(chat, budget)

    @router.get("/api/quota", dependencies=[Depends(require_known_key)],
                responses={401: {"model": ErrorBody}, 503: {"model": ErrorBody}})
    async def quota(request: Request, response: Response) -> QuotaResponse:
        """The caller's current /chat quota, consuming nothing."""
        decision = await standing(limiter, request, chat, "/chat")
        if decision is not None:
            response.raw_headers.extend(raw_headers(decision))
        held = decision.budget if decision else None
        tokens = held.token_quota if held else None
        streams = held.streams if held else None
        return QuotaResponse(
            served_by=settings.instance_name,
            enabled=limiter.enabled,
            quota=QuotaBody(**decision.quota.as_dict()) if decision else None,
            tier=tiers.tier_of(request) if tiers else None,
            tokens=QuotaBody(**tokens.as_dict()) if tokens else None,
            streams=StreamsBody(limit=streams.limit, free=streams.remaining,
                                in_flight=streams.limit - streams.remaining) if streams else None,
            user=user_key(request),
        )

    return router
