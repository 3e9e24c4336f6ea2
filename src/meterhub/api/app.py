"""The application factory: one FastAPI app for every HTTP surface."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from meterhub.alerts.evaluator import AlertEvaluator
from meterhub.alerts.notify import Deliverer
from meterhub.api import (
    alerts,
    auth,
    counter,
    meter_models,
    meters,
    projects,
    scheduler,
    smt,
    sources,
    workers,
)
from meterhub.api.deps import admin_user, ingest_access
from meterhub.api.errors import install_error_handlers
from meterhub.api.limits import BodyLimit
from meterhub.api.openapi import install_openapi
from meterhub.billing.scheduler import BillingScheduler
from meterhub.collector.publisher import Publisher
from meterhub.collector.service import Collector
from meterhub.db import REQUEST_CONNECTIONS, make_engine
from meterhub.leadership import Duties, lead
from meterhub.mqtt.supervisor import Supervisor
from meterhub.registry.throttle import Throttle
from meterhub.settings import Settings
from meterhub.storage.cache import CACHE
from meterhub.storage.compactor import Compactor
from meterhub.times import DAY_US
from meterhub.web.app import install_dashboard


def create_app(settings: Settings) -> FastAPI:
    """Build the app; the collector, the billing scheduler and compaction run in its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        polling_here = settings.collector_enabled and settings.broker_url is None
        collector = Collector(settings) if polling_here else None
        if collector:
            await collector.start()
        stop = asyncio.Event()
        duties = _leader_duties(settings, app.state.engine)
        retry = settings.leader_retry
        leading = duties and asyncio.create_task(lead(settings.database_url, duties, stop, retry))
        try:
            yield
        finally:
            stop.set()
            if leading:
                await leading
            if collector:
                await collector.stop()
            app.state.engine.dispose()

    app = FastAPI(
        title="meterhub",
        summary="Meter readings as time series, served and billed.",
        version="0.1.0",
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url)
    CACHE.resize(settings.cache_mb << 20)
    app.state.connection_slots = asyncio.Semaphore(REQUEST_CONNECTIONS)
    app.state.throttle = Throttle(app.state.engine, settings)
    install_error_handlers(app)
    install_openapi(app)
    # surfaces without a user concept: any valid token, or none with open ingest
    counter.add_counter_data(app.router)  # on the app itself, first (see there)
    app.include_router(counter.router, dependencies=[Depends(ingest_access)])
    app.include_router(smt.router, dependencies=[Depends(ingest_access)])
    app.include_router(sources.router, dependencies=[Depends(admin_user)])
    # routers whose routes check the user (and its projects) themselves
    for router in (
        alerts.router,
        auth.router,
        meters.router,
        meter_models.router,
        projects.router,
        scheduler.router,
        workers.router,
    ):
        app.include_router(router)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    install_dashboard(app)  # its response headers wrap every answer, BodyLimit's too
    app.add_middleware(CollapseLeadingSlashes)
    return app


def _leader_duties(settings: Settings, engine: Engine) -> Duties | None:
    """What the leading server does (``leadership``): fire billing tasks, compact, subscribe
    to the brokers of MQTT sources, evaluate alert rules and deliver their notifications,
    and with a Celery broker publish the polling tasks (and send billing runs out in
    chunks); ``None`` for a server that does none of it (``--workers`` beyond the first),
    which never leads."""
    publishing = settings.broker_url is not None and settings.collector_enabled
    enabled = (
        settings.scheduler_enabled,
        settings.compact_enabled,
        settings.mqtt_enabled,
        settings.alerts_enabled,
    )
    if not (any(enabled) or publishing):
        return None

    async def duties(done: asyncio.Event) -> None:
        send_shard = send_chunk = None
        if settings.broker_url is not None:
            from meterhub import celery_app

            celery_app.configure(celery_app.app, settings)
            send_shard, send_chunk = celery_app.send_shard, celery_app.send_bill_chunk
        jobs = []
        if settings.scheduler_enabled:
            billing = BillingScheduler(
                engine,
                interval=settings.scheduler_interval,
                send_chunk=send_chunk,
                chunk_size=settings.bill_chunk_size,
            )
            jobs.append(billing.run(done))
        if settings.compact_enabled:
            retain = settings.raw_retention_days
            compactor = Compactor(
                engine,
                settle_us=round(settings.compact_after * DAY_US),
                retain_us=None if retain is None else round(retain * DAY_US),
            )
            jobs.append(compactor.run(done))
        if settings.mqtt_enabled:
            jobs.append(Supervisor(engine, settings).run(done))
        if settings.alerts_enabled:
            jobs.append(AlertEvaluator(engine, interval=settings.alert_interval).run(done))
            jobs.append(Deliverer(engine, settings).run(done))
        if send_shard is not None and publishing:
            jobs.append(Publisher(settings, engine, send_shard).run(done))
        await asyncio.gather(*jobs)

    return duties


class CollapseLeadingSlashes:
    """``//smt/data/set`` (a base URL ending in ``/``) is served as ``/smt/data/set``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("//"):
            scope = {**scope, "path": "/" + scope["path"].lstrip("/")}
        await self.app(scope, receive, send)
