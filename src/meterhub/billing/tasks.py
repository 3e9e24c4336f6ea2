"""Billing tasks: a project's cron schedule for billing one device type.

The one home of task persistence: create, read, list, update, enable/disable, delete.
Times are integer µs; callers render them in the project's timezone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, update

from meterhub.billing.cron import Cron
from meterhub.billing.tables import billing_tasks
from meterhub.errors import NotFound
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import get_project
from meterhub.times import now_us


@dataclass(frozen=True, slots=True)
class Task:
    key: str
    project_id: int
    name: str
    device_type: DeviceType
    cron: Cron
    enabled: bool
    description: str
    last_run_at: int | None
    create_time: int
    update_time: int

    @classmethod
    def from_row(cls, row: Any) -> Task:
        return cls(
            key=row.natrual_key,
            project_id=row.project_id,
            name=row.name,
            device_type=DeviceType(row.device_type),
            cron=Cron.parse(json.loads(row.crontab)),
            enabled=row.enabled,
            description=row.description,
            last_run_at=row.last_run_at,
            create_time=row.create_time,
            update_time=row.update_time,
        )


def create_task(
    conn: Connection,
    project_id: int,
    name: str,
    device_type: DeviceType,
    crontab: Mapping[str, Any],
    *,
    enabled: bool = True,
    description: str = "",
) -> Task:
    """A new task; the crontab is validated (``InvalidInput`` naming ``crontab.<field>``)."""
    cron = Cron.parse(crontab)
    get_project(conn, project_id)
    now = now_us()
    key = uuid.uuid4().hex
    conn.execute(
        insert(billing_tasks).values(
            natrual_key=key,
            project_id=project_id,
            name=name,
            device_type=device_type.value,
            crontab=json.dumps(cron.source),
            enabled=enabled,
            description=description,
            create_time=now,
            update_time=now,
        )
    )
    return get_task(conn, key)


def get_task(conn: Connection, key: str) -> Task:
    row = conn.execute(select(billing_tasks).where(billing_tasks.c.natrual_key == key)).first()
    if row is None:
        raise NotFound(f"no billing task {key}")
    return Task.from_row(row)


def list_tasks(
    conn: Connection,
    project_id: int,
    device_type: DeviceType | None = None,
    *,
    offset: int = 0,
    limit: int = 10,
) -> tuple[int, list[Task]]:
    """The total count of a project's tasks (of one type, or all) and one page, oldest first."""
    return find_tasks(conn, [project_id], device_type, offset=offset, limit=limit)


def find_tasks(
    conn: Connection,
    project_ids: Collection[int] | None,
    device_type: DeviceType | None = None,
    *,
    offset: int,
    limit: int,
) -> tuple[int, list[Task]]:
    """Like ``list_tasks``, over the projects ``project_ids`` (``None``: every project)."""
    where: list[ColumnElement[bool]] = []
    if project_ids is not None:
        where.append(billing_tasks.c.project_id.in_(list(project_ids)))
    if device_type is not None:
        where.append(billing_tasks.c.device_type == device_type.value)
    total = conn.execute(select(func.count()).select_from(billing_tasks).where(*where))
    page = conn.execute(
        select(billing_tasks)
        .where(*where)
        .order_by(billing_tasks.c.create_time, billing_tasks.c.natrual_key)
        .offset(offset)
        .limit(limit)
    )
    return total.scalar_one(), [Task.from_row(row) for row in page]


def update_task(
    conn: Connection,
    key: str,
    *,
    name: str,
    crontab: Mapping[str, Any],
    enabled: bool,
    description: str,
) -> Task:
    """Replace a task's name, schedule, state and description (its project and type stay)."""
    cron = Cron.parse(crontab)
    _update(
        conn,
        key,
        name=name,
        crontab=json.dumps(cron.source),
        enabled=enabled,
        description=description,
    )
    return get_task(conn, key)


def set_enabled(conn: Connection, key: str, enabled: bool) -> None:
    """Turn a task's scheduled runs on or off."""
    _update(conn, key, enabled=enabled)


def delete_task(conn: Connection, key: str) -> None:
    """Remove a task; the bills and runs it made are kept as history."""
    result = conn.execute(delete(billing_tasks).where(billing_tasks.c.natrual_key == key))
    if result.rowcount == 0:
        raise NotFound(f"no billing task {key}")


def _update(conn: Connection, key: str, **values: Any) -> None:
    query = update(billing_tasks).where(billing_tasks.c.natrual_key == key)
    if conn.execute(query.values(**values, update_time=now_us())).rowcount == 0:
        raise NotFound(f"no billing task {key}")
