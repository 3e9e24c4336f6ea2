"""Tariffs per project and device type (and water kind), kept as JSON definitions."""

from __future__ import annotations

import json

from sqlalchemy import ColumnElement, Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.billing.tables import tariffs
from meterhub.billing.tou import AnyTariff, parse_tariff
from meterhub.errors import InvalidInput, NotFound
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import WATER_KINDS
from meterhub.registry.projects import get_project

TariffScope = tuple[DeviceType, str]
"""(device type, water kind or "")."""


def set_tariff(
    conn: Connection,
    project_id: int,
    device_type: DeviceType,
    tariff: AnyTariff,
    water_kind: str | None = None,
) -> AnyTariff:
    """Set (or replace) the tariff of one device type (and water kind) of a project.

    Water tariffs name their kind (``tap`` or ``purified``), electricity ones none.
    """
    kind = _kind(device_type, water_kind)
    get_project(conn, project_id)
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(tariffs).values(
        project_id=project_id,
        device_type=device_type.value,
        water_kind=kind,
        definition=json.dumps(tariff.to_json()),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[tariffs.c.project_id, tariffs.c.device_type, tariffs.c.water_kind],
        set_={"definition": stmt.excluded.definition},
    )
    conn.execute(stmt)
    return tariff


def get_tariff(
    conn: Connection, project_id: int, device_type: DeviceType, water_kind: str | None = None
) -> AnyTariff:
    query = select(tariffs.c.definition).where(*_scope(project_id, device_type, water_kind))
    definition = conn.execute(query).scalar_one_or_none()
    if definition is None:
        raise NotFound(f"project {project_id} has no {_label(device_type, water_kind)} tariff")
    return parse_tariff(json.loads(definition))


def delete_tariff(
    conn: Connection, project_id: int, device_type: DeviceType, water_kind: str | None = None
) -> None:
    """Remove one tariff; its devices are skipped by billing runs until a new one is set."""
    query = delete(tariffs).where(*_scope(project_id, device_type, water_kind))
    if conn.execute(query.returning(tariffs.c.id)).first() is None:
        raise NotFound(f"project {project_id} has no {_label(device_type, water_kind)} tariff")


def project_tariffs(conn: Connection, project_id: int) -> dict[TariffScope, AnyTariff]:
    query = select(tariffs).where(tariffs.c.project_id == project_id)
    rows = conn.execute(query.order_by(tariffs.c.device_type, tariffs.c.water_kind))
    return {
        (DeviceType(row.device_type), row.water_kind): parse_tariff(json.loads(row.definition))
        for row in rows
    }


def _kind(device_type: DeviceType, water_kind: str | None) -> str:
    """The stored water kind ("" for electricity); ``InvalidInput`` if it does not fit."""
    if device_type == DeviceType.WATER and water_kind not in WATER_KINDS:
        raise InvalidInput.field(
            "water_kind", f"water tariffs need one of {', '.join(WATER_KINDS)}"
        )
    if device_type != DeviceType.WATER and water_kind:
        raise InvalidInput.field("water_kind", f"only water tariffs have one, not {device_type}")
    return water_kind or ""


def _scope(
    project_id: int, device_type: DeviceType, water_kind: str | None
) -> tuple[ColumnElement[bool], ...]:
    return (
        tariffs.c.project_id == project_id,
        tariffs.c.device_type == device_type.value,
        tariffs.c.water_kind == _kind(device_type, water_kind),
    )


def _label(device_type: DeviceType, water_kind: str | None) -> str:
    return f"{device_type} ({water_kind})" if water_kind else str(device_type)
