"""Micro-benchmark: one sweep of 5,000 local meters with http_get versus aiohttp.

Run: .venv/bin/python bench/http_get_micro.py [rounds]

A spawned child process serves 5,000 minimal meters on 127.0.0.1:20000-24999 (uvloop,
``Connection: close``, the server closes after answering). The parent polls every meter once
per sweep with 256 worker coroutines pulling ports from a queue, one connection per poll, and
prints polls/s, the client's CPU seconds (time.process_time) and the http_get/aiohttp ratio.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import sys
import time
from collections.abc import Awaitable, Callable
from multiprocessing.synchronize import Event
from typing import cast

import aiohttp
import uvloop

from meterhub.collector.http_get import http_get
from meterhub.errors import MeterError

HOST = "127.0.0.1"
PORTS = range(20000, 25000)
WORKERS = 256
TIMEOUT = 10.0

Poll = Callable[[int], Awaitable[bool]]  # one poll of one port: True if the answer was good
Close = Callable[[], Awaitable[None]]
Poller = Callable[[], Awaitable[tuple[Poll, Close]]]  # built inside the loop that runs the sweep
LoopFactory = Callable[[], asyncio.AbstractEventLoop] | None


class Meter(asyncio.Protocol):
    """Answers the first request with a fixed JSON reading, then closes."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.transport is not None and b"\r\n\r\n" in data:
            self.transport.write(self.response)
            self.transport.close()


def meter_response(port: int) -> bytes:
    body = b'{"id":"%d","A":"50","kW":"44325"}' % port
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    return head % len(body) + b"Connection: close\r\n\r\n" + body


async def serve_meters(ready: Event) -> None:
    loop = asyncio.get_running_loop()
    for port in PORTS:
        factory = functools.partial(Meter, meter_response(port))
        await loop.create_server(factory, HOST, port, backlog=1024)
    ready.set()
    await asyncio.Future()  # serve until terminated


def run_meters(ready: Event) -> None:
    uvloop.run(serve_meters(ready))


async def sweep(make_poll: Poller) -> int:
    """Poll every port once with WORKERS coroutines; return the number of good answers."""
    poll, close = await make_poll()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for port in PORTS:
        queue.put_nowait(port)
    good = 0

    async def worker() -> None:
        nonlocal good
        while not queue.empty():
            ok = await poll(queue.get_nowait())  # not `good += await ...`: that loses updates
            good += ok

    try:
        await asyncio.gather(*(worker() for _ in range(WORKERS)))
    finally:
        await close()
    return good


def http_get_poller(source_address: str | None = None) -> Poller:
    async def make() -> tuple[Poll, Close]:
        async def poll(port: int) -> bool:
            try:
                answer = await http_get(HOST, port, timeout=TIMEOUT, source_address=source_address)
            except MeterError:
                return False
            return answer.status == 200 and answer.body.startswith(b'{"id":"%d"' % port)

        async def close() -> None:
            pass

        return poll, close

    return make


def aiohttp_poller() -> Poller:
    async def make() -> tuple[Poll, Close]:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=WORKERS),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        )

        async def poll(port: int) -> bool:
            try:
                async with session.get(f"http://{HOST}:{port}/") as response:
                    body = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                return False
            return response.status == 200 and body.startswith(b'{"id":"%d"' % port)

        return poll, session.close

    return make


def measure(label: str, make_poll: Poller, loop_factory: LoopFactory) -> float:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        cpu, wall = time.process_time(), time.perf_counter()
        good = runner.run(sweep(make_poll))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rate = len(PORTS) / wall
    print(
        f"{label:34} {wall:6.2f} s  {rate:8.0f} polls/s  client CPU {cpu:5.2f} s  "
        f"ok {good}/{len(PORTS)}",
        flush=True,
    )
    return rate


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    meters = context.Process(target=run_meters, args=(ready,), daemon=True)
    meters.start()
    try:
        if not ready.wait(60):
            raise SystemExit("meter servers did not start")
        print(f"{len(PORTS)} meters on {HOST}:{PORTS[0]}-{PORTS[-1]}, {WORKERS} workers")
        for n in range(1, rounds + 1):
            print(f"-- round {n}")
            ours = measure("http_get, uvloop", http_get_poller(), uvloop.new_event_loop)
            theirs = measure("aiohttp force_close, uvloop", aiohttp_poller(), uvloop.new_event_loop)
            measure("http_get, asyncio loop", http_get_poller(), None)
            measure("aiohttp force_close, asyncio loop", aiohttp_poller(), None)
            measure(
                "http_get, uvloop, src 127.0.0.2",
                http_get_poller("127.0.0.2"),
                uvloop.new_event_loop,
            )
            print(f"http_get/aiohttp on uvloop: {ours / theirs:.2f}x")
    finally:
        meters.terminate()
        meters.join()


if __name__ == "__main__":
    main()
