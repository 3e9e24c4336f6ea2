"""Reading a tag's stored points, wherever they live: compressed day chunks and the row table.

The stored points of a tag are its chunk points and its row points together; a row wins
over a chunk point at the same time (a write into a compacted day always lands in the row
table, and the newest write wins). Every read here honours that, so answers are the same
before and after compaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, select, text

from meterhub.storage.codec import Columns, decode
from meterhub.storage.points import Point, TimeRange
from meterhub.storage.tables import chunks, points
from meterhub.times import DAY_US

_EMPTY = Columns.of([])
_BLOBS = (chunks.c.ts_blob, chunks.c.value_blob, chunks.c.quality_blob)


def read_span(conn: Connection, tag_id: int, span: TimeRange, limit: int | None = None) -> Columns:
    """The stored points of ``tag_id`` in ``span``, oldest first; the first ``limit`` of them."""
    if limit is not None and limit < 1:
        return _EMPTY
    where = [chunks.c.tag_id == tag_id]
    if span.start is not None:
        where.append(chunks.c.last_ts >= span.start)
    if span.end is not None:
        where.append(chunks.c.first_ts <= span.end)
    sizes = conn.execute(select(chunks.c.day, chunks.c.count).where(*where).order_by(chunks.c.day))
    days = [(day, count) for day, count in sizes]
    packed: list[Columns] = []
    held = 0
    while days and (limit is None or held < limit):
        batch, days = _enough(days, None if limit is None else limit - held)
        query = select(*_BLOBS).where(
            chunks.c.tag_id == tag_id, chunks.c.day.between(batch[0], batch[-1])
        )
        for blobs in conn.execute(query.order_by(chunks.c.day)):
            packed.append(_within(decode(*blobs), span))
            held += len(packed[-1].ts)
    stored = _concat(packed)
    if limit is not None and held >= limit:
        stored = stored.take(slice(limit))
        span = TimeRange(span.start, int(stored.ts[-1]))
    rows = _rows(conn, tag_id, span, limit)
    merged = merge(stored, rows)
    return merged.take(slice(limit))


def _enough(
    days: list[tuple[int, int]], wanted: int | None
) -> tuple[list[int], list[tuple[int, int]]]:
    """The next days to decode to hold ``wanted`` points (all when ``None``), and the rest."""
    if wanted is None:
        return [day for day, _ in days], []
    total = 0
    for n, (_, count) in enumerate(days):
        total += count
        if total >= wanted:
            return [day for day, _ in days[: n + 1]], days[n + 1 :]
    return [day for day, _ in days], []


def _within(columns: Columns, span: TimeRange) -> Columns:
    ts = columns.ts
    lo = 0 if span.start is None else int(np.searchsorted(ts, span.start, "left"))
    hi = len(ts) if span.end is None else int(np.searchsorted(ts, span.end, "right"))
    return columns.take(slice(lo, hi))


def _concat(parts: Sequence[Columns]) -> Columns:
    if not parts:
        return _EMPTY
    if len(parts) == 1:
        return parts[0]
    return Columns(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def _rows(conn: Connection, tag_id: int, span: TimeRange, limit: int | None) -> Columns:
    query = (
        select(points.c.ts, points.c.value, points.c.quality)
        .where(points.c.tag_id == tag_id, *span.clause(points.c.ts))
        .order_by(points.c.ts)
        .limit(limit)
    )
    return Columns.of(conn.execute(query).all())


def merge(stored: Columns, rows: Columns) -> Columns:
    """Chunk points and row points in time order; a row replaces a chunk point at its time."""
    if not len(rows.ts):
        return stored
    if not len(stored.ts) or rows.ts[0] > stored.ts[-1]:
        return _concat([stored, rows])
    keep = ~np.isin(stored.ts, rows.ts)
    both = _concat([stored.take(keep), rows])
    return both.take(np.argsort(both.ts, kind="stable"))


def as_points(tag_id: int, columns: Columns) -> list[Point]:
    """``columns`` of ``tag_id`` as points."""
    return [
        Point(tag_id, ts, value, quality)
        for ts, value, quality in zip(
            columns.ts.tolist(), columns.value.tolist(), columns.quality.tolist(), strict=True
        )
    ]


def points_between(
    conn: Connection, tag_id: int, span: TimeRange, *, limit: int | None = None
) -> list[Point]:
    """Points of one tag in ``span``, oldest first."""
    return as_points(tag_id, read_span(conn, tag_id, span, limit))


# --- neighbours ---------------------------------------------------------------------------

_CHUNK_SIDE = (
    "day",
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
    found: list[Near] = [(None, None)] * len(pairs)
    cache: dict[tuple[int, int], Columns] = {}
    for row in rows:
        i = row[0] - offset
        tag, ts = pairs[i]
        found[i] = _pick(conn, tag, ts, days[i], row[1:], cache)
    return found


def neighbours(conn: Connection, tag_id: int, ts: int) -> Near:
    """The last point of ``tag_id`` at or before ``ts`` and the first point at or after it."""
    return near(conn, [(tag_id, ts)])[0]


def _pick(
    conn: Connection,
    tag: int,
    ts: int,
    day: int,
    row: Sequence[Any],
    cache: dict[tuple[int, int], Columns],
) -> Near:
    """The neighbours of ``ts`` from one ``near`` row: rows win ties with chunk points."""
    row_before = None if row[0] is None else Point(tag, *row[0:3])
    row_after = None if row[3] is None else Point(tag, *row[3:6])
    here, earlier, later = (_Chunk(tag, row[6 + 7 * k : 13 + 7 * k]) for k in range(3))
    before: Point | None = None
    after: Point | None = None
    if here.day is not None and here.first_ts <= ts:
        before = here.last if here.last_ts <= ts else here.side(conn, ts, cache, before=True)
    elif earlier.day is not None:
        before = earlier.last
    if here.day == day and here.last_ts >= ts:
        after = here.first if here.first_ts >= ts else here.side(conn, ts, cache, before=False)
    elif later.day is not None:
        after = later.first
    if row_before is not None and (before is None or row_before.ts >= before.ts):
        before = row_before
    if row_after is not None and (after is None or row_after.ts <= after.ts):
        after = row_after
    return before, after


class _Chunk:
    """A chunk's first and last point, as ``near`` reads them; ``day`` is ``None`` if none."""

    def __init__(self, tag: int, columns: Sequence[Any]) -> None:
        self.tag = tag
        self.day, self.first_ts, self.last_ts, first_value, last_value, first_q, last_q = columns
        if self.day is not None:
            self.first = Point(tag, self.first_ts, first_value, first_q)
            self.last = Point(tag, self.last_ts, last_value, last_q)

    def side(
        self, conn: Connection, ts: int, cache: dict[tuple[int, int], Columns], *, before: bool
    ) -> Point:
        """The chunk's point at or before (else at or after) ``ts``, which lies inside it."""
        key = (self.tag, self.day)
        if key not in cache:
            query = select(*_BLOBS).where(chunks.c.tag_id == self.tag, chunks.c.day == self.day)
            cache[key] = decode(*conn.execute(query).one())
        columns = cache[key]
        n = int(np.searchsorted(columns.ts, ts, "right" if before else "left")) - before
        return Point(self.tag, int(columns.ts[n]), float(columns.value[n]), int(columns.quality[n]))


