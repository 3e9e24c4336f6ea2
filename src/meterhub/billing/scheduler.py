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


class BillingScheduler:
    """Fires due billing tasks; ``tick`` is one pass, ``run`` repeats it until stopped."""

    def __init__(self, engine: Engine, *, clock: Clock = utc_now, interval: float = 15.0) -> None:
        self._engine = engine
        self._clock = clock
        self._interval = interval

    def tick(self) -> list[RunReport]:
        """Run every due fire of every enabled task; return what each run did."""
        now = self._clock()
        reports = []
        for task, zone in self._enabled_tasks():
            since = from_us(task.last_run_at or task.create_time, UTC)
            for fire in fires_between(task.cron, since, now, zone):
                with self._engine.begin() as conn:
                    report = run_task(conn, task.key, to_us(fire, UTC))
                if report.run_id is not None:
                    log.info(
                        "billing task %s at %s: %d billed, %d skipped",
                        task.key,
                        fire.isoformat(),
                        report.billed,
                        len(report.skipped),
                    )
                reports.append(report)
        return reports

    def _enabled_tasks(self) -> list[tuple[Task, ZoneInfo]]:
        query = (
            select(billing_tasks, projects.c.timezone)
            .join(projects, projects.c.id == billing_tasks.c.project_id)
            .where(billing_tasks.c.enabled.is_(True))
            .order_by(billing_tasks.c.create_time)
        )
        with self._engine.connect() as conn:
            return [(Task.from_row(row), ZoneInfo(row.timezone)) for row in conn.execute(query)]

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``interval`` seconds until ``stop``; a failing pass is logged and retried."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.tick)
            except Exception:
                log.exception("billing pass failed; retrying in %.0f s", self._interval)
            await wait_for_event(stop, self._interval)
