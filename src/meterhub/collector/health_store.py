"""Poll health per meter in the database, written with each batch of readings."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.collector.health import Health, Status
from meterhub.db import metadata
from meterhub.registry.tables import devices

meter_status = Table(
    "meter_status",
    metadata,
    Column("device_pk", Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(8), nullable=False),
    Column("last_attempt", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", BigInteger, nullable=True),
    Column("consecutive_failures", Integer, nullable=False),
    Column("last_duration_ms", Float, nullable=True),
    Column("polls", BigInteger, nullable=False),
    Column("failures", BigInteger, nullable=False),
)

HEALTH_COLUMNS = tuple(c.name for c in meter_status.columns if c.name != "device_pk")


def existing_devices(conn: Connection, pks: Collection[int]) -> set[int]:
    """Those of ``pks`` still registered (a device may be deleted while it is being polled)."""
    query = select(devices.c.id).where(devices.c.id.in_(list(pks)))
    return {pk for (pk,) in conn.execute(query)}


def save_health(conn: Connection, rows: Mapping[int, Health]) -> None:
    """Upsert health by device pk, skipping devices deleted while they were being polled."""
    if not rows:
        return
    alive = existing_devices(conn, rows.keys())
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(meter_status)
    stmt = stmt.on_conflict_do_update(
        index_elements=[meter_status.c.device_pk],
        set_={name: stmt.excluded[name] for name in HEALTH_COLUMNS},
    )
    params = [{"device_pk": pk, **asdict(h)} for pk, h in rows.items() if pk in alive]
    if params:
        conn.execute(stmt, params)


def health_from_row(row: Mapping[Any, Any]) -> Health:
    """A ``Health`` from a row holding the ``meter_status`` columns (all ``None``: never polled)."""
    if row["status"] is None:
        return Health()
    values = {name: row[name] for name in HEALTH_COLUMNS}
    return Health(**{**values, "status": Status(row["status"])})
