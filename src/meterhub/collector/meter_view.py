"""Meters as operators see them: registry entry, poll health and latest reading together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, func, select

from meterhub.collector.health import Health, Status
from meterhub.collector.health_store import health_from_row, meter_status
from meterhub.errors import NotFound
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import Device, channel_tags, get_device
from meterhub.registry.tables import devices, houses, tags
from meterhub.short_reads import Statement, text
from meterhub.storage import Point, latest
from meterhub.storage.points import latest_join


@dataclass(frozen=True, slots=True)
class MeterView:
    device: Device
    health: Health
    reading_ts: int | None
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class MeterFilter:
    status: Status | None = None
    type: DeviceType | None = None
    enabled: bool | None = None
    search: str | None = None
    project_ids: frozenset[int] | None = None
    """Only meters in houses of these projects (``None``: every meter)."""

    def clauses(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.project_ids is not None:
            in_projects = select(houses.c.id).where(houses.c.project_id.in_(self.project_ids))
            where.append(devices.c.house_id.in_(in_projects))
        if self.status is Status.NEVER_SEEN:
            where.append(meter_status.c.status.is_(None))
        elif self.status is not None:
            where.append(meter_status.c.status == self.status.value)
        if self.type is not None:
            where.append(devices.c.type == self.type.value)
        if self.enabled is not None:
            where.append(devices.c.enabled.is_(self.enabled))
        if self.search:
            where.append(devices.c.device_id.contains(self.search, autoescape=True))
        return where


def meter_view(conn: Connection, device_id: str) -> MeterView:
    device = get_device(conn, device_id)
    row = conn.execute(select(meter_status).where(meter_status.c.device_pk == device.pk)).first()
    health = health_from_row(row._mapping) if row else Health()
    return _with_readings(conn, [(device, health)], {device.pk: channel_tags(conn, device.pk)})[0]


METER_LATEST_SQL = (
    "SELECT d.id, t.channel, l.ts, l.value FROM devices d"
    f" LEFT JOIN tags t ON t.device_pk = d.id {latest_join('t.id')} WHERE d.device_id = $1"
)
METER_LATEST = Statement("meter_latest", METER_LATEST_SQL, (int, text, int, float))
"""One meter's tags with their latest points, a short read (``meterhub.short_reads``):
``(device pk, channel, ts, value)`` per tag, ``ts`` and ``value`` ``None`` where a tag has
no point yet; one row of ``None`` after the pk for a meter without tags; no row for an
unknown meter. ``latest_reading`` reads them."""


def latest_reading(
    device_id: str, rows: Sequence[Sequence[Any]]
) -> tuple[int | None, dict[str, float]]:
    """The time and channel values of one meter's latest reading, as in its ``MeterView``,
    from its ``METER_LATEST`` rows; ``NotFound`` for an unknown meter."""
    if not rows or rows[0][0] is None:
        raise NotFound(f"no meter with id {device_id}")
    points = [(channel, ts, float(value)) for _, channel, ts, value in rows if ts is not None]
    reading_ts = max((ts for _, ts, _ in points), default=None)
    return reading_ts, {channel: value for channel, ts, value in points if ts == reading_ts}


def list_meter_views(
    conn: Connection, where: MeterFilter, *, offset: int, limit: int
) -> tuple[int, list[MeterView]]:
    """One page of meters in registration order, and the total count."""
    base: Select[tuple[int]] = (
        select(devices.c.id)
        .outerjoin(meter_status, meter_status.c.device_pk == devices.c.id)
        .where(*where.clauses())
    )
    total = conn.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    page = (
        select(devices, *meter_status.c)
        .outerjoin(meter_status, meter_status.c.device_pk == devices.c.id)
        .where(*where.clauses())
        .order_by(devices.c.id)
        .offset(offset)
        .limit(limit)
    )
    pairs = [(Device.from_row(row), health_from_row(row._mapping)) for row in conn.execute(page)]
    tag_map: dict[int, dict[str, int]] = {}
    pks = [device.pk for device, _ in pairs]
    for row in conn.execute(
        select(tags.c.device_pk, tags.c.channel, tags.c.id).where(tags.c.device_pk.in_(pks))
    ):
        tag_map.setdefault(row.device_pk, {})[row.channel] = row.id
    return total, _with_readings(conn, pairs, tag_map)


def _with_readings(
    conn: Connection, pairs: list[tuple[Device, Health]], tag_map: dict[int, dict[str, int]]
) -> list[MeterView]:
    found = latest(conn, [t for channels in tag_map.values() for t in channels.values()])
    views = []
    for device, health in pairs:
        channels = tag_map.get(device.pk, {})
        points = {name: found[t] for name, t in channels.items() if t in found}
        views.append(MeterView(device, health, *_reading(points)))
    return views


def _reading(points: dict[str, Point]) -> tuple[int | None, dict[str, float]]:
    """The newest time among the channels' latest points, and the channels read then."""
    reading_ts = max((p.ts for p in points.values()), default=None)
    return reading_ts, {name: p.value for name, p in points.items() if p.ts == reading_ts}
