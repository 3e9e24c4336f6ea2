"""Buffers readings, health and the poll log, and writes them in one transaction per batch."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import NamedTuple

from sqlalchemy import Connection, Engine

from meterhub.aio import wait_for_event
from meterhub.collector.cycles import CycleStats, save_cycle
from meterhub.collector.health import Health
from meterhub.collector.health_store import save_health
from meterhub.collector.intervals import claim
from meterhub.collector.poll_log import PollEntry, poll_entry, prune_poll_log, save_poll_log
from meterhub.storage import Point, write_points
from meterhub.times import DAY_US, now_us

log = logging.getLogger("meterhub.collector")

PRUNE_EVERY_SECONDS = 3600.0


class _Batch(NamedTuple):
    """What one transaction writes."""

    points: list[Point]
    health: dict[int, Health]
    polls: list[PollEntry]
    cycle: CycleStats | None


class BatchWriter:
    """Collects points, health and cycle counts from the pollers; a background task writes them.

    With ``claims`` (an interval's start, for a worker's polling task) each poll is written
    with its claim of the meter in that interval, and dropped if another run claimed it
    first (``collector.intervals``).

    A batch is written when ``batch_size`` points wait or ``flush_interval`` passes,
    in a worker thread so polling never waits for the database. A failed write keeps
    the batch for the next attempt; ``close`` writes whatever is left. The poll log of
    the meters seen is pruned to ``poll_log_days`` at most once an hour (and on ``close``
    if it has not been yet, unless ``prune_on_close`` is false).
    """

    def __init__(
        self,
        engine: Engine,
        batch_size: int,
        flush_interval: float,
        poll_log_days: float,
        claims: int | None = None,
        prune_on_close: bool = True,
    ) -> None:
        self._engine = engine
        self._claims = claims
        self._prune_on_close = prune_on_close
        self._owners: dict[int, int] = {}  # tag id -> device pk, when claiming
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._keep_us = round(poll_log_days * DAY_US)
        self._points: list[Point] = []
        self._health: dict[int, Health] = {}
        self._polls: list[PollEntry] = []
        self._cycle: CycleStats | None = None
        self._seen: set[int] = set()
        self._last_prune: float | None = None
        self._started = time.monotonic()
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closing = False
        self.points_written = 0

    def add(self, device_pk: int, health: Health, points: list[Point]) -> None:
        """The outcome of one poll: ``health`` after it and the points it read."""
        self._points.extend(points)
        if self._claims is not None:
            self._owners.update((point.tag_id, device_pk) for point in points)
        self._health[device_pk] = health
        self._polls.append(poll_entry(device_pk, health))
        self._seen.add(device_pk)
        if len(self._points) >= self._batch_size:
            self._full.set()

    def add_cycle(self, stats: CycleStats) -> None:
        """Counts of a cycle that ended; written with the next batch (a newer one replaces it)."""
        self._cycle = stats

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
            if await self._flush_locked() and self._prune_due():
                self._last_prune = time.monotonic()
                await asyncio.to_thread(self._prune, set(self._seen))

    async def _flush_locked(self) -> bool:
        """Write everything buffered; false if a write failed (what is left waits for a retry)."""
        self._full.clear()
        while self._points or self._health or self._polls or self._cycle:
            batch = self._take()
            try:
                written = await asyncio.to_thread(self._write, batch)
            except Exception:
                log.exception("writing %d readings failed; will retry", len(batch.points))
                self._put_back(batch)
                return False
            self.points_written += written
        return True

    @property
    def pending(self) -> int:
        """Polls waiting to be written (after ``close``: those that could not be)."""
        return len(self._polls)

    def _take(self) -> _Batch:
        # a claiming batch holds whole polls: a meter's claim and its points go together
        size = self._batch_size if self._claims is None else len(self._points)
        batch = _Batch(self._points[:size], self._health, self._polls, self._cycle)
        self._points = self._points[size:]
        self._health, self._polls, self._cycle = {}, [], None
        return batch

    def _put_back(self, batch: _Batch) -> None:
        self._points[:0] = batch.points
        self._health = {**batch.health, **self._health}
        self._polls[:0] = batch.polls
        self._cycle = self._cycle or batch.cycle

    def _write(self, batch: _Batch) -> int:
        """Write ``batch`` in one transaction; the points written."""
        with self._engine.begin() as conn:
            if self._claims is not None:
                batch = self._claimed(conn, self._claims, batch)
            write_points(conn, batch.points)
            save_health(conn, batch.health)
            save_poll_log(conn, batch.polls)
            if batch.cycle is not None:
                save_cycle(conn, batch.cycle)
        return len(batch.points)

    def _claimed(self, conn: Connection, interval: int, batch: _Batch) -> _Batch:
        """``batch`` without the polls of meters stored in the interval already (another
        run of the same shard got there first), the rest claimed in ``conn``."""
        won = claim(conn, interval, list(batch.health))
        if len(won) == len(batch.health):
            return batch
        log.warning("%d meters were stored in this interval already", len(batch.health) - len(won))
        return _Batch(
            [point for point in batch.points if self._owners.get(point.tag_id) in won],
            {pk: health for pk, health in batch.health.items() if pk in won},
            [poll for poll in batch.polls if poll.device_pk in won],
            batch.cycle,
        )

    def _prune_due(self) -> bool:
        if not self._seen:
            return False
        if self._last_prune is None and self._closing:
            return self._prune_on_close
        since = self._started if self._last_prune is None else self._last_prune
        return time.monotonic() - since >= PRUNE_EVERY_SECONDS

    def _prune(self, device_pks: set[int]) -> None:
        """Fold logged polls older than the window into hours; a failure waits for the next turn."""
        try:
            with self._engine.begin() as conn:
                deleted = prune_poll_log(conn, device_pks, now_us() - self._keep_us)
            log.info("folded %d logged polls of %d meters into hours", deleted, len(device_pks))
        except Exception:
            log.exception("pruning the poll log failed")
