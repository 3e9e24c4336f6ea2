"""Points, and writing them: upserts into the row table, which always holds each tag's
newest point (compaction never moves it), so a tag's latest value is one index seek."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Collection, Sequence
from enum import IntEnum
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.errors import UniqueViolation
from sqlalchemy import Connection
from sqlalchemy.sql import ColumnElement

from meterhub.db import driver_rows
from meterhub.registry.tags import ACTIVITY_COLUMNS, ACTIVITY_JOIN, rows_by_keys
from meterhub.storage.tables import points


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

    def bounds(self) -> tuple[int, int]:
        """Both bounds, an open side as the smallest or largest 64-bit integer."""
        return (
            -(2**63) if self.start is None else self.start,
            2**63 - 1 if self.end is None else self.end,
        )

    def clause(self, column: ColumnElement[int]) -> list[ColumnElement[bool]]:
        parts: list[ColumnElement[bool]] = []
        if self.start is not None:
            parts.append(column >= self.start)
        if self.end is not None:
            parts.append(column <= self.end)
        return parts


_UPSERT = (
    "INSERT INTO points (tag_id, ts, value, quality) {source}"
    " ON CONFLICT (tag_id, ts) DO UPDATE SET value = excluded.value, quality = excluded.quality"
)
_PG_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS points_in"
    " (tag_id integer, ts bigint, value double precision, quality smallint)"
    " ON COMMIT DELETE ROWS"
)
_PG_POINTS = _UPSERT.format(source="SELECT * FROM points_in")

_SQLITE_ROWS = 256
"""Rows per SQLite statement: 1,024 parameters, within the limit of any SQLite since 3.32
(the older limit of 999 gets statements of 128 rows)."""

_COPY_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("tag_size", ">i4"),
        ("tag_id", ">i4"),
        ("ts_size", ">i4"),
        ("ts", ">i8"),
        ("value_size", ">i4"),
        ("value", ">f8"),
        ("quality_size", ">i4"),
        ("quality", ">i2"),
    ]
)
"""One row of PostgreSQL's binary COPY format: the field count, then each field's byte
length and big-endian value."""
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
_COPY_TRAILER = b"\xff\xff"


class PointColumns(NamedTuple):
    """Points as arrays, one element a point, in any order."""

    tag_id: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int64]

    @classmethod
    def of(cls, batch: Sequence[Point]) -> PointColumns:
        tag_id, ts, value, quality = zip(*batch, strict=True) if batch else ((), (), (), ())
        return cls(
            np.array(tag_id, np.int64),
            np.array(ts, np.int64),
            np.array(value, np.float64),
            np.array(quality, np.int64),
        )

    def take(self, which: slice | npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> PointColumns:
        return PointColumns(
            self.tag_id[which], self.ts[which], self.value[which], self.quality[which]
        )


def write_points(conn: Connection, batch: Sequence[Point]) -> int:
    """Upsert ``batch``: a point at an existing (tag, ts) replaces it, and within the batch
    the last point of a (tag, ts) wins. Returns the number of distinct points written.
    See ``write_columns``."""
    return write_columns(conn, PointColumns.of(batch))


def write_columns(conn: Connection, batch: PointColumns, *, rewrite: bool | None = None) -> int:
    """``write_points`` of points given as columns.

    SQLite runs a few statements of many rows each (one prepared statement per size);
    PostgreSQL copies the batch into the table in binary, built in bulk (or, when it
    rewrites stored points, into a staging table to upsert from), several times faster
    than row-by-row inserts. Points are written in (tag, ts) order, the order compaction
    locks them in, so concurrent writers and compaction never deadlock.

    ``rewrite`` is for PostgreSQL callers that own the transaction: ``None`` copies in a
    savepoint and, on a unique violation, upserts instead (within any transaction);
    ``False`` copies without a savepoint (two round trips fewer): a batch rewriting a
    stored point raises ``UniqueViolation`` and fails the transaction, which the caller
    rolls back to write the batch again with ``True``, which upserts straight away.
    """
    if not len(batch.ts):
        return 0
    rows = batch.take(_key_order(batch.tag_id, batch.ts))
    driver = conn.connection.driver_connection
    with contextlib.closing(driver.cursor()) as cursor:  # type: ignore[union-attr]
        if conn.dialect.name == "postgresql":
            data = _copy_data(rows)
            if rewrite is None:
                _copy_upsert(conn, cursor, data)
            elif rewrite:
                _staged_upsert(cursor, data)
            else:
                _copy(cursor, "points (tag_id, ts, value, quality)", data)
        else:
            _sqlite_upsert(cursor, rows)
    return len(rows.ts)


def _key_order(
    tag_id: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]
) -> npt.NDArray[np.intp] | slice:
    """The rows to write in (tag, ts) order, each (tag, ts) once: its last occurrence."""
    if len(ts) > 1:
        step_tag, step_ts = np.diff(tag_id), np.diff(ts)
        if ((step_tag > 0) | ((step_tag == 0) & (step_ts > 0))).all():
            return slice(None)  # in order already, nothing repeated (the usual batch)
    order = np.lexsort((ts, tag_id))  # stable: repeats stay in the order they came
    sorted_tag, sorted_ts = tag_id[order], ts[order]
    keep = np.ones(len(order), np.bool_)
    keep[:-1] = (sorted_tag[1:] != sorted_tag[:-1]) | (sorted_ts[1:] != sorted_ts[:-1])
    return order[keep]


def _sqlite_upsert(cursor: sqlite3.Cursor, rows: PointColumns) -> None:
    """Upsert ``rows`` by statements of many rows each: a full statement of
    ``_SQLITE_ROWS`` rows while that many remain, then ones of a power of two rows, so a
    few prepared statements (kept by the driver) serve any batch."""
    count = len(rows.ts)
    flat: list[Any] = [None] * (4 * count)  # the parameters, row after row
    for field, column in enumerate(rows):
        flat[field::4] = column.tolist()
    full = _SQLITE_ROWS
    if cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) < 4 * full:
        full //= 2
    done = 0
    while done < count:
        size = full if count - done >= full else 1 << ((count - done).bit_length() - 1)
        cursor.execute(_sqlite_statement(size), flat[4 * done : 4 * (done + size)])
        done += size


@functools.cache
def _sqlite_statement(size: int) -> str:
    return _UPSERT.format(source="VALUES " + ", ".join(["(?, ?, ?, ?)"] * size))


def _copy_upsert(conn: Connection, cursor: psycopg.Cursor[Any], data: bytes) -> None:
    """Copy new points straight into the table; a batch that rewrites a stored point
    (a unique violation, rolled back to a savepoint) is staged and upserted instead."""
    try:
        with conn.begin_nested():
            _copy(cursor, "points (tag_id, ts, value, quality)", data)
        return
    except UniqueViolation:
        pass
    _staged_upsert(cursor, data)


def _staged_upsert(cursor: psycopg.Cursor[Any], data: bytes) -> None:
    cursor.execute(_PG_STAGE)
    _copy(cursor, "points_in", data)
    cursor.execute(_PG_POINTS)
    cursor.execute("TRUNCATE points_in")


def _copy_data(rows: PointColumns) -> bytes:
    """``rows`` in PostgreSQL's binary COPY format, built as one array."""
    for column, low, high in (
        (rows.tag_id, -(2**31), 2**31 - 1),
        (rows.quality, -(2**15), 2**15 - 1),
    ):
        if column.min() < low or column.max() > high:
            raise ValueError(f"a tag id or quality outside {low}..{high}")
    data = _copy_rows(len(rows.ts)).copy()
    data["tag_id"], data["ts"], data["value"], data["quality"] = rows
    return _COPY_HEADER + data.tobytes() + _COPY_TRAILER


