"""The application factory: one FastAPI app for every HTTP surface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from meterhub.api import counter, meters
from meterhub.api.errors import install_error_handlers
from meterhub.collector.service import Collector
from meterhub.db import make_engine
from meterhub.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """Build the app; the collector runs in its lifespan when ``collector_enabled``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        collector = Collector(settings) if settings.collector_enabled else None
        if collector:
            await collector.start()
        try:
            yield
        finally:
            if collector:
                await collector.stop()
            app.state.engine.dispose()

    app = FastAPI(
        title="meterhub",
        summary="Meter readings as time series, served and billed.",
        version="0.1.0",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url)
    install_error_handlers(app)
    app.include_router(counter.router)
    app.include_router(meters.router)
    return app
