"""Running the collector: in the server's event loop, as shard processes beside it, or
as a worker's polling task (``poll_published``).

With ``collector_processes = 0`` one poller covers every meter inside the calling
process. With N > 0, N child processes each poll the meters whose pk falls in their
shard (``pk % N``), write their own batches, and are restarted if they die.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import time
from collections.abc import Coroutine
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.process import BaseProcess
from typing import Any, NamedTuple

from sqlalchemy import Engine

from meterhub.aio import wait_for_event
from meterhub.collector.intervals import Shard, mark_done
from meterhub.collector.poller import Poller
from meterhub.collector.writer import BatchWriter
from meterhub.db import make_engine
from meterhub.settings import Settings
from meterhub.times import HOUR_US, now_us

log = logging.getLogger("meterhub.collector")


class SweepResult(NamedTuple):
    polled: int
    failed: int
    points_written: int


async def run_shard(
    settings: Settings, shard: int, shards: int, stop: asyncio.Event | None
) -> SweepResult:
    """Poll one shard until ``stop`` (``None``: one sweep of every meter), then finish the
    polls in flight and write every reading."""
    engine = make_engine(settings.database_url)
    try:
        writer = _writer(settings, engine)
        poller = Poller(settings, engine, writer, shard, shards)
        return await _polling(poller, writer, poller.sweep() if stop is None else poller.run(stop))
    finally:
        engine.dispose()


def poll_published(
    settings: Settings, engine: Engine, shard: Shard, phased: bool, worker: str
) -> SweepResult:
    """A worker's polling task: poll ``shard`` (``Poller.poll_shard``), each poll stored
    with its claim in the interval, and record the shard done by ``worker``. Raises if
    readings could not be stored (they are not claimed: the next interval polls them)."""
    began = time.perf_counter()
    first_of_hour = shard.interval_start % HOUR_US < round(settings.poll_interval * 1e6)
    writer = _writer(settings, engine, claims=shard.interval_start, prune_on_close=first_of_hour)
    poller = Poller(settings, engine, writer, shard.number, shard.count)
    done = _run(_polling(poller, writer, poller.poll_shard(shard, phased)))
    if writer.pending:
        raise RuntimeError(f"{writer.pending} polls of shard {shard.number} were not stored")
    with engine.begin() as conn:
        took = time.perf_counter() - began
        mark_done(conn, shard, worker, now_us(), done.polled + done.failed, done.failed, took)
    return done


def _writer(settings: Settings, engine: Engine, **claiming: Any) -> BatchWriter:
    return BatchWriter(
        engine,
        settings.write_batch_size,
        settings.write_flush_interval,
        settings.poll_log_days,
        **claiming,
    )


async def _polling(
    poller: Poller, writer: BatchWriter, polls: Coroutine[Any, Any, None]
) -> SweepResult:
    """Run ``polls`` while ``writer`` writes; then write what is left."""
    writing = asyncio.create_task(writer.run())
    try:
        await polls
    finally:
        await writer.close()
        await writing
    return SweepResult(poller.polls, poller.failures, writer.points_written)


def sweep_once(settings: Settings) -> SweepResult:
    """Poll every enabled meter once, in ``collector_processes`` processes (0: this one)."""
    shards = settings.collector_processes
    if shards == 0:
        return _run(run_shard(settings, 0, 1, None))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(shards, mp_context=context) as pool:
        parts = list(pool.map(_sweep_shard, [settings] * shards, range(shards), [shards] * shards))
    return SweepResult(*(sum(column) for column in zip(*parts, strict=True)))


def _sweep_shard(settings: Settings, shard: int, shards: int) -> SweepResult:
    return _run(run_shard(settings, shard, shards, None))


def _run(main: Coroutine[Any, Any, SweepResult]) -> SweepResult:
    """Run ``main`` on uvloop where available."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: SweepResult = uvloop.run(main)
    return result


def _shard_process(settings: Settings, shard: int, shards: int) -> None:
    """Entry point of a child: SIGTERM stops it cleanly; Ctrl-C is left to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s shard{shard} %(message)s")

    async def main() -> SweepResult:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        return await run_shard(settings, shard, shards, stop)

    _run(main())


class Collector:
    """Starts and stops the pollers for ``settings``; ``stop`` loses no buffered reading."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[object]] = []
        self._children: dict[int, BaseProcess] = {}

    async def start(self) -> None:
        count = self._settings.collector_processes
        if count == 0:
            self._tasks.append(asyncio.create_task(run_shard(self._settings, 0, 1, self._stop)))
            return
        for shard in range(count):
            self._spawn(shard)
        self._tasks.append(asyncio.create_task(self._supervise()))

    def _spawn(self, shard: int) -> None:
        context = multiprocessing.get_context("spawn")
        shards = self._settings.collector_processes
        child = context.Process(
            target=_shard_process,
            args=(self._settings, shard, shards),
            name=f"meterhub-collector-{shard}",
        )
        child.start()
        self._children[shard] = child

    async def _supervise(self) -> None:
        while not await wait_for_event(self._stop, 1.0):
            for shard, child in list(self._children.items()):
                if not child.is_alive():
                    log.error("collector shard %d exited (%s); restarting", shard, child.exitcode)
                    self._spawn(shard)

    async def stop(self) -> None:
        self._stop.set()
        for child in self._children.values():
            child.terminate()
        grace = self._settings.poll_timeout + 10
        for child in self._children.values():
            await asyncio.to_thread(child.join, grace)
            if child.is_alive():
                log.error("collector %s did not stop in %.0f s; killing it", child.name, grace)
                child.kill()
        await asyncio.gather(*self._tasks)
