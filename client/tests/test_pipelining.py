"""``set_data`` keeps two batches in flight, never two that share a tag, and a failure
leaves exactly the points of the batches not acknowledged in the buffers.

The platform is faked by ``httpx.MockTransport``: each request is held a little while, so
requests that may overlap do, and the fake records which tags were in flight together.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from meterhub_client import (
    AsyncDataInteractionClient,
    DataInteractionClient,
    Tag,
    TagId,
    TagNotFound,
)
from meterhub_client._core import IN_FLIGHT

BASE = "http://platform.test"
HOLD_S = 0.03


class FakePlatform:
    """Answers ``/smt/data/set``: written, or error 4 for a batch carrying ``refused``."""

    def __init__(self, refused: str | None = None) -> None:
        self.refused = refused
        self.lock = threading.Lock()
        self.in_flight: list[set[str]] = []
        self.most_in_flight = 0
        self.shared: list[set[str]] = []  # tags two batches in flight both carried
        self.received: list[tuple[str, int]] = []  # (tag, x), in the order requests came

    def arrive(self, request: httpx.Request) -> tuple[set[str], dict[str, Any]]:
        body = json.loads(request.content)
        keys = {_key(record["tagId"]) for record in body["data"]}
        with self.lock:
            for other in self.in_flight:
                if keys & other:
                    self.shared.append(keys & other)
            self.in_flight.append(keys)
            self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
            for record in body["data"]:
                self.received += [(_key(record["tagId"]), p["x"]) for p in record["data"]]
        return keys, body

    def leave(self, keys: set[str], body: dict[str, Any]) -> httpx.Response:
        with self.lock:
            self.in_flight.remove(keys)
        if self.refused in keys:
            answer: dict[str, Any] = {"error": {"id": 4, "message": f"no tag {self.refused}"}}
        else:
            written = sum(len(record["data"]) for record in body["data"])
            answer = {"error": {"id": 0}, "written": written}
        return httpx.Response(200, json=answer)

    def sync_handler(self) -> Callable[[httpx.Request], httpx.Response]:
        def handle(request: httpx.Request) -> httpx.Response:
            keys, body = self.arrive(request)
            time.sleep(HOLD_S if self.refused not in keys else 3 * HOLD_S)
            return self.leave(keys, body)

        return handle

    def async_handler(self) -> Callable[[httpx.Request], Any]:
        async def handle(request: httpx.Request) -> httpx.Response:
            keys, body = self.arrive(request)
            await asyncio.sleep(HOLD_S if self.refused not in keys else 3 * HOLD_S)
            return self.leave(keys, body)

        return handle


def _key(tag_id: str | dict[str, str]) -> str:
    return tag_id if isinstance(tag_id, str) else f"{tag_id['parentObjectId']}.{tag_id['tagName']}"


def send(platform: FakePlatform, tags: list[Tag], *, asynchronous: bool, limit: int) -> int:
    """``set_data(tags)`` by the sync or the async client against ``platform``."""
    if not asynchronous:
        transport = httpx.MockTransport(platform.sync_handler())
        with DataInteractionClient(
            BASE, transport=transport, max_points_per_request=limit
        ) as client:
            return client.set_data(tags)

    async def run() -> int:
        transport = httpx.MockTransport(platform.async_handler())
        async with AsyncDataInteractionClient(
            BASE, transport=transport, max_points_per_request=limit
        ) as client:
            return await client.set_data(tags)

    return asyncio.run(run())


BOTH = pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])


@BOTH
def test_batches_of_distinct_tags_travel_two_at_a_time(asynchronous: bool) -> None:
    tags = [Tag(f"t{n}") for n in range(6)]
    for n, tag in enumerate(tags):
        tag.update({"x": x, "y": n} for x in range(4))
    platform = FakePlatform()
    assert send(platform, tags, asynchronous=asynchronous, limit=4) == 24
    assert platform.most_in_flight == IN_FLIGHT == 2
    assert platform.shared == []
    assert sorted(platform.received) == sorted((f"t{n}", x) for n in range(6) for x in range(4))
    assert all(len(tag) == 0 for tag in tags)


@BOTH
def test_batches_sharing_a_tag_never_travel_together(asynchronous: bool) -> None:
    """A tag split over two batches, and one tag named both as a string and as a pair
    (one platform tag): of each, the batches go one after the other, in the order added,
    so of a time sent twice the later value is written last."""
    long, plain, pair, other = Tag("long"), Tag("44.kW"), Tag(TagId("kW", "44")), Tag("o")
    long.update({"x": x, "y": x} for x in range(8))
    plain.update({"x": x, "y": 1} for x in range(4))
    pair.update({"x": x, "y": 2} for x in range(4))  # the same (tag, x) again, added later
    other.update({"x": x, "y": 3} for x in range(4))
    platform = FakePlatform()
    send(platform, [long, plain, other, pair], asynchronous=asynchronous, limit=4)
    assert platform.shared == []
    assert [x for key, x in platform.received if key == "long"] == list(range(8))
    kw = [x for key, x in platform.received if key == "44.kW"]
    assert kw == [0, 1, 2, 3, 0, 1, 2, 3]  # the string's batch, then the pair's
    assert platform.most_in_flight == 2  # "o" travelled beside a batch of another tag


@BOTH
def test_a_failed_batch_keeps_its_points_and_stops_the_later_ones(asynchronous: bool) -> None:
    """The first batch is refused (slowly) while the second, of another tag, is written:
    the refused batch's points stay buffered, the written ones leave, the third batch is
    never sent."""
    first, second, third = Tag("no.such.tag"), Tag("b"), Tag("c")
    for tag in (first, second, third):
        tag.update({"x": x, "y": x} for x in range(4))
    platform = FakePlatform(refused="no.such.tag")
    with pytest.raises(TagNotFound):
        send(platform, [first, second, third], asynchronous=asynchronous, limit=4)
    assert (len(first), len(second), len(third)) == (4, 0, 4)
    assert {key for key, _ in platform.received} == {"no.such.tag", "b"}


def test_cancelled_set_data_drops_its_calls_and_keeps_the_points() -> None:
    """Cancelling ``set_data`` while two batches are in flight cancels both; nothing was
    acknowledged, so every point stays buffered and no task is left running."""
    tags = [Tag(f"t{n}") for n in range(4)]
    for tag in tags:
        tag.update({"x": x, "y": 1} for x in range(4))
    platform = FakePlatform()

    async def run() -> set[asyncio.Task[Any]]:
        transport = httpx.MockTransport(platform.async_handler())
        async with AsyncDataInteractionClient(
            BASE, transport=transport, max_points_per_request=4
        ) as client:
            sending = asyncio.ensure_future(client.set_data(tags))
            await asyncio.sleep(HOLD_S / 2)
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending
            await asyncio.sleep(0)
        return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}

    assert asyncio.run(run()) == set()
    assert [len(tag) for tag in tags] == [4, 4, 4, 4]
