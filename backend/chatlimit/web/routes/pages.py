"""GET /: the chat page. The server renders the mode banner; chat.js keeps it current."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ... import __version__
from ..deps import SettingsDep, TemplatesDep

router = APIRouter(tags=["pages"])


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(request: Request, settings: SettingsDep, templates: TemplatesDep) -> HTMLResponse:
    """The chat page."""
    scaled = settings.scaled
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "version": __version__,
            "instance": settings.instance_name,
            "mode": "scaled" if scaled else "single",
            "replica_count": len(settings.replica_names),
            "storage_kind": settings.storage_kind,
            "strategy": settings.rate_limit_strategy,
            "engine": settings.rate_limit_engine,
            # Spelled as /api/info spells it ("3 per 1 minute"), so chat.js changes nothing.
            "limits": " + ".join(str(item) for item in settings.limits),
            "enabled": settings.rate_limit_enabled,
            "tiers": bool(settings.api_key_tiers),
        },
        # The page must never be served stale: its banner describes this deployment.
        headers={"Cache-Control": "no-store"},
    )
