"""Billing runs as operators review them: the newest runs with their task and project."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection, select

from meterhub.billing.tables import billing_runs, billing_tasks
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import Project
from meterhub.registry.tables import projects


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run of a task; times in µs (``finished_at`` is ``None`` while it runs)."""

    task_key: str
    task_name: str
    device_type: DeviceType
    project: Project
    scheduled_at: int
    started_at: int
    finished_at: int | None
    billed: int
    skipped: int


def recent_runs(
    conn: Connection, project_ids: frozenset[int] | None, *, limit: int
) -> list[RunSummary]:
    """The newest runs of tasks of the projects ``project_ids`` (``None``: all), newest
    start first. Runs of deleted tasks are left out: their project is no longer known."""
    query = (
        select(
            billing_runs,
            billing_tasks.c.name.label("task_name"),
            billing_tasks.c.device_type,
            projects.c.id.label("project_id"),
            projects.c.name.label("project_name"),
            projects.c.timezone,
            projects.c.currency,
        )
        .join(billing_tasks, billing_tasks.c.natrual_key == billing_runs.c.task_key)
        .join(projects, projects.c.id == billing_tasks.c.project_id)
        .order_by(billing_runs.c.started_at.desc(), billing_runs.c.id.desc())
        .limit(limit)
    )
    if project_ids is not None:
        query = query.where(projects.c.id.in_(project_ids))
    return [
        RunSummary(
            task_key=row.task_key,
            task_name=row.task_name,
            device_type=DeviceType(row.device_type),
            project=Project(row.project_id, row.project_name, row.timezone, row.currency),
            scheduled_at=row.scheduled_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            billed=row.billed,
            skipped=len(json.loads(row.skipped)),
        )
        for row in conn.execute(query)
    ]
