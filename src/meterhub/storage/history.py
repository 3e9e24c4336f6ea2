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
   ``step`` with ``values`` ("value"), ``max_count`` below 1 ("maxCount"); with ``NotKept``:
   a bound before the raw retention horizon ("from", "to"). Without bounds, a period is
   what is kept.

``excess`` reports stored points thinned or cut and grid instants cut, never a dropped
bound value. Stored points are read with ``series.read_span`` (compressed day chunks and the
row table together) and thinned with numpy; grid and bound values come from one batched
neighbour seek per instant (``series.near``), so a grid never reads the whole period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from sqlalchemy import Connection, select

from meterhub.errors import InvalidInput
from meterhub.storage.interpolate import interpolate
from meterhub.storage.points import Point, TimeRange, latest
from meterhub.storage.retention import require_kept
from meterhub.storage.series import as_points, near, points_between, read_span
from meterhub.storage.tables import chunks, points
from meterhub.storage.thinning import thin, thin_span

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


def read_history(conn: Connection, tag_id: int, query: HistoryQuery) -> History:
    """The history of ``tag_id`` that ``query`` asks for; ``InvalidInput`` if it is malformed,
    ``NotKept`` if a bound lies before the raw retention horizon."""
    _check(conn, query)
    return _read(conn, tag_id, query)


def read_histories(
    conn: Connection, tags: Sequence[tuple[int, bool]], query: HistoryQuery
) -> list[History]:
    """``read_history`` of each (tag id, stepwise) in ``tags``, in order; the latest points
    of any number of tags come from one query."""
    _check(conn, query)
    if query.start is None and query.end is None and query.step is None and query.values is None:
        found = latest(conn, [tag_id for tag_id, _ in tags])
        return [History([found[t]] if t in found else [], excess=False) for t, _ in tags]
    return [_read(conn, t, replace(query, stepwise=stepwise)) for t, stepwise in tags]


def _check(conn: Connection, query: HistoryQuery) -> None:
    problems = _problems(query)
    if problems:
        raise InvalidInput(problems)
    require_kept(conn, {"from": query.start, "to": query.end})


def _read(conn: Connection, tag_id: int, query: HistoryQuery) -> History:
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


def _latest(conn: Connection, tag_id: int, values: tuple[float, ...] | None) -> list[Point]:
    """The latest point, or the latest whose value is one of ``values``: the row table first,
    then chunks newer than its match, newest first, until one matches."""
    if values is None:
        held = latest(conn, [tag_id]).get(tag_id)
        return [] if held is None else [held]
    query = (
        select(points.c.ts)
        .where(points.c.tag_id == tag_id, points.c.value.in_(values))
        .order_by(points.c.ts.desc())
        .limit(1)
    )
    best: int | None = conn.execute(query).scalar_one_or_none()
    days = select(chunks.c.first_ts, chunks.c.last_ts).where(chunks.c.tag_id == tag_id)
    if best is not None:
        days = days.where(chunks.c.last_ts > best)
    for first_ts, last_ts in conn.execute(days.order_by(chunks.c.day.desc())).all():
        day = read_span(conn, tag_id, TimeRange(first_ts, last_ts))
        hits = day.ts[np.isin(day.value, values)]
        if len(hits) and (best is None or hits[-1] > best):
            best = int(hits[-1])
            break
    if best is None:
        return []
    return points_between(conn, tag_id, TimeRange(best, best))


def _period(conn: Connection, tag_id: int, query: HistoryQuery) -> History:
    """Rules 2, 4 and 5: stored points (thinned or cut when too many), then bound values."""
    if query.start is not None and query.end is not None and query.start > query.end:
        return History([], excess=False)
    keep = HARD_CAP if query.max_count is None else min(query.max_count, HARD_CAP)
    span = TimeRange(query.start, query.end)
    if query.values is not None:
        stored = read_span(conn, tag_id, span)
        stored = stored.take(np.isin(stored.value, query.values))
        excess = len(stored.ts) > keep
        if excess and query.max_count is not None:
            stored = thin(stored, keep)
    elif query.max_count is None:
        stored = read_span(conn, tag_id, span, keep + 1)
        excess = len(stored.ts) > keep
    else:
        stored, excess = thin_span(conn, tag_id, span, keep)
    rows = as_points(tag_id, stored.take(slice(keep)))
    if not query.actual and query.values is None:
        rows = _with_bounds(conn, tag_id, query, rows, keep)
    return History(rows, excess)


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
    found = []
    sides = near(conn, [(tag_id, ts) for ts in instants])
    for ts, (before, after) in zip(instants, sides, strict=True):
        if exact or before is None or before.ts != ts:
            found.append(_value(ts, before, after, stepwise))
    return [value for value in found if value is not None]


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
