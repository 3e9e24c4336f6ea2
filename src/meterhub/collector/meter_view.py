"""Meters as operators see them: registry entry, poll health and latest reading together."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, Select, bindparam, func, select

from meterhub.collector.health import Health, Status
from meterhub.collector.health_store import health_from_row, meter_status
from meterhub.errors import NotFound
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import Device, channel_tags, get_device
from meterhub.registry.tables import devices, houses, tags
from meterhub.storage import Point, latest
from meterhub.storage.tables import latest_points


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


_LATEST_OF_METER = (
    select(latest_points)
    .select_from(devices)
    .outerjoin(tags, tags.c.device_pk == devices.c.id)
    .outerjoin(latest_points, latest_points.c.tag_id == tags.c.id)
    .where(devices.c.device_id == bindparam("device_id"))
    .add_columns(tags.c.channel)
)
"""One meter's tags with their latest points (``None`` where a tag has none, and one row of
``None`` for a meter without tags); built once, as building it costs more than running it."""


def latest_reading(conn: Connection, device_id: str) -> tuple[int | None, dict[str, float]]:
    """The time and channel values of one meter's latest reading, as in its ``MeterView``,
    in one query; ``NotFound`` for an unknown meter."""
    rows = conn.execute(_LATEST_OF_METER, {"device_id": device_id}).all()
    if not rows:
        raise NotFound(f"no meter with id {device_id}")
    return _reading({row.channel: Point(*row[:4]) for row in rows if row.ts is not None})


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
