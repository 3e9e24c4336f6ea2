"""Projects (estates) with their timezone and currency, houses with residents, and which
house each device belongs to.

Every function validates what it stores and raises ``InvalidInput`` naming each bad field
(``name``, ``timezone``, ``currency``, ``address``, ``address[i]``, ``residents[i].name``,
``residents[i].cellphone``, ``device_id``, ``water_kind``), so the API, the CLI and the demo
share one set of rules. Bills keep their own snapshot of a house's address and residents:
nothing here ever touches them.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import Connection, Select, delete, distinct, func, insert, select, update

from meterhub.errors import Forbidden, InvalidInput, NotFound
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import WATER_KINDS, get_device
from meterhub.registry.tables import devices, houses, projects, residents
from meterhub.times import now_us

ADDRESS_PARTS = 5
NAME_MAX = 255
CELLPHONE = re.compile(r"[0-9+ -]{3,32}")
"""Digits, ``+``, spaces and dashes, 3-32 characters (at least one digit)."""
_NOT_ZONES = frozenset({"localtime", "posixrules"})
PROJECT_COLUMNS = (projects.c.id, projects.c.name, projects.c.timezone, projects.c.currency)
"""The columns of a ``Project``, in its field order."""


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    timezone: str
    currency: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Resident:
    name: str
    cellphone: str


@dataclass(frozen=True, slots=True)
class HouseDevice:
    device_id: str
    type: DeviceType
    water_kind: str | None


@dataclass(frozen=True, slots=True)
class House:
    id: int
    project_id: int
    address: tuple[str, ...]
    residents: tuple[Resident, ...]
    devices: tuple[HouseDevice, ...]


@dataclass(frozen=True, slots=True)
class HousePlace:
    """Where a house is: its address and its project."""

    house_id: int
    address: tuple[str, ...]
    project: Project


# Projects


def create_project(conn: Connection, name: str, timezone: str, currency: str) -> Project:
    values = _project_values(name=name, timezone=timezone, currency=currency)
    query = insert(projects).values(**values, created_at=now_us()).returning(projects.c.id)
    return Project(id=conn.execute(query).scalar_one(), **values)


def get_project(conn: Connection, project_id: int) -> Project:
    row = conn.execute(select(projects).where(projects.c.id == project_id)).first()
    if row is None:
        raise NotFound(f"no project with id {project_id}")
    return Project(row.id, row.name, row.timezone, row.currency)


def list_projects(
    conn: Connection, only: Collection[int] | None, *, offset: int, limit: int
) -> tuple[int, list[Project]]:
    """``(total, page)`` of projects by id; ``only`` restricts them to those ids."""
    where = [] if only is None else [projects.c.id.in_(list(only))]
    total = conn.execute(select(func.count()).select_from(projects).where(*where)).scalar_one()
    query = select(projects).where(*where).order_by(projects.c.id).offset(offset).limit(limit)
    found = [Project(r.id, r.name, r.timezone, r.currency) for r in conn.execute(query)]
    return total, found


@dataclass(frozen=True, slots=True)
class ProjectSize:
    houses: int
    devices: int


def project_sizes(conn: Connection, project_ids: Collection[int]) -> dict[int, ProjectSize]:
    """How many houses, and devices in them, each of ``project_ids`` has (in one query)."""
    query = (
        select(houses.c.project_id, func.count(distinct(houses.c.id)), func.count(devices.c.id))
        .select_from(houses.outerjoin(devices, devices.c.house_id == houses.c.id))
        .where(houses.c.project_id.in_(list(project_ids)))
        .group_by(houses.c.project_id)
    )
    found = {row[0]: ProjectSize(row[1], row[2]) for row in conn.execute(query)}
    return {project_id: found.get(project_id, ProjectSize(0, 0)) for project_id in project_ids}


def update_project(
    conn: Connection,
    project_id: int,
    *,
    name: str | None = None,
    timezone: str | None = None,
    currency: str | None = None,
) -> Project:
    """Change the given fields; a new timezone applies to billing fires from now on."""
    get_project(conn, project_id)
    values = _project_values(name=name, timezone=timezone, currency=currency)
    if values:
        conn.execute(update(projects).where(projects.c.id == project_id).values(**values))
    return get_project(conn, project_id)


def delete_project(conn: Connection, project_id: int) -> None:
    """Remove a project and its houses (their devices stay, unassigned).

    Rows of later layers that name the project (tariffs, billing tasks, user grants) go by
    their foreign keys' ``ON DELETE CASCADE``; whether a project with bills may be deleted is
    billing's decision (``meterhub.billing.project_removal.delete_project``).
    """
    get_project(conn, project_id)
    in_project = select(houses.c.id).where(houses.c.project_id == project_id)
    _unassign_all(conn, in_project)
    conn.execute(delete(residents).where(residents.c.house_id.in_(in_project)))
    conn.execute(delete(houses).where(houses.c.project_id == project_id))
    conn.execute(delete(projects).where(projects.c.id == project_id))


def _project_values(
    *, name: str | None, timezone: str | None, currency: str | None
) -> dict[str, str]:
    """The given fields, checked and normalised; ``InvalidInput`` naming every bad one."""
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    if name is not None:
        values["name"] = name.strip()
        if not 1 <= len(values["name"]) <= NAME_MAX:
            errors["name"] = f"must be 1-{NAME_MAX} characters"
    if timezone is not None:
        values["timezone"] = timezone
        if not is_timezone(timezone):
            errors["timezone"] = f"unknown IANA timezone {timezone!r} (e.g. 'Asia/Shanghai')"
    if currency is not None:
        values["currency"] = currency.upper()
        if not re.fullmatch(r"[A-Z]{3}", values["currency"]):
            errors["currency"] = "must be a 3-letter ISO 4217 code (e.g. 'CNY')"
    if errors:
        raise InvalidInput(errors)
    return values


def is_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA timezone key such as ``Europe/Berlin``."""
    if name in _NOT_ZONES or name not in _zone_names():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


