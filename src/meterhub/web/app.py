"""Installing the dashboard into the app: its pages, its static files and the API docs page."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterhub.web import (
    billing_tasks,
    login,
    meter_detail,
    meters,
    overview,
    projects,
    sources,
    task_form,
)

STATIC = Path(__file__).parent / "static"
PAGES = (login, overview, meters, meter_detail, sources, projects, task_form, billing_tasks)


def install_dashboard(app: FastAPI) -> None:
    """Pages under ``/``, assets under ``/static`` (no CDN), Swagger UI at ``/docs``."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for page in PAGES:
        app.include_router(page.router)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="meterhub API",
            swagger_js_url="/static/vendor/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    app.add_middleware(ServerTiming)


class ServerTiming:
    """Adds ``Server-Timing: app;dur=<ms>`` (time to the response head) to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                headers = [
                    *message.get("headers", []),
                    (b"server-timing", f"app;dur={took:.1f}".encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed)
