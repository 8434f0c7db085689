"""Liveness, readiness and what this instance is: /healthz, /readyz, /api/info."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ...limiter.stock import reachable
from ...uri import mask_uri
from ..deps import LimiterDep, SettingsDep
from ..schemas import HealthResponse, InfoResponse, ModelInfo, StorageInfo

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(settings: SettingsDep) -> HealthResponse:
    """The process is alive and serving; never touches storage."""
    return HealthResponse(status="ok", served_by=settings.instance_name)


@router.get("/readyz", responses={503: {"model": HealthResponse}})
async def readyz(settings: SettingsDep, limiter: LimiterDep) -> JSONResponse:
    """Ready when the rate-limit storage answers (bounded by the Redis timeouts)."""
    ok = await reachable(limiter)
    body = HealthResponse(
        status="ready" if ok else "unavailable",
        served_by=settings.instance_name,
        storage=settings.storage_kind,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/api/info")
async def info(settings: SettingsDep) -> InfoResponse:
    """Instance, storage (password masked), strategy and limits. Never a secret."""
    return InfoResponse(
        instance=settings.instance_name,
        mode="scaled" if settings.scaled else "single",
        engine=settings.rate_limit_engine,
        replicas=list(settings.replica_names),
        storage=StorageInfo(kind=settings.storage_kind, uri=settings.storage_uri_masked),
        strategy=settings.rate_limit_strategy,
        rate_limit=settings.rate_limit,
        limits=[str(item) for item in settings.limits],
        enabled=settings.rate_limit_enabled,
        fail_mode=settings.fail_mode,
        tiers=settings.tiers if settings.api_key_tiers else None,
        model=ModelInfo(
            kind="openai-compatible" if settings.llm_base_url else "demo",
            name=settings.llm_model if settings.llm_base_url else "chatlimit-demo",
            base_url=mask_uri(settings.llm_base_url),
            max_tokens=settings.llm_max_tokens,
        ),
    )
