"""Reading a tag's stored points, wherever they live: compressed day chunks and the row table.

The stored points of a tag are its chunk points and its row points together; a row wins
over a chunk point at the same time (a write into a compacted day always lands in the row
table, and the newest write wins). Every read here honours that, so answers are the same
before and after compaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import BigInteger, CompoundSelect, Connection, null, select, text, union_all

from meterhub.db import driver_rows
from meterhub.storage import chunks as chunk_store
from meterhub.storage import rollups
from meterhub.storage.codec import EMPTY, Columns
from meterhub.storage.points import Point, TimeRange
from meterhub.storage.tables import chunks, points
from meterhub.times import DAY_US


def read_span(conn: Connection, tag_id: int, span: TimeRange, limit: int | None = None) -> Columns:
    """The stored points of ``tag_id`` in ``span``, oldest first; the first ``limit`` of them."""
    if limit is not None and limit < 1:
        return EMPTY
    infos = chunk_store.find(conn, tag_id, span)
    packed: list[Columns] = []
    held = 0
    while infos and (limit is None or held < limit):
        batch, infos = _enough(infos, None if limit is None else limit - held)
        for columns in chunk_store.load(conn, tag_id, [(i.day, i.stamp) for i in batch]):
            packed.append(within(columns, span))
            held += len(packed[-1].ts)
    stored = concat(packed)
    if limit is not None and held >= limit:
        stored = stored.take(slice(limit))
        span = TimeRange(span.start, int(stored.ts[-1]))
    merged = merge(stored, read_rows(conn, tag_id, span, limit))
    return merged.take(slice(limit))


def _enough(
    infos: list[chunk_store.ChunkInfo], wanted: int | None
) -> tuple[list[chunk_store.ChunkInfo], list[chunk_store.ChunkInfo]]:
    """The next chunks to decode to hold ``wanted`` points (all when ``None``), and the rest."""
    if wanted is None:
        return infos, []
    total = 0
    for n, info in enumerate(infos):
        total += info.size
        if total >= wanted:
            return infos[: n + 1], infos[n + 1 :]
    return infos, []


def within(columns: Columns, span: TimeRange) -> Columns:
    """The points of ``columns`` (time-ordered) in ``span``."""
    ts = columns.ts
    if not len(ts) or (
        (span.start is None or ts[0] >= span.start) and (span.end is None or ts[-1] <= span.end)
    ):
        return columns
    lo = 0 if span.start is None else int(np.searchsorted(ts, span.start, "left"))
    hi = len(ts) if span.end is None else int(np.searchsorted(ts, span.end, "right"))
    return columns.take(slice(lo, hi))


def concat(parts: Sequence[Columns]) -> Columns:
    if not parts:
        return EMPTY
    if len(parts) == 1:
        return parts[0]
    return Columns(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def read_rows(conn: Connection, tag_id: int, span: TimeRange, limit: int | None = None) -> Columns:
    """The points of ``tag_id`` in ``span`` held in the row table, oldest first (one
    driver-level query: reads of long periods read it on every call)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"SELECT ts, value, quality FROM points WHERE tag_id = {mark} AND ts >= {mark}"
        f" AND ts <= {mark} ORDER BY ts"
    )
    params: tuple[int, ...] = (tag_id, *span.bounds())
    if limit is not None:
        sql, params = f"{sql} LIMIT {mark}", (*params, limit)
    return Columns.of(driver_rows(conn, sql, params))


def merge(stored: Columns, rows: Columns) -> Columns:
    """Chunk points and row points in time order; a row replaces a chunk point at its time."""
    if not len(rows.ts):
        return stored
    if not len(stored.ts) or rows.ts[0] > stored.ts[-1]:
        return concat([stored, rows])
    keep = ~np.isin(stored.ts, rows.ts)
    both = concat([stored.take(keep), rows])
    return both.take(np.argsort(both.ts, kind="stable"))


def as_points(tag_id: int, columns: Columns) -> list[Point]:
    """``columns`` of ``tag_id`` as points (each made by ``tuple.__new__``: a named tuple's
    own constructor is a Python function, and costs as much again over many points)."""
    rows = zip(
        repeat(tag_id), columns.ts.tolist(), columns.value.tolist(), columns.quality.tolist()
    )
    return list(map(tuple.__new__, repeat(Point), rows))


