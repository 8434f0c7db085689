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
from slowapi.errors import RateLimitExceeded

from . import __version__, errors
from .counters import StorageUnavailable, build_counter
from .identity import make_key_func
from .limiting import ChatLimiter, rate_limit_exceeded, storage_unavailable
from .middleware import BodyLimit, StandardHeaders
from .routes import chat, health, pages
from .settings import Settings, load_settings

log = logging.getLogger("chatlimit")


def frontend_dir() -> Path:
    """Templates and static files, found from the package, never from the working directory."""
    return Path(str(resources.files("chatlimit.frontend")))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    counter = build_counter(
        settings.storage_uri,
        settings.rate_limit_strategy,
        connect_timeout=settings.redis_connect_timeout,
        socket_timeout=settings.redis_socket_timeout,
        memory_max_keys=settings.memory_max_keys,
    )
    limiter = ChatLimiter(
        key_func=make_key_func(settings.trusted_proxies),
        counter=counter,
        strategy=settings.rate_limit_strategy,
        enabled=settings.rate_limit_enabled,
        fail_mode=settings.fail_mode,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "%s serving: storage=%s strategy=%s limit=%s enabled=%s",
            settings.instance_name, settings.storage_uri_masked, settings.rate_limit_strategy,
            settings.rate_limit, settings.rate_limit_enabled,
        )
        try:
            yield
        finally:
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
    app.state.templates = Jinja2Templates(directory=frontend_dir() / "templates")

    errors.install(app)
    app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded)
    app.add_exception_handler(StorageUnavailable, storage_unavailable)

    app.include_router(chat.build_router(limiter, settings))
    app.include_router(health.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=frontend_dir() / "static"), name="static")

    # Outermost last: headers wrap everything, including 413s from the body cap.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # closed unless configured: the page itself is same-origin
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            expose_headers=["Retry-After", "X-Served-By", "X-RateLimit-Limit",
                            "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit",
                            "RateLimit-Policy", "X-RateLimit-Degraded"],
            max_age=600,
        )
    app.add_middleware(StandardHeaders, instance_name=settings.instance_name)
    return app
