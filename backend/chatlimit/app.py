"""The app factory: create_app(settings) builds one fully wired FastAPI app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from . import __version__
from .limiter import Breaker, Limiter
from .limiter.headers import EXPOSED
from .limiter.identity import make_address_key_func, make_key_func
from .limiter.stock import AnyLimiter, stock_limiter
from .limiter.tiers import Tiers
from .model import model_for
from .observe import Metrics, Observer
from .observe.http import HttpMetrics
from .settings import Settings, load_settings
from .storage import MemoryCounter, counter_for
from .uri import mask_uri
from .web import errors
from .web.middleware import BodyLimit, StandardHeaders
from .web.routes import chat, health, observe, pages

log = logging.getLogger("chatlimit")


def frontend_dir() -> Path:
    """Templates and static files, found from the package, never from the working directory."""
    return Path(str(resources.files("chatlimit.frontend")))


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app, wired: storage -> fail-mode breaker -> limiter -> routes. Nothing else."""
    settings = settings or load_settings()
    strategy = settings.rate_limit_strategy
    counter = counter_for(
        settings.storage,
        strategy,
        connect_timeout=settings.redis_connect_timeout,
        socket_timeout=settings.redis_socket_timeout,
        memory_max_keys=settings.memory_max_keys,
    )
    # FAIL_MODE=open counts in this replica's memory, bounded like memory:// itself.
    fallback = MemoryCounter(strategy, max_keys=settings.memory_max_keys)
    # One registry per app (never prometheus_client's global one): apps built side by side in
    # one process (the tests) each count only their own requests.
    metrics = Metrics(
        instance=settings.instance_name, storage=settings.storage_kind, strategy=strategy,
        mode=settings.rate_limit_mode,
    ) if settings.metrics_enabled else None
    observer = Observer(metrics, shadow=settings.shadow)
    address_key = make_address_key_func(settings.trusted_proxies)
    # API_KEYS: a known key is its own identity and picks its tier's limit (TIER_LIMITS).
    tiers = Tiers(settings.api_key_tiers, settings.tiers, make_key_func(settings.trusted_proxies)
                  ) if settings.api_key_tiers else None
    user_key = tiers.key_func if tiers else make_key_func(settings.trusted_proxies)
    limiter: AnyLimiter = Limiter(
        key_func=user_key,
        strategy=strategy,
        headers_enabled=True,
        enabled=settings.rate_limit_enabled,
        # Keys name the route function ("chat"), not its path.
        key_style="endpoint",
        breaker=Breaker(counter, fallback, settings.fail_mode, observer),
        shadow=settings.shadow,
        observer=observer,
        ceilings=[address_key],
    ) if settings.rate_limit_engine == "chatlimit" else stock_limiter(
        # Stock slowapi beside it: no fail mode, no shadow mode, no metrics of its decisions.
        user_key, settings.storage_uri, strategy, enabled=settings.rate_limit_enabled,
    )
    model = model_for(settings)  # opens no connection until the first message

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "%s serving: engine=%s storage=%s strategy=%s limit=%s enabled=%s mode=%s metrics=%s",
            settings.instance_name, settings.rate_limit_engine, settings.storage_uri_masked,
            settings.rate_limit_strategy,
            settings.rate_limit, settings.rate_limit_enabled, settings.rate_limit_mode,
            settings.metrics, extra={"event": "serving"},
        )
        if settings.storage_kind == "redis" and not await counter.ping():
            # Said now, not first at the first /chat, so whoever starts it sees it.
            log.warning(
                "rate-limit storage %s unreachable at start-up: FAIL_MODE=%s, %s",
                settings.storage_uri_masked, settings.fail_mode,
                "each replica counts alone in its own memory until it answers"
                if settings.fail_mode == "open" else "/chat answers 503 until it answers",
            )
        # The base URL and model name only: LLM_API_KEY is never logged.
        log.info("%s model: %s", settings.instance_name,
                 f"{settings.llm_model} at {mask_uri(settings.llm_base_url)}"
                 if settings.llm_base_url else "the built-in demo model (in process)")
        try:
            yield
        finally:
            await model.aclose()
            await counter.aclose()

    app = FastAPI(
        title="chatlimit",
        version=__version__,
        summary="A chat whose /chat endpoint is rate limited with slowapi.",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry looks up the global providers on every request (about
        # 8% of a request's CPU in `chatlimit bench`); chatlimit ships no exporters.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.limiter = limiter
    app.state.tiers = tiers
    app.state.templates = Jinja2Templates(directory=frontend_dir() / "templates")

    errors.install(app)

    app.include_router(chat.build_router(limiter, settings, model, user_key, address_key, tiers))
    app.include_router(health.router)
    app.include_router(observe.build_router(observer, settings))
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=frontend_dir() / "static"), name="static")

    # Outermost last: headers wrap everything, including 413s from the body cap and 500s
    # (StandardHeaders answers an unhandled exception itself: Starlette's own 500 comes from
    # ServerErrorMiddleware, outside every user middleware, and would miss these headers).
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # closed unless configured: the page itself is same-origin
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            expose_headers=list(EXPOSED),
            max_age=600,
        )
    if metrics is not None:  # just inside StandardHeaders: it sees every status, 500s too
        app.add_middleware(HttpMetrics, metrics=metrics)
    app.add_middleware(StandardHeaders, instance_name=settings.instance_name)
    return app
