"""Billing tasks: a project's cron schedule for billing one device type."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

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
        )


def create_task(
    conn: Connection,
    project_id: int,
    name: str,
    device_type: DeviceType,
    crontab: dict[str, Any],
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
