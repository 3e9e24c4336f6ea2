"""Serving the app with uvicorn (httptools parser, uvloop), after bringing the schema up.

With ``workers`` > 1 the parent binds one listening socket and hands it to that many
worker processes, which the kernel balances connections between. Only worker 0 runs the
collector, the billing scheduler and the compactor; the others serve HTTP alone.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Sequence
from contextlib import suppress
from functools import partial
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from meterhub.api.app import create_app
from meterhub.migrations import upgrade
from meterhub.settings import Settings

log = logging.getLogger("meterhub.server")

STOP_GRACE_S = 60.0
"""How long a worker may take to stop (requests in flight, then the collector's flush)."""


def serve(settings: Settings, *, host: str, port: int) -> int:
    """Migrate, then serve until Ctrl-C or SIGTERM (the collector flushes before exit).

    Returns the exit status: 1 if a worker process ended by itself, else 0.
    """
    upgrade(settings.database_url)
    if settings.workers == 1:
        with suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once it has stopped
            _Server(_config(settings, host, port)).run()
        return 0
    http_only = {"collector_enabled": False, "scheduler_enabled": False, "compact_enabled": False}
    configs = [  # uvicorn logs through the root logger, so each line names its worker
        _config(settings if n == 0 else settings.model_copy(update=http_only), host, port, None)
        for n in range(settings.workers)
    ]
    sock = configs[0].bind_socket()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(n, config, sock), name=f"meterhub-worker-{n}")
        for n, config in enumerate(configs)
    ]
    for worker in workers:
        worker.start()
    return _supervise(workers)


def _config(
    settings: Settings, host: str, port: int, log_config: dict[str, Any] | None = LOGGING_CONFIG
) -> uvicorn.Config:
    """The server's configuration; the app is built where it is served (``factory``)."""
    return uvicorn.Config(
        partial(create_app, settings),
        factory=True,
        host=host,
        port=port,
        http="httptools",
        loop="uvloop",
        log_config=log_config,
        log_level="info",
        timeout_graceful_shutdown=10,
    )


class _Server(uvicorn.Server):
    """Once the app has started, everything it holds then (modules, routes, compiled
    statements, pydantic's and SQLAlchemy's structures: objects that live as long as the
    process) leaves the garbage collector's sight (``gc.freeze``). Requests in flight keep
    their objects alive through young collections, and so many survivors soon call for a
    full collection: over that whole heap one took about 90 ms, twice a second at 3,000
    requests a second, stalling every request meanwhile (a fifth of the time, and the
    slowest answers); over what came after startup it takes a millisecond or so."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        gc.freeze()


def _worker(number: int, config: uvicorn.Config, sock: socket.socket) -> None:
    """Entry point of a worker process: serve on the shared socket until SIGTERM, which
    the parent sends, and which the worker sends itself if the parent disappears."""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s worker{number} %(levelname)s %(name)s %(message)s"
    )
    config.configure_logging()
    parent = multiprocessing.parent_process()
    assert parent is not None
    threading.Thread(target=_stop_with, args=(parent,), daemon=True).start()
    _Server(config).run(sockets=[sock])


def _stop_with(parent: BaseProcess) -> None:
    parent.join()
    os.kill(os.getpid(), signal.SIGTERM)


def _supervise(workers: Sequence[BaseProcess]) -> int:
    """Wait for SIGINT/SIGTERM or for a worker to end, then stop every worker."""
    asked = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: asked.set())
    ended: Sequence[object] = ()
    while not (asked.is_set() or ended):
        ended = wait([worker.sentinel for worker in workers], timeout=0.5)
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(STOP_GRACE_S)
        if worker.is_alive():
            log.error("%s did not stop in %.0f s; killing it", worker.name, STOP_GRACE_S)
            worker.kill()
            worker.join()
    if asked.is_set():
        return 0
    for worker in workers:
        if worker.sentinel in ended:
            log.error("%s ended (exit code %s): stopped the others", worker.name, worker.exitcode)
    return 1