# Houses and residents


def create_house(
    conn: Connection,
    project_id: int,
    address: Sequence[str],
    people: Sequence[tuple[str, str]] = (),
) -> int:
    """A house at a 5-part address with its residents ``(name, cellphone)``; returns its id."""
    get_project(conn, project_id)
    parts, listed = _house_values(address, people)
    assert parts is not None
    query = insert(houses).values(project_id=project_id, address=parts, created_at=now_us())
    house_id: int = conn.execute(query.returning(houses.c.id)).scalar_one()
    _insert_residents(conn, house_id, listed or [])
    return house_id


def get_house(conn: Connection, house_id: int) -> House:
    row = conn.execute(select(houses).where(houses.c.id == house_id)).first()
    if row is None:
        raise NotFound(f"no house with id {house_id}")
    return _houses(conn, [(row.id, row.project_id, row.address)])[0]


def house_places(conn: Connection, house_ids: Collection[int]) -> dict[int, HousePlace]:
    """``{house id: HousePlace}`` of the existing ones of ``house_ids``, in one query."""
    if not house_ids:
        return {}
    query = (
        select(houses.c.id.label("house_id"), houses.c.address, *PROJECT_COLUMNS)
        .join(projects, projects.c.id == houses.c.project_id)
        .where(houses.c.id.in_(list(house_ids)))
    )
    return {
        row.house_id: HousePlace(row.house_id, tuple(json.loads(row.address)), Project(*row[2:]))
        for row in conn.execute(query)
    }


def list_houses(
    conn: Connection, project_id: int, *, offset: int, limit: int
) -> tuple[int, list[House]]:
    """``(total, page)`` of a project's houses by id, each with residents and devices."""
    get_project(conn, project_id)
    where = houses.c.project_id == project_id
    total = conn.execute(select(func.count()).select_from(houses).where(where)).scalar_one()
    query = select(houses.c.id, houses.c.project_id, houses.c.address).where(where)
    rows = conn.execute(query.order_by(houses.c.id).offset(offset).limit(limit))
    return total, _houses(conn, [(r.id, r.project_id, r.address) for r in rows])


def update_house(
    conn: Connection,
    house_id: int,
    *,
    address: Sequence[str] | None = None,
    people: Sequence[tuple[str, str]] | None = None,
) -> House:
    """Change the address and/or replace the residents; issued bills keep their snapshot."""
    get_house(conn, house_id)
    parts, listed = _house_values(address, people)
    if parts is not None:
        conn.execute(update(houses).where(houses.c.id == house_id).values(address=parts))
    if listed is not None:
        conn.execute(delete(residents).where(residents.c.house_id == house_id))
        _insert_residents(conn, house_id, listed)
    return get_house(conn, house_id)


def delete_house(conn: Connection, house_id: int) -> None:
    """Remove a house and its residents; its devices stay, unassigned."""
    get_house(conn, house_id)
    _unassign_all(conn, select(houses.c.id).where(houses.c.id == house_id))
    conn.execute(delete(residents).where(residents.c.house_id == house_id))
    conn.execute(delete(houses).where(houses.c.id == house_id))


