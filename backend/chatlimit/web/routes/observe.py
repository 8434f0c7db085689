"""GET /metrics (Prometheus, METRICS=on only) and GET /api/stats (the page's live chart)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ...observe import Metrics, Observer
from ...observe.metrics import CONTENT_TYPE
from ...settings import Settings
from ..schemas import StatsResponse


def build_router(observer: Observer, settings: Settings) -> APIRouter:
    router = APIRouter(tags=["observe"])

    @router.get("/api/stats")
    async def stats() -> StatsResponse:
        """This replica's allowed and blocked requests over the last minute."""
        return StatsResponse(served_by=settings.instance_name, mode=settings.rate_limit_mode,
                             **observer.recent.summary())  # type: ignore[arg-type]

    metrics: Metrics | None = observer.metrics
    if metrics is not None:
        # Not in the schema: it is for Prometheus, reached on the replica itself; nginx's
        # public server answers /metrics with 404 (nginx/nginx.conf).
        @router.get("/metrics", include_in_schema=False)
        async def prometheus() -> Response:
            return Response(metrics.render(), media_type=CONTENT_TYPE)

    return router
