"""History of one tag: the queries behind the platform's ``/smt/data/get``.

Times are µs; every answer is oldest first.

1. No ``start``, ``end`` or ``step``: the latest point of the tag (none if it has none);
   with ``values``, the latest point whose value is one of them.
2. ``start`` and/or ``end`` (inclusive; a missing side is open): the stored points in the
   period, only those whose value is one of ``values`` when given. Unless ``actual`` or
   ``values`` is set, each given bound with no stored point exactly on it also gets a
   value: linear between the last point before it and the first point after it, with the
   higher of their two qualities; for a ``stepwise`` tag, the value and quality of the last
   point before it. A bound lacking the point(s) it needs gets no value: history is never
   extrapolated. ``start`` after ``end`` is an empty period.
3. ``step`` (needs ``start`` and ``end``; not with ``values``): the values, worked out as in
   2, at ``start``, ``start + step``, ... up to ``end``; instants without a value are
   left out (``actual`` changes nothing here). A grid of more than ``max_count`` instants
   is cut to its first ``max_count`` and ``excess`` is set.
4. ``max_count`` (with 2): when the period holds more stored points than that, they are
   thinned: [first, last point] is split into B = max(1, max_count // 4) buckets of equal
   width and each keeps its first, last, lowest and highest point (ties: the earliest),
   so peaks and the shape survive; ``excess`` is set. With ``max_count`` below 4, the one
   bucket's points are cut to the first ``max_count``. Bound values are then added only
   while they fit in ``max_count``, the start one first.
5. At most ``HARD_CAP`` points per tag: without ``max_count``, a longer period is cut to its
   first ``HARD_CAP`` stored points with ``excess`` set; a larger ``max_count`` counts as
   ``HARD_CAP``; a grid of more than ``HARD_CAP`` instants is refused unless ``max_count``
   cuts it to its first ``max_count`` instants.
6. Refused with ``InvalidInput``: ``step`` not positive or without both bounds ("timeStep"),
   ``step`` with ``values`` ("value"), ``max_count`` below 1 ("maxCount").

``excess`` reports stored points thinned or cut and grid instants cut, never a dropped
bound value. Everything is worked out in SQL with index seeks on the (tag, ts) key: grid
and bound values by a correlated seek to the neighbour on each side of every instant,
thinning by per-bucket range scans, so even a year of minute points never reaches Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, select, text
from sqlalchemy.sql import ColumnElement

from meterhub.errors import InvalidInput
from meterhub.storage.interpolate import interpolate
from meterhub.storage.points import POINT_COLUMNS, Point, TimeRange
from meterhub.storage.tables import points

HARD_CAP = 100_000
"""The most points one tag ever returns."""


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """What to read of one tag; see the module docstring for the rules."""

    start: int | None = None  # µs, inclusive ("from")
    end: int | None = None  # µs, inclusive ("to")
    actual: bool = False  # stored points only, no interpolated bound values
    step: int | None = None  # µs grid step ("timeStep")
    max_count: int | None = None  # at most this many points ("maxCount")
    values: tuple[float, ...] | None = None  # only stored points with one of these ("value")
    stepwise: bool = False  # hold the last value instead of interpolating


class History(NamedTuple):
    """Points of one tag, oldest first, and whether some were left out."""

    points: list[Point]
    excess: bool  # points were thinned or cut to honour max_count / HARD_CAP


_NEIGHBOURS = text("""
WITH RECURSIVE grid(ts) AS (
    SELECT CAST(:first AS BIGINT)
    UNION ALL SELECT ts + :step FROM grid WHERE ts < :last
), near AS (
    SELECT ts,
        (SELECT max(p.ts) FROM points AS p WHERE p.tag_id = :tag AND p.ts <= grid.ts) AS b_ts,
        (SELECT min(p.ts) FROM points AS p WHERE p.tag_id = :tag AND p.ts >= grid.ts) AS a_ts
    FROM grid
)
SELECT near.ts, b.tag_id, b.ts, b.value, b.quality, a.tag_id, a.ts, a.value, a.quality
FROM near
LEFT JOIN points AS b ON b.tag_id = :tag AND b.ts = near.b_ts
LEFT JOIN points AS a ON a.tag_id = :tag AND a.ts = near.a_ts
ORDER BY near.ts
""")
"""Each grid instant with its stored neighbours at or before and at or after it."""

_NEIGHBOURS_PG = text("""
SELECT g.ts, b.tag_id, b.ts, b.value, b.quality, a.tag_id, a.ts, a.value, a.quality
FROM generate_series(CAST(:first AS BIGINT), :last, :step) AS g(ts)
LEFT JOIN LATERAL (
    SELECT * FROM points AS p WHERE p.tag_id = :tag AND p.ts <= g.ts ORDER BY p.ts DESC LIMIT 1
) AS b ON true
LEFT JOIN LATERAL (
    SELECT * FROM points AS p WHERE p.tag_id = :tag AND p.ts >= g.ts ORDER BY p.ts LIMIT 1
) AS a ON true
ORDER BY g.ts
""")
"""``_NEIGHBOURS`` for PostgreSQL, twice as fast: one seek per side and instant, where the
portable form seeks twice (key, then row) and PostgreSQL even runs the second key seek again."""

_IN_BUCKET = (
    "FROM points AS p WHERE p.tag_id = :tag AND p.ts >= bucket.lo"
    " AND p.ts < bucket.lo + :width AND p.ts <= :last{matching}"
)
_THIN = f"""
WITH RECURSIVE bucket(lo) AS (
    SELECT CAST(:first AS BIGINT)
    UNION ALL SELECT lo + :width FROM bucket WHERE lo + :width <= :last
), picked(ts) AS (
    SELECT (SELECT min(p.ts) {_IN_BUCKET}) FROM bucket
    UNION SELECT (SELECT max(p.ts) {_IN_BUCKET}) FROM bucket
    UNION SELECT (SELECT p.ts {_IN_BUCKET} ORDER BY p.value, p.ts LIMIT 1) FROM bucket
    UNION SELECT (SELECT p.ts {_IN_BUCKET} ORDER BY p.value DESC, p.ts LIMIT 1) FROM bucket
)
SELECT q.tag_id, q.ts, q.value, q.quality
FROM picked JOIN points AS q ON q.tag_id = :tag AND q.ts = picked.ts
ORDER BY q.ts LIMIT :keep
"""
"""First, last, lowest and highest point of each bucket (empty buckets pick NULL).

