"""Buffers readings and health, and writes them in one transaction per batch."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine

from meterhub.aio import wait_for_event
from meterhub.collector.health import Health
from meterhub.collector.health_store import save_health
from meterhub.storage import Point, write_points

log = logging.getLogger("meterhub.collector")


class BatchWriter:
    """Collects points and health from the pollers; a background task writes them.

    A batch is written when ``batch_size`` points wait or ``flush_interval`` passes,
    in a worker thread so polling never waits for the database. A failed write keeps
    the batch for the next attempt; ``close`` writes whatever is left.
    """

    def __init__(self, engine: Engine, batch_size: int, flush_interval: float) -> None:
        self._engine = engine
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._points: list[Point] = []
        self._health: dict[int, Health] = {}
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closing = False
        self.points_written = 0

    def add(self, device_pk: int, health: Health, points: list[Point]) -> None:
        self._points.extend(points)
        self._health[device_pk] = health
        if len(self._points) >= self._batch_size:
            self._full.set()

    async def run(self) -> None:
        """Flush on size or time until ``close``; never raises on database errors."""
        while not self._closing:
            await wait_for_event(self._full, self._flush_interval)
            await self.flush()

    async def close(self) -> None:
        self._closing = True
        self._full.set()
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        self._full.clear()
        while self._points or self._health:
            batch, self._points = self._points[: self._batch_size], self._points[self._batch_size :]
            health, self._health = self._health, {}
            try:
                await asyncio.to_thread(self._write, batch, health)
            except Exception:
                log.exception("writing %d readings failed; will retry", len(batch))
                self._points[:0] = batch
                self._health = {**health, **self._health}
                return
            self.points_written += len(batch)

    def _write(self, batch: list[Point], health: dict[int, Health]) -> None:
        with self._engine.begin() as conn:
            write_points(conn, batch)
            save_health(conn, health)