def _house_values(
    address: Sequence[str] | None, people: Sequence[tuple[str, str]] | None
) -> tuple[str | None, list[dict[str, str]] | None]:
    """The address as stored (JSON) and the residents as rows, checked; ``None`` = not given."""
    errors: dict[str, str] = {}
    parts = None if address is None else [part.strip() for part in address]
    if parts is not None and len(parts) != ADDRESS_PARTS:
        errors["address"] = f"must have exactly {ADDRESS_PARTS} parts, not {len(parts)}"
    for i, part in enumerate(parts or []):
        if len(part) > NAME_MAX:
            errors[f"address[{i}]"] = f"must be at most {NAME_MAX} characters"
    listed = None if people is None else [_resident(i, *p, errors) for i, p in enumerate(people)]
    if errors:
        raise InvalidInput(errors)
    return (None if parts is None else json.dumps(parts, ensure_ascii=False)), listed


def _resident(i: int, name: str, cellphone: str, errors: dict[str, str]) -> dict[str, str]:
    name, cellphone = name.strip(), cellphone.strip()
    if not 1 <= len(name) <= NAME_MAX:
        errors[f"residents[{i}].name"] = f"must be 1-{NAME_MAX} characters"
    if not CELLPHONE.fullmatch(cellphone) or not any(c.isdigit() for c in cellphone):
        errors[f"residents[{i}].cellphone"] = (
            "must be 3-32 characters of digits, '+', spaces and dashes"
        )
    return {"name": name, "cellphone": cellphone}


def _insert_residents(conn: Connection, house_id: int, listed: list[dict[str, str]]) -> None:
    if listed:
        conn.execute(insert(residents), [{"house_id": house_id, **person} for person in listed])


def _houses(conn: Connection, rows: Sequence[tuple[int, int, str]]) -> list[House]:
    """Houses with their residents and devices, in two queries whatever their number."""
    ids = [house_id for house_id, _, _ in rows]
    people: dict[int, list[Resident]] = defaultdict(list)
    query = select(residents).where(residents.c.house_id.in_(ids)).order_by(residents.c.id)
    for r in conn.execute(query):
        people[r.house_id].append(Resident(r.name, r.cellphone))
    meters: dict[int, list[HouseDevice]] = defaultdict(list)
    query = select(devices).where(devices.c.house_id.in_(ids)).order_by(devices.c.device_id)
    for d in conn.execute(query):
        meters[d.house_id].append(HouseDevice(d.device_id, DeviceType(d.type), d.water_kind))
    return [
        House(i, project, tuple(json.loads(address)), tuple(people[i]), tuple(meters[i]))
        for i, project, address in rows
    ]


# Devices in houses


def assign_device(
    conn: Connection,
    device_id: str,
    house_id: int,
    water_kind: str | None = None,
    *,
    across_projects: bool = True,
) -> HouseDevice:
    """Put a device in a house (so its project bills it); water meters name their kind.

    A device is in one house at most: assigning it elsewhere moves it. Moving it out of
    another project's house raises ``Forbidden`` unless ``across_projects``.
    """
    target = get_house(conn, house_id)
    try:
        device = get_device(conn, device_id)
    except NotFound as exc:
        raise InvalidInput.field("device_id", str(exc)) from None
    if device.type == DeviceType.WATER and water_kind not in WATER_KINDS:
        raise InvalidInput.field("water_kind", f"water meters need one of {', '.join(WATER_KINDS)}")
    if device.type != DeviceType.WATER and water_kind is not None:
        raise InvalidInput.field("water_kind", f"only water meters have one, not {device.type}")
    current = conn.execute(
        select(houses.c.project_id)
        .join(devices, devices.c.house_id == houses.c.id)
        .where(devices.c.id == device.pk)
    ).scalar_one_or_none()
    if current not in (None, target.project_id) and not across_projects:
        raise Forbidden(
            f"meter {device_id} is in another project's house; "
            "only an administrator can move it between projects"
        )
    query = update(devices).where(devices.c.id == device.pk)
    conn.execute(query.values(house_id=house_id, water_kind=water_kind))
    return HouseDevice(device.device_id, device.type, water_kind)


def unassign_device(conn: Connection, house_id: int, device_id: str) -> None:
    """Take a device out of its house; ``NotFound`` unless it is in that house."""
    found = conn.execute(
        update(devices)
        .where(devices.c.device_id == device_id, devices.c.house_id == house_id)
        .values(house_id=None, water_kind=None)
        .returning(devices.c.id)
    ).first()
    if found is None:
        raise NotFound(f"no meter {device_id} in house {house_id}")


def _unassign_all(conn: Connection, house_ids: Select[tuple[int]]) -> None:
    """Unassign every device of the houses ``house_ids`` selects."""
    query = update(devices).where(devices.c.house_id.in_(house_ids))
    conn.execute(query.values(house_id=None, water_kind=None))