# --- flagged points -----------------------------------------------------------------------


def drops(
    conn: Connection, tag_ids: Sequence[int], span: TimeRange
) -> dict[int, list[tuple[int, float, float]]]:
    """Per tag, its flagged points in ``span`` as ``(ts, value of the point before, value)``,
    oldest first; a flagged point with no point before it is left out."""
    if not tag_ids:
        return {}
    ids = list(tag_ids)
    candidates: set[tuple[int, int]] = set()
    in_rows = select(points.c.tag_id, points.c.ts).where(
        points.c.tag_id.in_(ids), points.c.quality != 0, *span.clause(points.c.ts)
    )
    candidates.update((tag, ts) for tag, ts in conn.execute(in_rows))
    where = [chunks.c.tag_id.in_(ids), chunks.c.flagged > 0]
    if span.start is not None:
        where.append(chunks.c.last_ts >= span.start)
    if span.end is not None:
        where.append(chunks.c.first_ts <= span.end)
    for tag, *blobs in conn.execute(select(chunks.c.tag_id, *_BLOBS).where(*where)):
        columns = _within(decode(*blobs), span)
        candidates.update((tag, ts) for ts in columns.ts[columns.quality != 0].tolist())
    ordered = sorted(candidates)
    sides = near(conn, [pair for tag, ts in ordered for pair in ((tag, ts), (tag, ts - 1))])
    found: dict[int, list[tuple[int, float, float]]] = {}
    for n, (tag, ts) in enumerate(ordered):
        point, previous = sides[2 * n][0], sides[2 * n + 1][0]
        if point is not None and point.ts == ts and point.quality != 0 and previous is not None:
            found.setdefault(tag, []).append((ts, previous.value, point.value))
    return found


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
