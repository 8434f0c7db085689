"""Dependencies shared by the routes, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates

from ..limiter.stock import AnyLimiter
from ..limiter.tiers import MalformedAuthorization, Tiers
from ..settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_limiter(request: Request) -> AnyLimiter:
    limiter: AnyLimiter = request.app.state.limiter
    return limiter


async def require_known_key(request: Request) -> None:
    """API_KEYS: a request presenting a key must present a known one (401 otherwise), before
    anything is counted. Without API_KEYS an Authorization header means nothing here."""
    tiers: Tiers | None = request.app.state.tiers
    if tiers is None:
        return
    challenge = {"WWW-Authenticate": "Bearer"}
    try:
        key = tiers.presented(request)
    except MalformedAuthorization as exc:
        raise HTTPException(401, str(exc), headers=challenge) from None
    if key is not None and not tiers.known(key):  # the key itself is never repeated
        raise HTTPException(401, "Unknown API key.", headers=challenge)


def get_templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


SettingsDep = Annotated[Settings, Depends(get_settings)]
LimiterDep = Annotated[AnyLimiter, Depends(get_limiter)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]
