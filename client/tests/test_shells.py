"""The two thin shells: same API, generated sync code, real sockets on 127.0.0.1.

No server is faked here: the only traffic is to a port that refuses connections.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from meterhub_client import (
    AsyncDataInteractionClient,
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
