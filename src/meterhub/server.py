"""Serving the app with uvicorn (httptools parser, uvloop), after bringing the schema up."""

from __future__ import annotations

import uvicorn

from meterhub.api.app import create_app
from meterhub.migrations import upgrade
from meterhub.settings import Settings


def serve(settings: Settings, *, host: str, port: int) -> None:
    """Migrate, then serve until Ctrl-C or SIGTERM (the collector flushes before exit)."""
    upgrade(settings.database_url)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        http="httptools",
        loop="uvloop",
        log_level="info",
        timeout_graceful_shutdown=10,
    )
