"""The two thin shells: same API, generated sync code, real sockets on 127.0.0.1.

No platform is faked here: the traffic goes to a port that refuses connections, or to a
plain HTTP server on 127.0.0.1 that refuses every call as the platform does without a
valid token (HTTP 401, error 9).
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from meterhub_client import (
    AsyncDataInteractionClient,
    AuthenticationError,
    DataInteractionClient,
    NoDataToSend,
    Tag,
    TransportError,
)

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "unasync.py"
PUBLIC = ["connect", "create_tags", "create_request_data", "set_data", "get_data"]


def load_unasync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sync_client_is_generated_from_the_async_one() -> None:
    unasync = load_unasync()
    assert unasync.TARGET.read_text(encoding="utf-8") == unasync.unasync(
        unasync.SOURCE.read_text(encoding="utf-8")
    ), "run client/scripts/unasync.py"


@pytest.mark.parametrize("name", PUBLIC)
def test_both_clients_have_the_same_methods(name: str) -> None:
    sync, asynchronous = (
        getattr(DataInteractionClient, name),
        getattr(AsyncDataInteractionClient, name),
    )
    assert inspect.signature(sync) == inspect.signature(asynchronous)
    assert inspect.iscoroutinefunction(asynchronous) is (
        name in ("connect", "set_data", "get_data")
    )


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A 127.0.0.1 URL whose port is bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


def test_sync_refused_connection_is_retried_then_a_transport_error(refused_url: str) -> None:
    client = DataInteractionClient(refused_url, retries=2, backoff=0)
    with client, pytest.raises(TransportError, match="after 3 attempt") as caught:
        client.connect("1")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.status_code is None


def test_async_refused_connection_is_retried_then_a_transport_error(refused_url: str) -> None:
    async def connect() -> None:
        async with AsyncDataInteractionClient(refused_url, retries=1, backoff=0) as client:
            await client.connect("1")

    with pytest.raises(TransportError, match="after 2 attempt") as caught:
        asyncio.run(connect())
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_failed_set_data_keeps_the_points(refused_url: str) -> None:
    tag = Tag("a")
    tag.add_data(1, 1)
    with DataInteractionClient(refused_url, retries=0) as client:
        with pytest.raises(TransportError):
            client.set_data([tag])
        with pytest.raises(NoDataToSend):
            client.set_data([Tag("empty")])
    assert tag.data == [{"x": 1, "y": 1, "q": 0}]


def test_async_client_closes_its_pool() -> None:
    async def use() -> AsyncDataInteractionClient:
        async with AsyncDataInteractionClient("http://127.0.0.1:1") as client:
            with pytest.raises(NoDataToSend):
                await client.set_data([])
            with pytest.raises(TypeError, match="tag_id"):
                await client.get_data(max_count=3)
        return client

    client = asyncio.run(use())
    assert client._http.is_closed


class _Refusing(BaseHTTPRequestHandler):
    """Answers every POST as the platform does without a valid token, and counts them."""

    server: _Gatekeeper

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.seen.append(self.headers.get("Authorization"))
        message = "invalid or revoked token" if self.headers.get("Authorization") else "no token"
        body = json.dumps({"error": {"id": 9, "message": message}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("WWW-Authenticate", "Token")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class _Gatekeeper(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Refusing)
        self.lock = threading.Lock()
        self.seen: list[str | None] = []


@pytest.fixture
def gatekeeper(serve: Callable[[ThreadingHTTPServer], None]) -> _Gatekeeper:
    server = _Gatekeeper()
    serve(server)
    return server


@pytest.mark.parametrize("token", [None, "1:" + "0" * 40], ids=["no-token", "bad-token"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_refused_token_is_an_authentication_error_at_once(
    gatekeeper: _Gatekeeper, token: str | None, asynchronous: bool
) -> None:
    """Each call is sent once, with retries to spare, and raises ``AuthenticationError``."""
    base = f"http://127.0.0.1:{gatekeeper.server_address[1]}"
    headers = {"Authorization": f"token {token}"} if token else {}
    tag = Tag("a")
    tag.add_data(1, 1)
    errors: list[AuthenticationError] = []
    if asynchronous:

        async def run() -> None:
            async with AsyncDataInteractionClient(
                base,
                retries=3,
                backoff=5.0,
                headers=headers,  # a retry would wait 5 s
            ) as client:
                with pytest.raises(AuthenticationError) as connect:
                    await client.connect("1")
                with pytest.raises(AuthenticationError) as send:
                    await client.set_data(tag)
                with pytest.raises(AuthenticationError) as get:
                    await client.get_data(tag_id="a")
            errors.extend((connect.value, send.value, get.value))

        asyncio.run(run())
    else:
        with DataInteractionClient(base, retries=3, backoff=5.0, headers=headers) as client:
            with pytest.raises(AuthenticationError) as connect:
                client.connect("1")
            with pytest.raises(AuthenticationError) as send:
                client.set_data(tag)
            with pytest.raises(AuthenticationError) as get:
                client.get_data(tag_id="a")
        errors.extend((connect.value, send.value, get.value))
    assert len(errors) == 3
    assert gatekeeper.seen == [f"token {token}" if token else None] * 3  # none retried
    expected = "token refused: invalid or revoked token" if token else "no token sent"
    assert all(str(error).startswith(expected) for error in errors), errors
    assert {(error.token_sent, error.status_code) for error in errors} == {(bool(token), 401)}
    assert tag.data == [{"x": 1, "y": 1, "q": 0}]
