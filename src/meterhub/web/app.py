"""Installing the dashboard into the app: its pages, its static files, the API docs page,
and the headers every answer carries (timing and browser security policies)."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterhub.web import (
    alerts,
    billing_tasks,
    login,
    meter_detail,
    meter_models,
    meters,
    overview,
    projects,
    sources,
    task_form,
)
from meterhub.web.templating import ENVIRONMENT

STATIC = Path(__file__).parent / "static"
PAGES = (
    login,
    overview,
    meters,
    meter_detail,
    meter_models,
    sources,
    projects,
    task_form,
    billing_tasks,
    alerts,
)


def install_dashboard(app: FastAPI) -> None:
    """Pages under ``/``, assets under ``/static`` (no CDN), Swagger UI at ``/docs``."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for page in PAGES:
        app.include_router(page.router)
    docs_page = ENVIRONMENT.get_template("docs.html").render(openapi_url=app.openapi_url)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page)

    app.add_middleware(ResponseHeaders)


POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""Pages run only the package's own scripts (no inline script, event handler attribute,
``javascript:`` link or eval), load nothing from elsewhere, post forms only here, and are
never framed. The API docs page runs Swagger UI under it too: its scripts are the
package's files, its initialisation ``static/docs.js``, its icons ``data:`` images."""
SECURITY_HEADERS = [
    (b"content-security-policy", POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class ResponseHeaders:
    """Adds to every answer ``Server-Timing: app;dur=<ms>`` (time to the response head) and
    the security headers (``SECURITY_HEADERS``: ``Content-Security-Policy``,
    ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``,
    ``X-Frame-Options: DENY``), built once: an answer only appends them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def headed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                headers = [
                    *message.get("headers", []),
                    *SECURITY_HEADERS,
                    (b"server-timing", f"app;dur={took:.1f}".encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, headed)
