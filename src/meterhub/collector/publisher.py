"""Publishing polling tasks: the leader's side of polling by workers.

Each interval, the publisher plans the shards (``collector.intervals.plan``) and sends each
as it falls due, to expire at the interval's end: a task the workers could not start in
its interval is dropped by the broker, never run late in a pile. A shard is recorded as
published before it is sent, so a publisher taking over mid-interval sends only the
shards not sent yet. Meters added or removed are in the next interval's plan.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine

from meterhub.aio import wait_for_event
from meterhub.collector.intervals import (
    Shard,
    forget_before,
    interval_start,
    mark_published,
    plan,
    published,
    unmark_published,
)
from meterhub.settings import Settings
from meterhub.times import DAY_US, HOUR_US, now_us

log = logging.getLogger("meterhub.collector")

Send = Callable[[Shard, bool, int], None]
"""Publishes a shard: (shard, phased, expires at µs)."""

KEEP_US = DAY_US
"""How long published shards and claims are kept (the workers' figures read the last ones)."""


class Publisher:
    """Sends each interval's shards through ``send`` until stopped."""

    def __init__(self, settings: Settings, engine: Engine, send: Send) -> None:
        self._settings = settings
        self._engine = engine
        self._send = send

    async def run(self, stop: asyncio.Event) -> None:
        interval = self._settings.poll_interval
        length = round(interval * 1e6)
        pruned = 0
        while not stop.is_set():
            start = interval_start(now_us(), interval)
            try:
                await self._publish_interval(start, stop)
                if start - pruned >= HOUR_US:
                    await asyncio.to_thread(self._prune, start - KEEP_US)
                    pruned = start
            except Exception:
                log.exception("publishing the polls of an interval failed; trying again")
                await wait_for_event(stop, 1.0)
                continue
            await wait_for_event(stop, max(0.0, (start + length - now_us()) / 1e6))

    async def _publish_interval(self, start: int, stop: asyncio.Event) -> None:
        shards, sent = await asyncio.to_thread(self._plan, start)
        ends = start + round(self._settings.poll_interval * 1e6)
        for shard in shards:
            if shard.number in sent:
                continue
            if await wait_for_event(stop, max(0.0, (shard.due_at - now_us()) / 1e6)):
                return
            await asyncio.to_thread(self._publish, shard, ends)

    def _plan(self, start: int) -> tuple[list[Shard], set[int]]:
        settings = self._settings
        with self._engine.begin() as conn:
            shards = plan(
                conn, start, settings.poll_interval, settings.shard_size, settings.shard_seconds
            )
            return shards, published(conn, start)

    def _publish(self, shard: Shard, expires_at: int) -> None:
        """Record ``shard`` as published, then send it (a worker may take it at once: the
        record must be there); a failed send takes the record back."""
        with self._engine.begin() as conn:
            if not mark_published(conn, shard, now_us()):
                return
        try:
            self._send(shard, True, expires_at)
        except Exception:
            with self._engine.begin() as conn:
                unmark_published(conn, shard)
            raise

    def _prune(self, before: int) -> None:
        began = time.perf_counter()
        with self._engine.begin() as conn:
            forget_before(conn, before)
        log.info("forgot shards and claims older than a day in %.2f s", time.perf_counter() - began)
