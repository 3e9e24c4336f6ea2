"""The billing scheduler: runs every enabled task at each of its fire times, once.

Each pass looks, for every enabled task, at the fire times after its last run (or its
creation) up to now, in the project's timezone, and runs them oldest first, each in its
own transaction. Fires missed while the service was down are therefore billed on the
next pass; a fire already run (by this or another scheduler) is skipped by the run's
unique claim. The clock is injected, so tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from meterhub.aio import wait_for_event
from meterhub.billing.chunked import start_run, unfinished
from meterhub.billing.cron import fires_between
from meterhub.billing.runs import RunReport, run_task
from meterhub.billing.tables import billing_tasks
from meterhub.billing.tasks import Task
from meterhub.registry.tables import projects
from meterhub.times import from_us, to_us

log = logging.getLogger("meterhub.billing")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


SendChunk = Callable[[int, int], None]
"""Publishes chunk (run, chunk) of a billing run to the workers."""

RESEND_AFTER_US = 600_000_000
"""A chunk not done this long after it was sent is sent again (its task may have been lost
with the broker; a chunk done already is not billed again)."""


class BillingScheduler:
    """Fires due billing tasks; ``tick`` is one pass, ``run`` repeats it until stopped.

    With ``send_chunk``, a run is claimed here and billed by workers in chunks of
    ``chunk_size`` devices (``billing.chunked``), else it is billed here in one piece."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock = utc_now,
        interval: float = 15.0,
        send_chunk: SendChunk | None = None,
        chunk_size: int = 5000,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._interval = interval
        self._send_chunk = send_chunk
        self._chunk_size = chunk_size

    def tick(self) -> list[RunReport]:
        """Run (or send out) every due fire of every enabled task; return what each run did
        (a run sent out reports its run id, its bills come from the workers)."""
        now = self._clock()
        reports = []
        for task, zone in self._enabled_tasks():
            since = from_us(task.last_run_at or task.create_time, UTC)
            for fire in fires_between(task.cron, since, now, zone):
                report = self._fire(task.key, to_us(fire, UTC))
                if report.run_id is not None:
                    log.info(
                        "billing task %s at %s: %d billed, %d skipped",
                        task.key,
                        fire.isoformat(),
                        report.billed,
                        len(report.skipped),
                    )
                reports.append(report)
        if self._send_chunk is not None:
            with self._engine.begin() as conn:
                for run_id, chunk in unfinished(conn, to_us(now, UTC) - RESEND_AFTER_US):
                    self._send_chunk(run_id, chunk)
        return reports

    def _fire(self, key: str, at: int) -> RunReport:
        with self._engine.begin() as conn:
            if self._send_chunk is None:
                return run_task(conn, key, at)
            started = start_run(conn, key, at, self._chunk_size)
        if started is None:
            return RunReport(key, at, None)
        run_id, chunks = started
        for chunk in chunks:  # once claimed (a chunk not sent is sent again: ``unfinished``)
            self._send_chunk(run_id, chunk)
        return RunReport(key, at, run_id)

    def _enabled_tasks(self) -> list[tuple[Task, ZoneInfo]]:
        query = (
            select(billing_tasks, projects.c.timezone)
            .join(projects, projects.c.id == billing_tasks.c.project_id)
            .where(billing_tasks.c.enabled.is_(True))
            .order_by(billing_tasks.c.create_time)
        )
        with self._engine.begin() as conn:
            return [(Task.from_row(row), ZoneInfo(row.timezone)) for row in conn.execute(query)]

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``interval`` seconds until ``stop``; a failing pass is logged and retried."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.tick)
            except Exception:
                log.exception("billing pass failed; retrying in %.0f s", self._interval)
            await wait_for_event(stop, self._interval)
