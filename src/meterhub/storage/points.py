"""Points, and writing them: upserts into the row table that keep each tag's latest point."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple

from psycopg.errors import UniqueViolation
from sqlalchemy import Connection, text
from sqlalchemy.sql import ColumnElement

from meterhub.storage.tables import chunks, latest_points, points


class Quality(IntEnum):
    """Quality of a point; 0 is good, anything else is flagged."""

    GOOD = 0
    REGISTER_DECREASED = 1


class Point(NamedTuple):
    tag_id: int
    ts: int
    value: float
    quality: int = Quality.GOOD


POINT_COLUMNS = (points.c.tag_id, points.c.ts, points.c.value, points.c.quality)
"""The columns of a ``Point``, in its field order."""


class TimeRange(NamedTuple):
    """Inclusive bounds in µs; ``None`` leaves a side open."""

    start: int | None = None
    end: int | None = None

    def clause(self, column: ColumnElement[int]) -> list[ColumnElement[bool]]:
        parts: list[ColumnElement[bool]] = []
        if self.start is not None:
            parts.append(column >= self.start)
        if self.end is not None:
            parts.append(column <= self.end)
        return parts


_UPSERT = (
    "INSERT INTO {table} (tag_id, ts, value, quality) {source}"
    " ON CONFLICT ({key}) DO UPDATE SET ts = excluded.ts, value = excluded.value,"
    " quality = excluded.quality{only_newer}"
)
_NEWER = " WHERE excluded.ts >= latest_points.ts"
_SQLITE_POINTS = _UPSERT.format(
    table="points", source="VALUES (?, ?, ?, ?)", key="tag_id, ts", only_newer=""
)
_SQLITE_LATEST = _UPSERT.format(
    table="latest_points", source="VALUES (?, ?, ?, ?)", key="tag_id", only_newer=_NEWER
)
_PG_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS points_in"
    " (tag_id integer, ts bigint, value double precision, quality smallint)"
    " ON COMMIT DELETE ROWS"
)
_PG_POINTS = _UPSERT.format(
    table="points", source="SELECT * FROM points_in", key="tag_id, ts", only_newer=""
)
_PG_LATEST = _UPSERT.format(
    table="latest_points",
    source="SELECT * FROM unnest(%s::integer[], %s::bigint[], %s::double precision[],"
    " %s::smallint[])",
    key="tag_id",
    only_newer=_NEWER,
)
_COLUMNS = ["integer", "bigint", "double precision", "smallint"]


def write_points(conn: Connection, batch: Sequence[Point]) -> int:
    """Upsert ``batch``: a point at an existing (tag, ts) replaces it, and within the batch
    the last point of a (tag, ts) wins; each tag's latest point follows. Returns the number
    of distinct points written.

    SQLite runs one prepared statement over the batch; PostgreSQL copies the batch into the
    table (or, when it rewrites stored points, into a staging table to upsert from), several
    times faster than row-by-row inserts. Points are written in (tag, ts) order, the order
    compaction locks them in, so concurrent writers and compaction never deadlock.
    """
    unique = {(p.tag_id, p.ts): p for p in batch}
    if not unique:
        return 0
    rows = [unique[key] for key in sorted(unique)]  # rows are locked in key order: no deadlock
    newest: dict[int, Point] = {}
    for point in rows:
        held = newest.get(point.tag_id)
        if held is None or point.ts > held.ts:
            newest[point.tag_id] = point
    if conn.dialect.name == "postgresql":
        _copy_upsert(conn, rows)
        tops = list(newest.values())
        columns = ([p.tag_id for p in tops], [p.ts for p in tops], [float(p.value) for p in tops])
        conn.exec_driver_sql(_PG_LATEST, (*columns, [p.quality for p in tops]))
    else:
        conn.exec_driver_sql(_SQLITE_POINTS, rows)
        conn.exec_driver_sql(_SQLITE_LATEST, list(newest.values()))
    return len(unique)


def _copy_upsert(conn: Connection, rows: list[Point]) -> None:
    """Copy new points straight into the table; a batch that rewrites a stored point
    (a unique violation, rolled back to a savepoint) is staged and upserted instead."""
    try:
        with conn.begin_nested():
            _copy(conn, "points (tag_id, ts, value, quality)", rows)
        return
    except UniqueViolation:
        pass
    conn.exec_driver_sql(_PG_STAGE)
    _copy(conn, "points_in", rows)
    conn.exec_driver_sql(_PG_POINTS)
    conn.exec_driver_sql("TRUNCATE points_in")


def _copy(conn: Connection, target: str, rows: list[Point]) -> None:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_COLUMNS)
        for row in rows:
            copy.write_row(row)


def latest(conn: Connection, tag_ids: Sequence[int]) -> dict[int, Point]:
    """The newest point of each tag that has one, from the table writes keep."""
    if not tag_ids:
        return {}
    if conn.dialect.name == "postgresql":
        sql = text(
            "SELECT l.tag_id, l.ts, l.value, l.quality FROM latest_points l"
            " WHERE l.tag_id = ANY(CAST(:ids AS integer[]))"
        )
        rows = conn.execute(sql, {"ids": list(tag_ids)})
    else:
        sql = text(
            "SELECT l.tag_id, l.ts, l.value, l.quality FROM json_each(:ids) t"
            " JOIN latest_points l ON l.tag_id = t.value"
        )
        rows = conn.execute(sql, {"ids": "[" + ",".join(str(int(t)) for t in tag_ids) + "]"})
    return {row.tag_id: Point(*row) for row in rows}


def delete_points(conn: Connection, tag_ids: Sequence[int]) -> None:
    """Drop every point of the given tags, stored or compacted (when the tags are deleted)."""
    if tag_ids:
        for table in (points, chunks, latest_points):
            conn.execute(table.delete().where(table.c.tag_id.in_(list(tag_ids))))
