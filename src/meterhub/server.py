"""Serving the app with uvicorn (httptools parser, uvloop), after bringing the schema up.

With ``workers`` > 1 the parent binds one listening socket and hands it to that many
worker processes, which the kernel balances connections between. Only worker 0 runs the
collector, the billing scheduler and the compactor; the others serve HTTP alone.

Once every worker accepts connections, a banner is printed (``serving_banner`` or the
caller's). Unless ``verbose``, that is all: the logs show warnings and errors only (no
migration, startup or access lines).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import partial
from multiprocessing.connection import Connection, wait
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


def serving_banner(url: str) -> str:
    """What ``serve`` prints once it serves at ``url``."""
    return f"meterhub serving on {url} (API docs: {url}/docs); Ctrl-C stops it"


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    verbose: bool = False,
    banner: Callable[[str], str] = serving_banner,
) -> int:
    """Migrate, then serve until Ctrl-C or SIGTERM (the collector flushes before exit),
    printing ``banner(url)`` once every worker accepts connections.

    Returns the exit status: 1 if a worker process ended by itself, else 0.
    """
    upgrade(settings.database_url)
    shown = f"[{host}]" if ":" in host else host

    def announce(bound: int) -> None:
        print(banner(f"http://{shown}:{bound}"), flush=True)

    if settings.workers > 1:
        return _serve_workers(settings, host, port, verbose, announce)
    with suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once it has stopped
        _Server(_config(settings, host, port, verbose), announce).run()
    return 0


def _serve_workers(
    settings: Settings, host: str, port: int, verbose: bool, announce: Callable[[int], None]
) -> int:
    """``serve`` by ``settings.workers`` processes sharing one socket; each says on a pipe
    of its own when it is ready."""
    http_only = {
        "collector_enabled": False,
        "scheduler_enabled": False,
        "compact_enabled": False,
        "mqtt_enabled": False,
        "alerts_enabled": False,
    }
    configs = [  # uvicorn logs through the root logger, so each line names its worker
        _config(
            settings if n == 0 else settings.model_copy(update=http_only), host, port, verbose, None
        )
        for n in range(settings.workers)
    ]
    sock = configs[0].bind_socket()
    context = multiprocessing.get_context("spawn")
    pipes = [context.Pipe(duplex=False) for _ in configs]
    workers = [
        context.Process(
            target=_worker, args=(n, config, sock, verbose, sent), name=f"meterhub-worker-{n}"
        )
        for n, (config, (_, sent)) in enumerate(zip(configs, pipes, strict=True))
    ]
    for worker in workers:
        worker.start()
    for _, sent in pipes:
        sent.close()  # the workers hold it: a worker that dies unready is an end of file
    bound = sock.getsockname()[1]
    return _supervise(workers, [ready for ready, _ in pipes], partial(announce, bound))


def _config(
    settings: Settings,
    host: str,
    port: int,
    verbose: bool,
    log_config: dict[str, Any] | None = LOGGING_CONFIG,
) -> uvicorn.Config:
    """The server's configuration; the app is built where it is served (``factory``).
    Unless ``verbose``, uvicorn logs warnings and errors only, and no access lines."""
    return uvicorn.Config(
        partial(create_app, settings),
        factory=True,
        host=host,
        port=port,
        http="httptools",
        loop="uvloop",
        log_config=log_config,
        log_level="info" if verbose else "warning",
        access_log=verbose,
        timeout_graceful_shutdown=10,
    )


class _Server(uvicorn.Server):
    """Once the app has started, everything it holds then (modules, routes, compiled
    statements, pydantic's and SQLAlchemy's structures: objects that live as long as the
    process) leaves the garbage collector's sight (``gc.freeze``). Requests in flight keep
    their objects alive through young collections, and so many survivors soon call for a
    full collection: over that whole heap one took about 90 ms, twice a second at 3,000
    requests a second, stalling every request meanwhile (a fifth of the time, and the
    slowest answers); over what came after startup it takes a millisecond or so.

    Once started, it calls ``ready`` with the port it listens on."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[int], None]) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        gc.freeze()
        if self.started:
            self._ready(self.servers[0].sockets[0].getsockname()[1])


def _worker(
    number: int, config: uvicorn.Config, sock: socket.socket, verbose: bool, ready: Connection
) -> None:
    """Entry point of a worker process: serve on the shared socket until SIGTERM, which
    the parent sends, and which the worker sends itself if the parent disappears. Says
    on ``ready`` once it accepts connections."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format=f"%(asctime)s worker{number} %(levelname)s %(name)s %(message)s",
    )
    config.configure_logging()
    parent = multiprocessing.parent_process()
    assert parent is not None
    threading.Thread(target=_stop_with, args=(parent,), daemon=True).start()
    with suppress(KeyboardInterrupt):  # Ctrl-C in a terminal reaches every worker too
        _Server(config, lambda _port: _say_ready(ready)).run(sockets=[sock])


def _say_ready(ready: Connection) -> None:
    ready.send(True)
    ready.close()


def _stop_with(parent: BaseProcess) -> None:
    parent.join()
    os.kill(os.getpid(), signal.SIGTERM)


def _supervise(
    workers: Sequence[BaseProcess], ready: Sequence[Connection], announce: Callable[[], None]
) -> int:
    """Wait for SIGINT/SIGTERM or for a worker to end, then stop every worker; calls
    ``announce`` once every worker has said it is ready."""
    asked = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: asked.set())
    sentinels = [worker.sentinel for worker in workers]
    waiting, said_ready = list(ready), 0
    ended: list[object] = []
    while not (asked.is_set() or ended):
        found = wait([*sentinels, *waiting], timeout=0.5)
        ended = [sentinel for sentinel in found if sentinel in sentinels]
        for said in [conn for conn in waiting if conn in found]:
            waiting.remove(said)
            with suppress(EOFError):  # a worker that ended unready: its sentinel tells
                said.recv()
                said_ready += 1
            said.close()
            if said_ready == len(ready) and not ended:
                announce()
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
