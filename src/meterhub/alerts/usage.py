"""Consumption of many meters over one period, as billing counts it (``billing.consumption``:
registers interpolated at both ends, drops counted as resets), read set-based.

One statement finds, per register tag, its row-table neighbours of both ends and whether
it has a flagged point inside the period, by index seeks (a few per tag, whatever the
number of readings). Tags whose neighbours may lie in compressed day chunks (a chunk as new
as the reading before the period start, or no such reading) are read through
``storage.series.near`` instead, which merges rows and chunks; recent periods never need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Select, and_, case, exists, func, or_, select

from meterhub.billing.consumption import NO_READINGS, register_value, registers, usage
from meterhub.storage import Point, TimeRange
from meterhub.storage.series import Near, drops, near
from meterhub.storage.sides import Sides
from meterhub.storage.tables import chunks, points
from meterhub.times import DAY_US

SIDES = ("b0", "a0", "b1", "a1")
"""The reading at or before the start, at or after it, and the same of the end."""


def consumptions_above(
    conn: Connection, watched: Select[Any], start: int, end: int, limit: float
) -> list[tuple[Any, float]]:
    """(watched row, consumption) of the meters of ``watched`` (rows with ``tag_id``) that
    used more than ``limit`` from ``start`` to ``end``. The statement leaves out, by their
    neighbours' values alone, the meters that cannot have (no drop inside: the rise is at
    most the highest neighbour of the end less the lowest of the start)."""
    rows = conn.execute(_neighbours(watched, start, end, limit)).all()
    merged = [row.tag_id for row in rows if row.chunked]
    sides = near(conn, [(tag, ts) for tag in merged for ts in (start, end)])
    nears = dict(zip(merged, _pairs(sides), strict=True))
    flagged = [row.tag_id for row in rows if row.chunked or row.flagged]
    resets = drops(conn, flagged, TimeRange(start + 1, end)) if flagged else {}
    ends = [
        nears.get(row.tag_id) or (_sides(row, "b0", "a0"), _sides(row, "b1", "a1")) for row in rows
    ]
    at = registers(
        Sides.of([side for pair in ends for side in pair]),
        np.tile(np.array([start, end], np.int64), len(rows)),
        across_drops=True,
    )
    found = []
    for n, row in enumerate(rows):
        if NO_READINGS in (at.held[2 * n], at.held[2 * n + 1]):
            continue
        inside = [(register_value(b), register_value(a)) for _, b, a in resets.get(row.tag_id, [])]
        used = float(usage(at.end(2 * n), at.end(2 * n + 1), inside).consumption)
        if used > limit:
            found.append((row, used))
    return found


def _pairs(sides: Sequence[Near]) -> list[tuple[Near, Near]]:
    return [(sides[n], sides[n + 1]) for n in range(0, len(sides), 2)]


def _sides(row: Any, before: str, after: str) -> Near:
    return _point(row, before), _point(row, after)


def _point(row: Any, side: str) -> Point | None:
    ts = getattr(row, side)
    if ts is None:
        return None
    return Point(row.tag_id, ts, getattr(row, f"{side}_value"), getattr(row, f"{side}_quality"))


def _neighbours(watched: Select[Any], start: int, end: int, limit: float) -> Select[Any]:
    w = watched.subquery()
    p = points.c

    def seek(before: bool, at: int) -> Any:
        edge = func.max(p.ts) if before else func.min(p.ts)
        near_at = p.ts <= at if before else p.ts >= at
        return select(edge).where(p.tag_id == w.c.tag_id, near_at).scalar_subquery()

    flagged = exists().where(p.tag_id == w.c.tag_id, p.quality != 0, p.ts > start, p.ts <= end)
    s = select(
        w,
        seek(True, start).label("b0"),
        seek(False, start).label("a0"),
        seek(True, end).label("b1"),
        seek(False, end).label("a1"),
        flagged.label("flagged"),
    ).subquery()
    since_day = func.coalesce(s.c.b0, 0) / DAY_US
    chunked = exists().where(chunks.c.tag_id == s.c.tag_id, chunks.c.day >= since_day)
    query = select(s, chunked.label("chunked"))
    at = {side: points.alias(side) for side in SIDES}
    for side, found in at.items():
        query = query.add_columns(
            found.c.value.label(f"{side}_value"), found.c.quality.label(f"{side}_quality")
        ).outerjoin(found, and_(found.c.tag_id == s.c.tag_id, found.c.ts == s.c[side]))
    highest = _pick(at["b1"].c.value, at["a1"].c.value, higher=True)
    lowest = _pick(at["b0"].c.value, at["a0"].c.value, higher=False)
    return query.where(or_(s.c.flagged, chunked, highest - lowest > limit))


def _pick(one: Any, other: Any, *, higher: bool) -> Any:
    """The higher (or lower) of two values either of which may be NULL (the other then)."""
    better = other > one if higher else other < one
    return case((one.is_(None), other), (other.is_(None), one), (better, other), else_=one)
