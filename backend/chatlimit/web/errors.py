"""The one error-body builder. Every error is JSON of one stable shape,
{"error": code, "detail": text} (plus retry_after and quota where they apply), and never a
traceback: a 4xx names what was wrong, a 5xx says only that something failed. The 429 and
FAIL_MODE=closed's 503 are built here too, and so are the bytes the middleware and the
uvicorn protocol send before the app is reached."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from slowapi.errors import RateLimitExceeded
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..limiter import decision_of
from ..limiter.headers import header_dict
from ..model import UpstreamError
from ..storage import StorageUnavailable, ceil_seconds

log = logging.getLogger("chatlimit.errors")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    431: "headers_too_large",
}


def error_body(status: int, detail: str, code: str | None = None, **extra: Any) -> dict[str, Any]:
    code = code or _CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_")
    return {"error": code, "detail": detail, **extra}


def error_bytes(status: int, detail: str, code: str | None = None) -> bytes:
    """The body for code that writes to the socket itself (middleware, the uvicorn protocol)."""
    return json.dumps(error_body(status, detail, code)).encode()


def error_response(
    status: int, detail: str, headers: Mapping[str, str] | None = None, code: str | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(error_body(status, detail, code, **extra), status_code=status,
                        headers=headers)


def _describe(error: dict[str, object]) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body")  # type: ignore[attr-defined]
    message = str(error.get("msg", "invalid"))
    return f"{loc}: {message}" if loc else message


async def validation_failed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "Body is not valid JSON.", code="invalid_json")
    # The offending input is not echoed back: it may be huge, or somebody else's secret.
    detail = "; ".join(_describe(e) for e in errors[:5])
    return error_response(422, detail)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No route for {request.method} {request.url.path[:200]}."
    return error_response(exc.status_code, detail, headers=exc.headers)


async def rate_limited(request: Request, exc: Exception) -> Response:
    """429 with the quota, Retry-After and the rate-limit headers."""
    assert isinstance(exc, RateLimitExceeded)
    decision = decision_of(request)
    assert decision is not None
    retry_after = max(1, ceil_seconds(decision.quota.reset_after))
    extra: dict[str, Any] = {"exceeded": "requests"}
    standing = decision.budget
    if standing is not None:
        exceeded = standing.refused or "requests"
        failed = decision.verdict.failed
        if exceeded == "tokens" and failed is not None:
            refusing = standing.tokens[failed - (len(decision.verdict.quotas)
                                                 - len(standing.tokens))]
            retry_after = max(1, ceil_seconds(refusing.reset_after))
        elif exceeded == "streams":
            retry_after = 1  # a slot frees when one of the caller's replies ends
        token_quota = standing.token_quota
        extra = {"exceeded": exceeded,
                 **({"tokens": token_quota.as_dict()} if token_quota else {})}
    return error_response(
        429, f"Rate limit exceeded: {exc.detail}", code="rate_limited",
        headers=header_dict(decision, retry_after=retry_after),
        retry_after=retry_after, quota=decision.quota.as_dict(), **extra,
    )


async def storage_unavailable(request: Request, exc: Exception) -> Response:
    """FAIL_MODE=closed: the storage is down, so nobody is let through unmetered."""
    return error_response(
        503, "Rate limiting is temporarily unavailable; try again shortly.",
        code="storage_unavailable", headers={"Retry-After": "1"}, retry_after=1,
    )


async def upstream_failed(request: Request, exc: Exception) -> Response:
    """The model failed before its first token: 502, 503 (its own 429) or 504, never a 500.
    The request was counted, so the rate-limit headers come along."""
    assert isinstance(exc, UpstreamError)
    decision = decision_of(request)
    headers = header_dict(decision) if decision else {}
    extra: dict[str, Any] = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
        extra["retry_after"] = exc.retry_after
    log.warning("upstream %s: %s", exc.code, exc.detail)
    return error_response(exc.status, exc.detail, code=exc.code, headers=headers, **extra)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_failed)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RateLimitExceeded, rate_limited)
    app.add_exception_handler(StorageUnavailable, storage_unavailable)
    app.add_exception_handler(UpstreamError, upstream_failed)

