"""One full sweep of 56,001 simulated meters by the collector, against an aiohttp reference.

Runs the simulator on ports FIRST-LAST (default 9000-65000), registers every meter in a
fresh SQLite database, then times `sweep_once` (the collector's own polling, parsing and
batched writes) and, in the same run, a plain aiohttp loop (connection per request,
256 concurrent, results parsed but not stored). Prints figures and the ratio.

The full range covers the kernel's ephemeral ports, so by default the script re-runs
itself in a private network namespace (`unshare -n`, ``bench.netns``) and polls from
127.0.0.2.
Usage: .venv/bin/python -m bench.poll_sweep [--first 9000] [--last 65000] [--processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
from sqlalchemy import func, select

from bench.netns import isolated
from meterhub.collector.health_store import meter_status
from meterhub.collector.service import SweepResult, sweep_once
from meterhub.collector.simulator import Simulator, SimulatorConfig
from meterhub.db import make_engine
from meterhub.demo import register_simulated
from meterhub.migrations import upgrade
from meterhub.settings import Settings
from meterhub.storage.tables import points

CONCURRENCY = 256
T = TypeVar("T")


def cpu_seconds() -> float:
    """CPU of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


async def aiohttp_sweep(meters: list[tuple[int, int]], source: str) -> tuple[int, int]:
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for meter in meters:
        queue.put_nowait(meter)
    ok = errors = 0
    connector = aiohttp.TCPConnector(force_close=True, limit=CONCURRENCY, local_addr=(source, 0))
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal ok, errors
            while not queue.empty():
                meter_id, port = queue.get_nowait()
                try:
                    async with session.get(f"http://127.0.0.1:{port}/") as answer:
                        body = json.loads(await answer.read())
                        ok += str(body["id"]) == str(meter_id) and float(body["kW"]) >= 0
                except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return ok, errors


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


def timed(work: Callable[[], T]) -> tuple[Timing, T]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = work()
    return Timing(time.perf_counter() - wall, cpu_seconds() - cpu), result


def main(args: argparse.Namespace) -> None:
    ports = range(args.first, args.last + 1)
    workdir = Path(tempfile.mkdtemp(prefix="meterhub-bench-"))
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'sweep.db'}",
        collector_processes=args.processes,
        source_address=args.source,
        poll_timeout=5,
    )
    upgrade(settings.database_url)
    try:
        started = time.perf_counter()
        with Simulator(SimulatorConfig(ports=ports)) as simulator:
            bind = time.perf_counter() - started
            meters = simulator.meters
            registration, added = timed(lambda: register_simulated(settings, meters))
            print(
                f"meters: {len(ports)}; simulator bound in {bind:.1f} s; "
                f"registered {added} in {registration.wall:.1f} s"
            )
            sweep, result = timed(lambda: sweep_once(settings))
            reference, (ok, errors) = timed(lambda: asyncio.run(aiohttp_sweep(meters, args.source)))
        report(settings, len(ports), sweep, result)
        print("aiohttp reference (1 process, connection per request, 256 concurrent, not stored):")
        print(f"  {line(len(ports), reference)}   ok {ok}, errors {errors}")
        print(
            f"ratio: the collector's sweep is {reference.wall / sweep.wall:.2f}x faster than "
            f"aiohttp's ({sweep.cpu / len(ports) * 1e6:.0f} vs "
            f"{reference.cpu / len(ports) * 1e6:.0f} CPU µs per meter)"
        )
    finally:
        shutil.rmtree(workdir)


def line(meters: int, timing: Timing) -> str:
    return (
        f"full sweep {timing.wall:8.2f} s  {meters / timing.wall:8.0f} polls/s"
        f"  CPU {timing.cpu:6.2f} s"
    )


def report(settings: Settings, meters: int, sweep: Timing, result: SweepResult) -> None:
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(points)).scalar_one()
        failures = conn.execute(select(func.sum(meter_status.c.failures))).scalar_one()
    engine.dispose()
    print(
        f"collector ({settings.collector_processes} processes, SQLite, "
        f"source {settings.source_address}):"
    )
    print(f"  {line(meters, sweep)}")
    print(
        f"  readings stored {stored // 2} (points {stored}, expected {2 * meters}); "
        f"errors {failures}; polled {result.polled}, failed {result.failed}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=9000)
    parser.add_argument("--last", type=int, default=65000)
    parser.add_argument("--processes", type=int, default=2, help="collector processes")
    parser.add_argument("--source", default="127.0.0.2", help="source address of polls")
    parser.add_argument("--no-isolate", dest="isolate", action="store_false")
    options = parser.parse_args()
    if options.isolate:
        isolated()
    main(options)
