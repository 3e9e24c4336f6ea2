"""Retention of raw points (``METERHUB_RAW_RETENTION_DAYS``): the UTC days before the horizon
lose their compacted points; their hourly rollups stay, and so does each tag's newest
point, which compaction leaves in the row table.

The horizon, the first day kept whole, only moves forward and is recorded in
``storage_state``. Days are dropped once compacted (no row of them is left but a tag's
newest), a day a transaction, so a chunk and the chunks sharing its times go together.
Reads that would need dropped points refuse instead of answering wrongly
(``require_kept``), and so do writes the retention would drop unseen.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.db import driver_rows
from meterhub.errors import NotKept
from meterhub.storage import marks
from meterhub.storage.tables import chunks, storage_state
from meterhub.times import DAY_US, iso, now_us

_HORIZON = "raw_horizon_day"


def horizon_us(conn: Connection) -> int | None:
    """The first instant whose points are all kept, or ``None`` when nothing was dropped."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"SELECT value FROM storage_state WHERE name = {mark}"
    rows = driver_rows(conn, sql, (_HORIZON,))  # a driver-level read: on every history call
    return int(rows[0][0]) * DAY_US if rows else None


def require_kept(conn: Connection, bounds: Mapping[str, int | None]) -> None:
    """``NotKept`` naming the first of ``bounds`` (field name -> µs) before the horizon."""
    times = {name: at for name, at in bounds.items() if at is not None}
    if not times:
        return
    horizon = horizon_us(conn)
    if horizon is None:
        return
    for name, at in times.items():
        if at < horizon:
            raise NotKept.field(name, not_kept(horizon))


def not_kept(horizon: int) -> str:
    """Why a time before ``horizon`` (µs) is refused."""
    return f"points before {iso(horizon, UTC)} are not kept (raw retention)"


def retention_day(retain_us: int, now: int | None = None) -> int:
    """The first UTC day whose points a retention of ``retain_us`` keeps."""
    return ((now_us() if now is None else now) - retain_us) // DAY_US


def drop_before(engine: Engine, day: int) -> int:
    """Move the horizon to UTC ``day`` and drop the points of every day before it; the
    number of points dropped."""
    with engine.begin() as conn:
        _advance(conn, day)
        days = (
            conn.execute(
                select(chunks.c.day).where(chunks.c.day < day).distinct().order_by(chunks.c.day)
            )
            .scalars()
            .all()
        )
    dropped = 0
    for old in days:
        with engine.begin() as conn:
            result = conn.execute(
                delete(chunks).where(chunks.c.day == old).returning(chunks.c.count)
            )
            dropped += sum(result.scalars())
            marks.delete_block_of(conn, old)
    return dropped


def _advance(conn: Connection, day: int) -> None:
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(storage_state)
    conn.execute(insert.values(name=_HORIZON, value=day).on_conflict_do_nothing())
    conn.execute(
        update(storage_state)
        .where(storage_state.c.name == _HORIZON, storage_state.c.value < day)
        .values(value=day)
    )