Range scans per bucket need no sort of the period: on a year of minutes this takes ~90 ms
on SQLite, where ``row_number()`` windows per bucket take 1.4 s and a GROUP BY 130 ms."""


def read_history(conn: Connection, tag_id: int, query: HistoryQuery) -> History:
    """The history of ``tag_id`` that ``query`` asks for; ``InvalidInput`` if it is malformed."""
    problems = _problems(query)
    if problems:
        raise InvalidInput(problems)
    grid = _grid_instants(query)
    if grid is not None:
        return _grid(conn, tag_id, grid, query)
    if query.start is None and query.end is None:
        return History(_latest(conn, tag_id, query.values), excess=False)
    return _period(conn, tag_id, query)


def _problems(query: HistoryQuery) -> dict[str, list[str]]:
    """What is wrong with ``query``, by API field name."""
    problems: dict[str, list[str]] = {}
    if query.max_count is not None and query.max_count < 1:
        problems["maxCount"] = ["must be at least 1"]
    if query.step is None:
        return problems
    if query.values is not None:
        problems["value"] = ["cannot be combined with timeStep"]
    step: list[str] = []
    if query.step <= 0:
        step.append("must be positive")
    if query.start is None or query.end is None:
        step.append("needs both from and to")
    elif (
        query.step > 0
        and len(range(query.start, query.end + 1, query.step)) > HARD_CAP
        and (query.max_count is None or query.max_count > HARD_CAP)
    ):
        step.append(f"makes a grid of more than {HARD_CAP} instants; give maxCount to cut it")
    if step:
        problems["timeStep"] = step
    return problems


def _grid_instants(query: HistoryQuery) -> range | None:
    """The grid of a (valid) query with a step; a step longer than the period is one instant."""
    if query.step is None or query.start is None or query.end is None:
        return None
    step = min(query.step, max(1, query.end - query.start + 1))
    return range(query.start, query.end + 1, step)


def _matching(values: tuple[float, ...] | None) -> list[ColumnElement[bool]]:
    return [] if values is None else [points.c.value.in_(values)]


def _latest(conn: Connection, tag_id: int, values: tuple[float, ...] | None) -> list[Point]:
    query = (
        select(*POINT_COLUMNS)
        .where(points.c.tag_id == tag_id, *_matching(values))
        .order_by(points.c.ts.desc())
        .limit(1)
    )
    return [Point(*row) for row in conn.execute(query)]


def _period(conn: Connection, tag_id: int, query: HistoryQuery) -> History:
    """Rules 2, 4 and 5: stored points (thinned or cut when too many), then bound values."""
    if query.start is not None and query.end is not None and query.start > query.end:
        return History([], excess=False)
    keep = HARD_CAP if query.max_count is None else min(query.max_count, HARD_CAP)
    where = [
        points.c.tag_id == tag_id,
        *TimeRange(query.start, query.end).clause(points.c.ts),
        *_matching(query.values),
    ]
    count = select(func.count(), func.min(points.c.ts), func.max(points.c.ts)).where(*where)
    total, first, last = conn.execute(count).one()
    excess = total > keep
    if excess and query.max_count is not None:
        rows = _thin(conn, tag_id, first, last, keep, query.values)
    else:
        stored = select(*POINT_COLUMNS).where(*where).order_by(points.c.ts).limit(keep)
        rows = [Point(*row) for row in conn.execute(stored)]
    if not query.actual and query.values is None:
        rows = _with_bounds(conn, tag_id, query, rows, keep)
    return History(rows, excess)


def _thin(
    conn: Connection,
    tag_id: int,
    first: int,
    last: int,
    keep: int,
    values: tuple[float, ...] | None,
) -> list[Point]:
    """At most ``keep`` of the points from ``first`` to ``last``, keeping their shape."""
    buckets = max(1, keep // 4)
    width = (last - first + buckets) // buckets  # ceil((last - first + 1) / buckets)
    sql = text(_THIN.format(matching=" AND p.value IN :values" if values is not None else ""))
    params: dict[str, Any] = {
        "tag": tag_id,
        "first": first,
        "last": last,
        "width": width,
        "keep": keep,
    }
    if values is not None:
        sql = sql.bindparams(bindparam("values", expanding=True))
        params["values"] = list(values)
    return [Point(*row) for row in conn.execute(sql, params)]


def _with_bounds(
    conn: Connection, tag_id: int, query: HistoryQuery, rows: list[Point], keep: int
) -> list[Point]:
    """``rows`` with the value at each bound that has no stored point, while they fit."""
    if len(rows) >= keep:
        return rows
    bounds = sorted({b for b in (query.start, query.end) if b is not None})
    instants = range(bounds[0], bounds[-1] + 1, bounds[-1] - bounds[0] or 1)
    found = _values_at(conn, tag_id, instants, query.stepwise, exact=False)
    start = [r for r in found if r.ts == query.start]
    end = [r for r in found if r.ts != query.start]
    return start + rows + end[: keep - len(rows) - len(start)]


def _grid(conn: Connection, tag_id: int, grid: range, query: HistoryQuery) -> History:
    """Rule 3: the values on ``grid``, cut to its first ``max_count`` instants."""
    kept = grid if query.max_count is None else grid[: query.max_count]
    if not kept:
        return History([], excess=False)
    values = _values_at(conn, tag_id, kept, query.stepwise, exact=True)
    return History(values, excess=len(kept) < len(grid))


def _values_at(
    conn: Connection, tag_id: int, instants: range, stepwise: bool, *, exact: bool
) -> list[Point]:
    """Values at ``instants``; ``exact=False`` skips those holding a stored point."""
    params = {"tag": tag_id, "first": instants[0], "step": instants.step, "last": instants[-1]}
    sql = _NEIGHBOURS_PG if conn.dialect.name == "postgresql" else _NEIGHBOURS
    found = []
    for ts, *near in conn.execute(sql, params):
        before, after = _side(near[:4]), _side(near[4:])
        if exact or before is None or before.ts != ts:
            found.append(_value(ts, before, after, stepwise))
    return [value for value in found if value is not None]


def _side(columns: Sequence[Any]) -> Point | None:
    return None if columns[0] is None else Point(*columns)


def _value(ts: int, before: Point | None, after: Point | None, stepwise: bool) -> Point | None:
    """Value at ``ts`` from its neighbours: held or linear, never extrapolated."""
    if before is None:
        return None
    if stepwise or before.ts == ts:
        return before._replace(ts=ts)
    estimate = interpolate(before, after, ts)
    if after is None or estimate is None:
        return None
    return Point(before.tag_id, ts, estimate.value, max(before.quality, after.quality))