@functools.lru_cache(maxsize=4)
def _copy_rows(count: int) -> npt.NDArray[np.void]:
    """``count`` COPY rows with their field count and sizes set (batches are mostly of one
    size: a copy of this is quicker than setting them anew)."""
    rows = np.empty(count, _COPY_ROW)
    rows["fields"] = 4
    for name, size in (("tag", 4), ("ts", 8), ("value", 8), ("quality", 2)):
        rows[f"{name}_size"] = size
    rows.flags.writeable = False
    return rows


def _copy(cursor: psycopg.Cursor[Any], target: str, data: bytes) -> None:
    with cursor.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(data)


def latest(conn: Connection, tag_ids: Sequence[int]) -> dict[int, Point]:
    """The newest point of each tag that has one."""
    return {row[0]: Point._make(row) for row in latest_rows(conn, tag_ids)}


def latest_join(tag: str, dialect: str = "") -> str:
    """A join of the newest point (``l``: ts, value, quality; all None without one) of the tag
    whose id is ``tag``: the row table holds it, found by one seek down its key. PostgreSQL
    runs its ``LATERAL`` form faster over many tags; the other form serves both databases."""
    if dialect == "postgresql":
        return (
            "LEFT JOIN LATERAL (SELECT ts, value, quality FROM points"
            f" WHERE tag_id = {tag} ORDER BY ts DESC LIMIT 1) l ON true"
        )
    return (
        f"LEFT JOIN points l ON l.tag_id = {tag}"
        f" AND l.ts = (SELECT max(m.ts) FROM points m WHERE m.tag_id = {tag})"
    )


def latest_rows(conn: Connection, tag_ids: Sequence[int]) -> list[tuple[int, int, float, int]]:
    """``latest`` as plain (tag id, ts, value, quality) rows, in no order: one
    driver-level query for any number of tags."""
    if not len(tag_ids):
        return []
    ids = ",".join(map(str, map(int, tag_ids)))
    if conn.dialect.name == "postgresql":
        tags_sql, ids = "unnest(CAST(%s AS integer[])) t(id)", "{" + ids + "}"
    else:
        tags_sql, ids = "(SELECT value AS id FROM json_each(?)) t", "[" + ids + "]"
    sql = (
        f"SELECT t.id, l.ts, l.value, l.quality FROM {tags_sql}"
        f" {latest_join('t.id', conn.dialect.name)} WHERE l.ts IS NOT NULL"
    )
    return driver_rows(conn, sql, (ids,))


def latest_by_keys(conn: Connection, keys: Collection[str]) -> list[tuple[Any, ...]]:
    """(key, tag id, ts, value, quality, then ``ACTIVITY_COLUMNS``) of the tags named by
    ``keys`` that exist, the point being each one's latest (all None without one), in no
    order: one driver-level query joining the tags' keys to their newest rows (and to
    their sources, for ``refuse_inactive``)."""
    columns = f"t.key, t.id, l.ts, l.value, l.quality, {ACTIVITY_COLUMNS}"
    joins = f"{latest_join('t.id', conn.dialect.name)} {ACTIVITY_JOIN}"
    return rows_by_keys(conn, columns, joins, keys)
