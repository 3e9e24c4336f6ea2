"""Fixtures shared by the client's tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer

import pytest


@pytest.fixture
def serve() -> Iterator[Callable[[ThreadingHTTPServer], None]]:
    """Serve each HTTP server given (on 127.0.0.1) from a thread of its own until the test
    ends, then shut it down."""
    running: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(server: ThreadingHTTPServer) -> None:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        running.append((server, thread))

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join()
