"""Writing and reading points: upserts, latest values, ranges and aligned rows of several tags."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import IntEnum
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement, Select

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

    def clause(self, column: ColumnElement[int]) -> list[ColumnElement[bool]]:
        parts: list[ColumnElement[bool]] = []
        if self.start is not None:
            parts.append(column >= self.start)
        if self.end is not None:
            parts.append(column <= self.end)
        return parts


def write_points(conn: Connection, batch: Sequence[Point]) -> int:
    """Upsert ``batch``: a point at an existing (tag, ts) replaces it, and within the batch
    the last point of a (tag, ts) wins. Returns the number of distinct points written."""
    unique = {(p.tag_id, p.ts): p for p in batch}
    if not unique:
        return 0
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(points)
    stmt = stmt.on_conflict_do_update(
        index_elements=[points.c.tag_id, points.c.ts],
        set_={"value": stmt.excluded.value, "quality": stmt.excluded.quality},
    )
    conn.execute(stmt, [p._asdict() for p in unique.values()])
    return len(unique)


def latest(conn: Connection, tag_ids: Sequence[int]) -> dict[int, Point]:
    """The newest point of each tag that has one (one index seek per tag)."""
    if not tag_ids:
        return {}
    if conn.dialect.name == "postgresql":
        sql = text(
            "SELECT p.tag_id, p.ts, p.value, p.quality"
            " FROM unnest(CAST(:ids AS integer[])) AS t(id)"
            " CROSS JOIN LATERAL (SELECT * FROM points WHERE tag_id = t.id"
            " ORDER BY ts DESC LIMIT 1) p"
        )
        rows = conn.execute(sql, {"ids": list(tag_ids)})
    else:
        rows = conn.execute(
            text(
                "SELECT p.tag_id, p.ts, p.value, p.quality FROM json_each(:ids) t"
                " CROSS JOIN points p ON p.tag_id = t.value"
                " AND p.ts = (SELECT max(ts) FROM points m WHERE m.tag_id = t.value)"
            ),
            {"ids": "[" + ",".join(str(int(t)) for t in tag_ids) + "]"},
        )
    return {row.tag_id: Point(*row) for row in rows}


def points_between(
    conn: Connection, tag_id: int, span: TimeRange, *, limit: int | None = None
) -> list[Point]:
    """Points of one tag in ``span``, oldest first."""
    query = (
        select(*POINT_COLUMNS)
        .where(points.c.tag_id == tag_id, *span.clause(points.c.ts))
        .order_by(points.c.ts)
        .limit(limit)
    )
    return [Point(*row) for row in conn.execute(query)]


def neighbours(conn: Connection, tag_id: int, ts: int) -> tuple[Point | None, Point | None]:
    """The last point at or before ``ts`` and the first point at or after it."""
    before = conn.execute(
        select(*POINT_COLUMNS)
        .where(points.c.tag_id == tag_id, points.c.ts <= ts)
        .order_by(points.c.ts.desc())
        .limit(1)
    ).first()
    after = conn.execute(
        select(*POINT_COLUMNS)
        .where(points.c.tag_id == tag_id, points.c.ts >= ts)
        .order_by(points.c.ts)
        .limit(1)
    ).first()
    return (Point(*before) if before else None, Point(*after) if after else None)


def aligned_rows(
    conn: Connection,
    tag_ids: Sequence[int],
    span: TimeRange,
    *,
    chunk: int = 10_000,
) -> Iterator[tuple[int, list[float | None]]]:
    """Rows ``(ts, [value of each tag])`` at the timestamps of the first tag, oldest first.

    The other tags are joined at the same timestamp (``None`` where they have no point),
    which is how the channels of one device reading line up. Read in keyset chunks, so a
    year of minute readings streams without being held in memory.
    """
    first, *others = tag_ids
    lead = points.alias("lead")
    joined = [points.alias(f"c{i}") for i in range(len(others))]
    source = lead
    for alias, tag_id in zip(joined, others, strict=True):
        source = source.outerjoin(  # type: ignore[assignment]
            alias, and_(alias.c.tag_id == tag_id, alias.c.ts == lead.c.ts)
        )
    base: Select[tuple[Any, ...]] = (
        select(lead.c.ts, lead.c.value, *(a.c.value for a in joined))
        .select_from(source)
        .where(lead.c.tag_id == first)
        .order_by(lead.c.ts)
        .limit(chunk)
    )
    cursor = span.start
    while True:
        window = TimeRange(cursor, span.end)
        rows = conn.execute(base.where(*window.clause(lead.c.ts))).all()
        for row in rows:
            yield row[0], list(row[1:])
        if len(rows) < chunk:
            return
        cursor = rows[-1][0] + 1


def delete_points(conn: Connection, tag_ids: Sequence[int]) -> None:
    """Drop every point of the given tags (when the tags themselves are deleted)."""
    if tag_ids:
        conn.execute(points.delete().where(points.c.tag_id.in_(list(tag_ids))))
