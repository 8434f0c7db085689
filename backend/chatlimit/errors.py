"""Every error is JSON of one stable shape, {"error": code, "detail": text}, and never a
traceback: a 4xx names what was wrong, a 5xx says only that something failed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("chatlimit.errors")

_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    431: "headers_too_large",
}


def error_response(
    status: int, detail: str, headers: Mapping[str, str] | None = None, code: str | None = None
) -> JSONResponse:
    code = code or _CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_")
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


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


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path,
              exc_info=exc)
    return error_response(500, "Internal server error.", code="internal_error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_failed)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
