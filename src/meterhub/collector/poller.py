"""The poller: reads every enabled meter of its shard once per interval.

A scheduler releases each meter at its own phase of the interval, so polls spread
evenly (a worker's polling task does the same for one shard of an interval); a fixed
pool of worker coroutines performs them through the driver of each meter's protocol, so
one slow or dead meter holds at most one worker for at most the timeout; meters sharing
an address (a Modbus gateway's units) are polled one at a time (``lanes``), holding one
worker between them. Failing meters back off but are
never dropped. The registry is re-read when it changes (checked every second) and
at least once per interval, so added and removed meters are picked up without restart.
What each interval (or sweep) did is counted and handed to the writer with the readings.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from itertools import count

from sqlalchemy import Engine

from meterhub.aio import wait_for_event
from meterhub.collector.cycles import CycleCounter, CycleMode
from meterhub.collector.drivers import Drivers
from meterhub.collector.health import cycles_to_skip, failed, retry_due, succeeded
from meterhub.collector.intervals import Shard, claimed
from meterhub.collector.lanes import Lanes
from meterhub.collector.protocol import Reading, register_check
from meterhub.collector.targets import Target, load_targets, registry_signature
from meterhub.collector.writer import BatchWriter
from meterhub.errors import MeterError
from meterhub.registry.channels import ChannelKind
from meterhub.settings import Settings
from meterhub.storage import Point
from meterhub.times import now_us

log = logging.getLogger("meterhub.collector")

REGISTRY_CHECK_SECONDS = 1.0


class Poller:
    """Polls the meters of shard ``shard`` of ``shards`` and hands results to ``writer``."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        writer: BatchWriter,
        shard: int = 0,
        shards: int = 1,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._writer = writer
        self._shard, self._shards = shard, shards
        self._targets: dict[int, Target] = {}
        self._due: list[tuple[float, int, int]] = []  # (loop time, tiebreak, pk)
        self._tiebreak = count()
        self._queue: asyncio.Queue[Target | None] = asyncio.Queue()
        self._in_flight: set[int] = set()
        self._lanes = Lanes()
        self._drivers = Drivers(settings)
        self._signature: tuple[int, int, int] | None = None
        self._cycle = CycleCounter(shard, shards, writer.add_cycle)
        self.polls = 0
        self.failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, then finish the polls in flight (new ones are not begun)."""
        interval = self._settings.poll_interval
        self._cycle.start(now_us(), round(interval * 1e6))
        workers = self._start_workers()
        loop = asyncio.get_running_loop()
        next_check = next_reload = loop.time()
        while not stop.is_set():
            self._cycle.tick(now_us())
            now = loop.time()
            if now >= next_check:
                await self._refresh(force=now >= next_reload)
                next_check = now + REGISTRY_CHECK_SECONDS
                next_reload = now + interval if now >= next_reload else next_reload
            self._release_due(now)
            window_end = loop.time() + self._cycle.seconds_left(now_us())
            wake = min(next_check, window_end, self._due[0][0] if self._due else next_check)
            await wait_for_event(stop, max(0.005, wake - loop.time()))
        while not self._queue.empty():  # polls not begun are dropped; those in flight finish
            self._queue.get_nowait()
        for target in self._lanes.drop_waiting():
            self._in_flight.discard(target.pk)
        await self._finish(workers)

    async def sweep(self) -> None:
        """Poll every meter of the shard once, now, as fast as the concurrency allows."""
        self._cycle.start(now_us(), None)
        await self._refresh(force=True)
        workers = self._start_workers()
        for target in self._targets.values():
            self._queue.put_nowait(target)
            self._cycle.released(now_us())
        await self._finish(workers)
        self._cycle.finish(now_us())

    async def poll_shard(self, shard: Shard, phased: bool) -> None:
        """Poll once the meters of a published shard not yet stored in its interval: each
        at its phase of the interval when ``phased`` (at once if that has passed), else all
        at once. A failing meter is left out while it backs off (``retry_due``)."""
        interval = self._settings.poll_interval
        self._cycle.start(now_us(), None)
        targets = await asyncio.to_thread(self._read_shard, shard)
        workers = self._start_workers()
        for target in sorted(targets, key=lambda target: target.phase(interval)):
            if phased:
                due = shard.interval_start + round(target.phase(interval) * 1e6)
                await asyncio.sleep(max(0.0, (due - now_us()) / 1e6))
            self._queue.put_nowait(target)
            self._cycle.released(now_us())
        await self._finish(workers)
        self._cycle.finish(now_us(), CycleMode.RUN if phased else CycleMode.SWEEP)

    def _read_shard(self, shard: Shard) -> list[Target]:
        interval, backoff = self._settings.poll_interval, self._settings.poll_max_backoff
        with self._engine.begin() as conn:
            done = claimed(conn, shard.interval_start, shard.pks)
            left = [pk for pk in shard.pks if pk not in done]
            found = load_targets(conn, 0, 1, set(), left) if left else []
        return [
            target
            for target in found
            if retry_due(target.health, shard.interval_start, interval, backoff)
        ]

    def _start_workers(self) -> list[asyncio.Task[None]]:
        count = self._settings.poll_concurrency
        return [asyncio.create_task(self._work()) for _ in range(count)]

    async def _finish(self, workers: list[asyncio.Task[None]]) -> None:
        """Let the workers empty the queue and finish their polls, then end them."""
        for _ in workers:
            self._queue.put_nowait(None)
        await asyncio.gather(*workers)
        self._drivers.close()

    async def _refresh(self, *, force: bool) -> None:
        signature = await asyncio.to_thread(self._read_signature)
        if signature == self._signature and not force:
            return
        self._signature = signature
        known = set(self._targets)
        fresh = await asyncio.to_thread(self._read_targets, known)
        now = asyncio.get_running_loop().time()
        current: dict[int, Target] = {}
        for target in fresh:
            old = self._targets.get(target.pk)
            if old is None:
                self._schedule(target.pk, now + target.phase(self._settings.poll_interval))
            elif old.place != target.place:  # moved (an import): polled there from now
                log.info("meter %s now polled at %s:%s unit %s", old.device_id, *target.place)
                old.host, old.port, old.wiring = target.host, target.port, target.wiring
            # a known meter keeps its object (its channels never change): a poll in flight
            # updates the health the next poll starts from
            current[target.pk] = old or target
        for pk in set(self._targets) - set(current):
            log.info("meter %s no longer polled", self._targets[pk].device_id)
        self._targets = current

    def _read_signature(self) -> tuple[int, int, int]:
        with self._engine.begin() as conn:
            return registry_signature(conn, self._shard, self._shards)

    def _read_targets(self, known: set[int]) -> list[Target]:
        with self._engine.begin() as conn:
            return load_targets(conn, self._shard, self._shards, known)

    def _schedule(self, pk: int, at: float) -> None:
        heapq.heappush(self._due, (at, next(self._tiebreak), pk))

    def _release_due(self, now: float) -> None:
        interval = self._settings.poll_interval
        while self._due and self._due[0][0] <= now:
            at, _, pk = heapq.heappop(self._due)
            target = self._targets.get(pk)
            if target is None:
                continue  # removed from the registry: forget its slot
            if pk not in self._in_flight:
                self._in_flight.add(pk)
                self._queue.put_nowait(target)
                self._cycle.released(now_us())
            skip = cycles_to_skip(target.health, interval, self._settings.poll_max_backoff)
            at += interval * (1 + skip)
            while at <= now:  # fell behind: keep the phase, do not burst
                at += interval
            self._schedule(pk, at)

    async def _work(self) -> None:
        while (taken := await self._queue.get()) is not None:
            target = taken if self._lanes.enter(taken) else None
            while target is not None:  # then the targets that waited for its address
                try:
                    await self._poll(target)
                except Exception:
                    log.exception("polling meter %s failed unexpectedly", target.device_id)
                finally:
                    self._in_flight.discard(target.pk)
                target = self._lanes.leave(target)

    async def _poll(self, target: Target) -> None:
        started = time.perf_counter()
        try:
            values = await self._drivers.read(target)
        except MeterError as exc:
            duration, at = (time.perf_counter() - started) * 1000, now_us()
            target.health = failed(target.health, target.device_id, at, duration, str(exc))
            self.failures += 1
            self._writer.add(target.pk, target.health, [])
            self._cycle.polled(at, duration, None)
            return
        duration = (time.perf_counter() - started) * 1000
        self._record(target, values, now_us(), duration)

    def _record(self, target: Target, values: Reading, at: int, duration_ms: float) -> None:
        points, warnings = [], []
        for channel in target.channels:
            value = values[channel.name]
            quality, warning = register_check(channel, target.registers.get(channel.name), value)
            if channel.kind is ChannelKind.REGISTER:
                target.registers[channel.name] = value
            if warning:
                warnings.append(warning)
            points.append(Point(target.tag_ids[channel.name], at, value, quality))
        warning = "; ".join(warnings) or None
        target.health = succeeded(target.health, target.device_id, at, duration_ms, warning)
        self.polls += 1
        self._writer.add(target.pk, target.health, points)
        self._cycle.polled(at, duration_ms, len(points))
