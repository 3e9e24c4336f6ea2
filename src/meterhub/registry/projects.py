"""Projects (estates) with their timezone and currency, houses with residents, and which
house each device belongs to."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, insert, select, update

from meterhub.errors import InvalidInput, NotFound
from meterhub.registry.devices import get_device
from meterhub.registry.tables import devices, houses, projects, residents
from meterhub.times import now_us

ADDRESS_PARTS = 5
WATER_KINDS = ("tap", "purified")


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    timezone: str
    currency: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def create_project(conn: Connection, name: str, timezone: str, currency: str) -> Project:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput.field("timezone", f"unknown IANA timezone {timezone!r}") from None
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidInput.field("currency", "must be a 3-letter ISO 4217 code")
    values = {"name": name, "timezone": timezone, "currency": currency.upper()}
    query = insert(projects).values(**values, created_at=now_us()).returning(projects.c.id)
    return Project(id=conn.execute(query).scalar_one(), **values)


def get_project(conn: Connection, project_id: int) -> Project:
    row = conn.execute(select(projects).where(projects.c.id == project_id)).first()
    if row is None:
        raise NotFound(f"no project with id {project_id}")
    return Project(row.id, row.name, row.timezone, row.currency)


def create_house(
    conn: Connection,
    project_id: int,
    address: Sequence[str],
    people: Sequence[tuple[str, str]] = (),
) -> int:
    """A house at a 5-part address with its residents ``(name, cellphone)``; returns its id."""
    get_project(conn, project_id)
    if len(address) != ADDRESS_PARTS:
        raise InvalidInput.field("address", f"must have {ADDRESS_PARTS} parts")
    query = insert(houses).values(
        project_id=project_id, address=json.dumps(list(address)), created_at=now_us()
    )
    house_id: int = conn.execute(query.returning(houses.c.id)).scalar_one()
    if people:
        rows = [{"house_id": house_id, "name": n, "cellphone": c} for n, c in people]
        conn.execute(insert(residents), rows)
    return house_id


def assign_device(
    conn: Connection, device_id: str, house_id: int, water_kind: str | None = None
) -> None:
    """Put a device in a house (so its project bills it); water meters name their kind."""
    device = get_device(conn, device_id)
    if conn.execute(select(houses.c.id).where(houses.c.id == house_id)).first() is None:
        raise NotFound(f"no house with id {house_id}")
    if device.type == "water" and water_kind not in WATER_KINDS:
        raise InvalidInput.field("water_kind", f"one of {', '.join(WATER_KINDS)}")
    kind = water_kind if device.type == "water" else None
    query = update(devices).where(devices.c.id == device.pk)
    conn.execute(query.values(house_id=house_id, water_kind=kind))
