"""Tariffs per project and device type (and water kind), kept as JSON definitions."""

from __future__ import annotations

import json

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.billing.tables import tariffs
from meterhub.billing.tariffs import Tariff
from meterhub.registry.channels import DeviceType

TariffScope = tuple[DeviceType, str]
"""(device type, water kind or "")."""


def set_tariff(
    conn: Connection,
    project_id: int,
    device_type: DeviceType,
    tariff: Tariff,
    water_kind: str | None = None,
) -> None:
    """Set (or replace) the tariff of one device type (and water kind) of a project."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(tariffs).values(
        project_id=project_id,
        device_type=device_type.value,
        water_kind=water_kind or "",
        definition=json.dumps(tariff.to_json()),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[tariffs.c.project_id, tariffs.c.device_type, tariffs.c.water_kind],
        set_={"definition": stmt.excluded.definition},
    )
    conn.execute(stmt)


def project_tariffs(conn: Connection, project_id: int) -> dict[TariffScope, Tariff]:
    rows = conn.execute(select(tariffs).where(tariffs.c.project_id == project_id))
    return {
        (DeviceType(row.device_type), row.water_kind): Tariff.from_json(json.loads(row.definition))
        for row in rows
    }