def points_between(
    conn: Connection, tag_id: int, span: TimeRange, *, limit: int | None = None
) -> list[Point]:
    """Points of one tag in ``span``, oldest first."""
    return as_points(tag_id, read_span(conn, tag_id, span, limit))


# --- neighbours ---------------------------------------------------------------------------

_CHUNK_SIDE = (
    "day",
    "stamp",
    "first_ts",
    "last_ts",
    "first_value",
    "last_value",
    "first_quality",
    "last_quality",
)


def _chunk_side(alias: str) -> str:
    return ", ".join(f"{alias}.{column}" for column in _CHUNK_SIDE)


_NEAR_SQLITE = text(f"""
WITH q(i, tag, ts, day) AS (
  SELECT key, json_extract(value, '$[0]'), json_extract(value, '$[1]'),
         json_extract(value, '$[2]') FROM json_each(:pairs)
), s AS (
  SELECT q.*,
    (SELECT max(p.ts) FROM points p WHERE p.tag_id = q.tag AND p.ts <= q.ts) AS rb,
    (SELECT min(p.ts) FROM points p WHERE p.tag_id = q.tag AND p.ts >= q.ts) AS ra,
    (SELECT max(c.day) FROM chunks c WHERE c.tag_id = q.tag AND c.day <= q.day) AS c0,
    (SELECT max(c.day) FROM chunks c WHERE c.tag_id = q.tag AND c.day < q.day) AS c1,
    (SELECT min(c.day) FROM chunks c WHERE c.tag_id = q.tag AND c.day > q.day) AS c2
  FROM q
)
SELECT s.i, pb.ts, pb.value, pb.quality, pa.ts, pa.value, pa.quality,
  {_chunk_side("k0")}, {_chunk_side("k1")}, {_chunk_side("k2")}
FROM s
LEFT JOIN points pb ON pb.tag_id = s.tag AND pb.ts = s.rb
LEFT JOIN points pa ON pa.tag_id = s.tag AND pa.ts = s.ra
LEFT JOIN chunks k0 ON k0.tag_id = s.tag AND k0.day = s.c0
LEFT JOIN chunks k1 ON k1.tag_id = s.tag AND k1.day = s.c1
LEFT JOIN chunks k2 ON k2.tag_id = s.tag AND k2.day = s.c2
""")
"""For each (tag, ts, day): the row at or before ts and at or after it, and the tag's chunk
at or before ``day``, before ``day`` and after ``day`` (their first and last points)."""


def _lateral(alias: str, source: str, where: str, order: str, columns: str) -> str:
    return (
        f"LEFT JOIN LATERAL (SELECT {columns} FROM {source} x WHERE x.tag_id = q.tag"
        f" AND {where} ORDER BY {order} LIMIT 1) AS {alias} ON true"
    )


_NEAR_PG = text(
    "SELECT q.i, pb.ts, pb.value, pb.quality, pa.ts, pa.value, pa.quality, k0.*, k1.*, k2.*"
    " FROM unnest(CAST(:tags AS integer[]), CAST(:times AS bigint[]), CAST(:days AS integer[]))"
    " WITH ORDINALITY AS q(tag, ts, day, i) "
    + " ".join(
        (
            _lateral("pb", "points", "x.ts <= q.ts", "x.ts DESC", "x.ts, x.value, x.quality"),
            _lateral("pa", "points", "x.ts >= q.ts", "x.ts", "x.ts, x.value, x.quality"),
            _lateral("k0", "chunks", "x.day <= q.day", "x.day DESC", _chunk_side("x")),
            _lateral("k1", "chunks", "x.day < q.day", "x.day DESC", _chunk_side("x")),
            _lateral("k2", "chunks", "x.day > q.day", "x.day", _chunk_side("x")),
        )
    )
)
"""``_NEAR_SQLITE`` for PostgreSQL: one index seek per side, where max() then a join seeks twice."""

Near = tuple[Point | None, Point | None]
"""The last stored point at or before an instant and the first at or after it."""


