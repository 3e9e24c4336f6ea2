"""The fleet at a glance: meters by health, those needing attention, the collector's last cycle.

Each figure is one query over ``devices`` joined to ``meter_status`` (aggregated in SQL),
so it stays fast with every meter of the site registered.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, case, func, select

from meterhub.collector.cycles import CycleMode, latest_cycles
from meterhub.collector.health import Health, Status
from meterhub.collector.health_store import health_from_row, meter_status
from meterhub.collector.meter_view import MeterFilter
from meterhub.registry.devices import Device
from meterhub.registry.tables import devices


@dataclass(frozen=True, slots=True)
class StatusCounts:
    """Meters by poll status; ``disabled`` and ``read_since`` count across every status."""

    online: int = 0
    offline: int = 0
    never_seen: int = 0
    disabled: int = 0
    read_since: int = 0
    """Meters whose last successful read is at or after the ``since`` asked for."""

    @property
    def total(self) -> int:
        return self.online + self.offline + self.never_seen


def status_counts(conn: Connection, project_ids: frozenset[int] | None, since: int) -> StatusCounts:
    """Meters of the projects ``project_ids`` (``None``: all) by status, in one query."""
    status = func.coalesce(meter_status.c.status, Status.NEVER_SEEN.value)
    query = (
        select(
            status.label("status"),
            func.count().label("meters"),
            func.sum(case((devices.c.enabled.is_(False), 1), else_=0)).label("disabled"),
            func.sum(case((meter_status.c.last_seen >= since, 1), else_=0)).label("read"),
        )
        .select_from(devices.outerjoin(meter_status, meter_status.c.device_pk == devices.c.id))
        .where(*MeterFilter(project_ids=project_ids).clauses())
        .group_by(status)
    )
    rows = conn.execute(query).all()
    by_status = {row.status: row.meters for row in rows}
    return StatusCounts(
        online=by_status.get(Status.ONLINE.value, 0),
        offline=by_status.get(Status.OFFLINE.value, 0),
        never_seen=by_status.get(Status.NEVER_SEEN.value, 0),
        disabled=sum(row.disabled for row in rows),
        read_since=sum(row.read for row in rows),
    )


@dataclass(frozen=True, slots=True)
class MeterHealth:
    device: Device
    health: Health


def failing_meters(
    conn: Connection, project_ids: frozenset[int] | None, *, limit: int
) -> list[MeterHealth]:
    """Enabled offline meters with the most consecutive failures first."""
    where = MeterFilter(status=Status.OFFLINE, enabled=True, project_ids=project_ids).clauses()
    query = (
        select(devices, *meter_status.c)
        .join(meter_status, meter_status.c.device_pk == devices.c.id)
        .where(*where)
        .order_by(meter_status.c.consecutive_failures.desc(), devices.c.id)
        .limit(limit)
    )
    return [
        MeterHealth(Device.from_row(row), health_from_row(row._mapping))
        for row in conn.execute(query)
    ]


@dataclass(frozen=True, slots=True)
class FleetCycle:
    """The last cycle of the collector's current shards together: counts summed,
    ``duration_s`` of the slowest shard, ``reporting`` shards of ``shards``."""

    mode: CycleMode
    shards: int
    reporting: int
    started_at: int
    duration_s: float
    due: int
    polls: int
    failures: int
    readings: int
    points: int
    updated_at: int


def last_cycle(conn: Connection) -> FleetCycle | None:
    """The shards of the newest shard count (rows of an earlier configuration left out)."""
    rows = latest_cycles(conn)
    if not rows:
        return None
    newest = max(rows, key=lambda row: row.updated_at)
    current = [row for row in rows if row.shards == newest.shards and row.shard < row.shards]
    return FleetCycle(
        mode=newest.mode,
        shards=newest.shards,
        reporting=len(current),
        started_at=min(row.started_at for row in current),
        duration_s=max(row.duration_s for row in current),
        due=sum(row.due for row in current),
        polls=sum(row.polls for row in current),
        failures=sum(row.failures for row in current),
        readings=sum(row.readings for row in current),
        points=sum(row.points for row in current),
        updated_at=newest.updated_at,
    )
