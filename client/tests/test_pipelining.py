"""``set_data`` keeps up to ``IN_FLIGHT`` batches in flight, never two that share a tag, and
a failure leaves exactly the points of the batches not acknowledged in the buffers.

The platform is an HTTP server on 127.0.0.1 that holds each request a little while, so
requests that may overlap do, and records which tags were in flight together.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from meterhub_client import (
    AsyncDataInteractionClient,
    DataInteractionClient,
    Tag,
    TagId,
    TagNotFound,
)
from meterhub_client._core import IN_FLIGHT

HOLD_S = 0.03


class Platform(ThreadingHTTPServer):
    """Answers ``/smt/data/set``: written, or error 4 for a batch carrying ``refused`` (held
    three times as long)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.refused: str | None = None
        self.lock = threading.Lock()
        self.in_flight: list[set[str]] = []
        self.most_in_flight = 0
        self.shared: list[set[str]] = []  # tags two batches in flight both carried
        self.received: list[tuple[str, int]] = []  # (tag, x), in the order requests came
        self.arrived = threading.Event()  # set once a request is held

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        keys = {_key(record["tagId"]) for record in body["data"]}
        with self.lock:
            for other in self.in_flight:
                if keys & other:
                    self.shared.append(keys & other)
            self.in_flight.append(keys)
            self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
            self.arrived.set()
            for record in body["data"]:
                self.received += [(_key(record["tagId"]), p["x"]) for p in record["data"]]
        time.sleep(HOLD_S if self.refused not in keys else 3 * HOLD_S)
        with self.lock:
            self.in_flight.remove(keys)
        if self.refused in keys:
            return {"error": {"id": 4, "message": f"no tag {self.refused}"}}
        return {"error": {"id": 0}, "written": sum(len(r["data"]) for r in body["data"])}


class _Handler(BaseHTTPRequestHandler):
    server: Platform
    protocol_version = "HTTP/1.1"  # connections kept, as the platform keeps them

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = json.dumps(self.server.answer(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def platform(serve: Callable[[ThreadingHTTPServer], None]) -> Platform:
    server = Platform()
    serve(server)
    return server


def _key(tag_id: str | dict[str, str]) -> str:
    return tag_id if isinstance(tag_id, str) else f"{tag_id['parentObjectId']}.{tag_id['tagName']}"


def send(platform: Platform, tags: list[Tag], *, asynchronous: bool, limit: int) -> int:
    """``set_data(tags)`` by the sync or the async client against ``platform``."""
    if not asynchronous:
        with DataInteractionClient(platform.base, max_points_per_request=limit) as client:
            return client.set_data(tags)

    async def run() -> int:
        async with AsyncDataInteractionClient(
            platform.base, max_points_per_request=limit
        ) as client:
            return await client.set_data(tags)

    return asyncio.run(run())


BOTH = pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])


@BOTH
def test_batches_of_distinct_tags_travel_in_flight_together(
    platform: Platform, asynchronous: bool
) -> None:
    tags = [Tag(f"t{n}") for n in range(IN_FLIGHT + 2)]
    for n, tag in enumerate(tags):
        tag.update({"x": x, "y": n} for x in range(4))
    assert send(platform, tags, asynchronous=asynchronous, limit=4) == 4 * len(tags)
    assert platform.most_in_flight == IN_FLIGHT == 4
    assert platform.shared == []
    expected = [(f"t{n}", x) for n in range(len(tags)) for x in range(4)]
    assert sorted(platform.received) == sorted(expected)
    assert all(len(tag) == 0 for tag in tags)


@BOTH
def test_batches_sharing_a_tag_never_travel_together(
    platform: Platform, asynchronous: bool
) -> None:
    """A tag split over two batches, and one tag named both as a string and as a pair
    (one platform tag): of each, the batches go one after the other, in the order added,
    so of a time sent twice the later value is written last."""
    long, plain, pair, other = Tag("long"), Tag("44.kW"), Tag(TagId("kW", "44")), Tag("o")
    long.update({"x": x, "y": x} for x in range(8))
    plain.update({"x": x, "y": 1} for x in range(4))
    pair.update({"x": x, "y": 2} for x in range(4))  # the same (tag, x) again, added later
    other.update({"x": x, "y": 3} for x in range(4))
    send(platform, [long, plain, other, pair], asynchronous=asynchronous, limit=4)
    assert platform.shared == []
    assert [x for key, x in platform.received if key == "long"] == list(range(8))
    kw = [x for key, x in platform.received if key == "44.kW"]
    assert kw == [0, 1, 2, 3, 0, 1, 2, 3]  # the string's batch, then the pair's
    assert platform.most_in_flight == 3  # long's second batch, the string's and "o"'s


@BOTH
def test_a_failed_batch_keeps_its_points_and_stops_the_later_ones(
    platform: Platform, asynchronous: bool
) -> None:
    """The first batch is refused (slowly) while the ones beside it, of other tags, are
    written: the refused batch's points stay buffered, the written ones leave, and the
    batch after them is never sent."""
    refused, beside, later = Tag("no.such.tag"), [Tag(f"b{n}") for n in range(3)], Tag("c")
    tags = [refused, *beside, later]
    for tag in tags:
        tag.update({"x": x, "y": x} for x in range(4))
    platform.refused = "no.such.tag"
    with pytest.raises(TagNotFound):
        send(platform, tags, asynchronous=asynchronous, limit=4)
    assert [len(tag) for tag in tags] == [4, 0, 0, 0, 4]
    assert {key for key, _ in platform.received} == {"no.such.tag", "b0", "b1", "b2"}


def test_cancelled_set_data_drops_its_calls_and_keeps_the_points(platform: Platform) -> None:
    """Cancelling ``set_data`` while its batches are in flight cancels them all; nothing was
    acknowledged, so every point stays buffered and no task is left running."""
    tags = [Tag(f"t{n}") for n in range(4)]
    for tag in tags:
        tag.update({"x": x, "y": 1} for x in range(4))

    async def run() -> set[asyncio.Task[Any]]:
        async with AsyncDataInteractionClient(platform.base, max_points_per_request=4) as client:
            sending = asyncio.ensure_future(client.set_data(tags))
            assert await asyncio.to_thread(platform.arrived.wait, 5)
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending
            await asyncio.sleep(0)
        return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}

    assert asyncio.run(run()) == set()
    assert [len(tag) for tag in tags] == [4, 4, 4, 4]