def near(conn: Connection, pairs: Sequence[tuple[int, int]]) -> list[Near]:
    """For each ``(tag, ts)``: its stored neighbours at or before and at or after ``ts``."""
    if not pairs:
        return []
    days = [ts // DAY_US for _, ts in pairs]
    if conn.dialect.name == "postgresql":
        params: dict[str, Any] = {
            "tags": [tag for tag, _ in pairs],
            "times": [ts for _, ts in pairs],
            "days": days,
        }
        rows = conn.execute(_NEAR_PG, params).all()
        offset = 1
    else:
        triples = [[tag, ts, day] for (tag, ts), day in zip(pairs, days, strict=True)]
        rows = conn.execute(_NEAR_SQLITE, {"pairs": json.dumps(triples)}).all()
        offset = 0
    sides = [_Sides(pairs[row[0] - offset], days[row[0] - offset], row[1:]) for row in rows]
    inside = _Inside(conn, [side.here for side in sides if side.seeks_inside])
    found: list[Near] = [(None, None)] * len(pairs)
    for row, side in zip(rows, sides, strict=True):
        found[row[0] - offset] = side.pick(inside)
    return found


def neighbours(conn: Connection, tag_id: int, ts: int) -> Near:
    """The last point of ``tag_id`` at or before ``ts`` and the first point at or after it."""
    return near(conn, [(tag_id, ts)])[0]


class _Chunk:
    """A chunk's first and last point, as ``near`` reads them; ``day`` is ``None`` if none."""

    def __init__(self, tag: int, columns: Sequence[Any]) -> None:
        self.tag = tag
        self.day, self.stamp, self.first_ts, self.last_ts, first_value, last_value = columns[:6]
        if self.day is not None:
            self.first = Point(tag, self.first_ts, first_value, columns[6])
            self.last = Point(tag, self.last_ts, last_value, columns[7])


class _Sides:
    """One ``near`` row: the row-table neighbours of ``ts`` and three chunks around its day."""

    def __init__(self, pair: tuple[int, int], day: int, row: Sequence[Any]) -> None:
        self.tag, self.ts = pair
        self.day = day
        self.row_before = None if row[0] is None else Point(self.tag, *row[0:3])
        self.row_after = None if row[3] is None else Point(self.tag, *row[3:6])
        width = len(_CHUNK_SIDE)
        self.here, self.earlier, self.later = (
            _Chunk(self.tag, row[6 + width * k : 6 + width * (k + 1)]) for k in range(3)
        )

    @property
    def seeks_inside(self) -> bool:
        """Whether a neighbour lies inside the chunk of ``ts``'s day (not at its ends)."""
        here = self.here
        return here.day is not None and here.first_ts < self.ts < here.last_ts

    def pick(self, inside: _Inside) -> Near:
        """The neighbours: chunk points, unless a row is as near (rows win ties)."""
        here, ts = self.here, self.ts
        before: Point | None = None
        after: Point | None = None
        if here.day is not None and here.first_ts <= ts:
            before = here.last if here.last_ts <= ts else inside.point(here, ts, before=True)
        elif self.earlier.day is not None:
            before = self.earlier.last
        if here.day == self.day and here.last_ts >= ts:
            after = here.first if here.first_ts >= ts else inside.point(here, ts, before=False)
        elif self.later.day is not None:
            after = self.later.first
        if self.row_before is not None and (before is None or self.row_before.ts >= before.ts):
            before = self.row_before
        if self.row_after is not None and (after is None or self.row_after.ts <= after.ts):
            after = self.row_after
        return before, after


class _Inside:
    """Points inside chunks: from the day's hourly rollups where they tell, else decoded."""

    def __init__(self, conn: Connection, here: Sequence[_Chunk]) -> None:
        self._conn = conn
        by_tag: dict[int, set[tuple[int, int]]] = {}
        for chunk in here:
            by_tag.setdefault(chunk.tag, set()).add((chunk.day, chunk.stamp))
        self._hours = {
            (tag, day): hours
            for tag, days in by_tag.items()
            for day, hours in rollups.load(conn, tag, sorted(days)).items()
        }

    def point(self, chunk: _Chunk, ts: int, *, before: bool) -> Point:
        """The chunk's point at or before (else at or after) ``ts``, which lies inside it."""
        hours = self._hours.get((chunk.tag, chunk.day))
        found = None if hours is None else rollups.side(hours, chunk.tag, ts, before=before)
        if found is not None:
            return found
        columns = chunk_store.load(self._conn, chunk.tag, [(chunk.day, chunk.stamp)])[0]
        n = int(np.searchsorted(columns.ts, ts, "right" if before else "left")) - before
        return Point(
            chunk.tag, int(columns.ts[n]), float(columns.value[n]), int(columns.quality[n])
        )


# --- flagged points -----------------------------------------------------------------------


def drops(
    conn: Connection, tag_ids: Sequence[int], span: TimeRange
) -> dict[int, list[tuple[int, float, float]]]:
    """Per tag, its flagged points in ``span`` as ``(ts, value of the point before, value)``,
    oldest first; a flagged point with no point before it is left out."""
    candidates: set[tuple[int, int]] = set()
    ids = list(tag_ids)
    for first in range(0, len(ids), DROPS_TAGS):  # bound parameters stay under the drivers' limits
        for tag, ts, day, stamp in conn.execute(_flagged(ids[first : first + DROPS_TAGS], span)):
            if ts is not None:
                candidates.add((tag, ts))
                continue
            columns = within(chunk_store.load(conn, tag, [(day, stamp)])[0], span)
            candidates.update((tag, ts) for ts in columns.ts[columns.quality != 0].tolist())
    ordered = sorted(candidates)
    sides = near(conn, [pair for tag, ts in ordered for pair in ((tag, ts), (tag, ts - 1))])
    found: dict[int, list[tuple[int, float, float]]] = {}
    for n, (tag, ts) in enumerate(ordered):
        point, previous = sides[2 * n][0], sides[2 * n + 1][0]
        if point is not None and point.ts == ts and point.quality != 0 and previous is not None:
            found.setdefault(tag, []).append((ts, previous.value, point.value))
    return found


DROPS_TAGS = 10_000
"""Tags whose flagged points one statement looks for (each is two bound parameters)."""


def _flagged(ids: list[int], span: TimeRange) -> CompoundSelect[int, Any, Any, Any]:
    """The flagged rows of ``ids`` in ``span``, and their chunks holding flagged points, in
    one statement: rows and chunks as of one moment."""
    c = chunks.c
    where = [c.tag_id.in_(ids), c.flagged > 0]
    if span.start is not None:
        where.append(c.last_ts >= span.start)
    if span.end is not None:
        where.append(c.first_ts <= span.end)
    nothing = null().cast(BigInteger)
    return union_all(
        select(points.c.tag_id, points.c.ts, nothing, nothing).where(
            points.c.tag_id.in_(ids), points.c.quality != 0, *span.clause(points.c.ts)
        ),
        select(c.tag_id, nothing, c.day, c.stamp).where(*where),
    )


# --- channels side by side ----------------------------------------------------------------


def _matched(other: Columns, times: npt.NDArray[np.int64]) -> list[float | None]:
    """The value of ``other`` at each of ``times``, ``None`` where it has no point."""
    if not len(other.ts):
        return [None] * len(times)
    at = np.searchsorted(other.ts, times).clip(max=len(other.ts) - 1)
    hits = other.ts[at] == times
    return [
        v if hit else None for v, hit in zip(other.value[at].tolist(), hits.tolist(), strict=True)
    ]


def aligned_rows(
    conn: Connection,
    tag_ids: Sequence[int],
    span: TimeRange,
    *,
    chunk: int = 10_000,
) -> Iterator[tuple[int, list[float | None]]]:
    """Rows ``(ts, [value of each tag])`` at the timestamps of the first tag, oldest first.

    The other tags are matched at the same timestamp (``None`` where they have no point),
    which is how the channels of one device reading line up. Read ``chunk`` lead points at
    a time, so a year of minute readings streams without being held in memory.
    """
    first, *others = tag_ids
    cursor = span.start
    while True:
        lead = read_span(conn, first, TimeRange(cursor, span.end), chunk)
        if not len(lead.ts):
            return
        window = TimeRange(int(lead.ts[0]), int(lead.ts[-1]))
        columns = [
            lead.value.tolist(),
            *(_matched(read_span(conn, t, window), lead.ts) for t in others),
        ]
        for n, ts in enumerate(lead.ts.tolist()):
            yield ts, [column[n] for column in columns]
        if len(lead.ts) < chunk:
            return
        cursor = int(lead.ts[-1]) + 1
