"""GET /: the chat page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..deps import SettingsDep, TemplatesDep

router = APIRouter(tags=["pages"])


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request, settings: SettingsDep, templates: TemplatesDep) -> HTMLResponse:
    """The chat page."""
    return templates.TemplateResponse(
        request,
        "index.html",
        {"instance": settings.instance_name, "rate_limit": settings.rate_limit},
    )
