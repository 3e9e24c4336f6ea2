"""Thinning many stored points to a few that keep their shape (history's rule 4): [first, last
point] is cut into B = max(1, keep // 4) buckets of equal width, and each keeps its first,
last, lowest and highest point (of equal values, the earliest).

Over a long period most points are never read: an hour whose rollup (``rollups``) lies inside
one bucket gives its four points. Stored points are read only in hours that cross a bucket
edge or an end of the period, in hours holding a flagged point, and in days that are not
compacted or were written into since. Every part gives its candidates per bucket, and the
buckets' points are then picked among the candidates: the very points all of them give.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection

from meterhub.storage import chunks, rollups
from meterhub.storage.codec import EMPTY, Columns
from meterhub.storage.points import TimeRange
from meterhub.storage.rollups import Hours, Ints, first_equal
from meterhub.storage.series import concat, read_rows, read_span, within
from meterhub.times import DAY_US

_LONG_RUN = 4096
"""Runs of at least this many points are thinned where they lie; shorter ones are first
joined, as numpy's cost per call outweighs a copy."""


def thin(stored: Columns, keep: int) -> Columns:
    """The points of ``stored`` (time-ordered) each bucket keeps."""
    buckets = max(1, keep // 4)
    origin = int(stored.ts[0])
    width = (int(stored.ts[-1]) - origin + buckets) // buckets  # ceil((last - first + 1) / B)
    return stored.take(_picks(stored, origin, width))


def _picks(points: Columns, origin: int, width: int) -> Ints:
    """Indexes of the first, last, lowest and highest point of each bucket of ``points``
    (time-ordered), buckets being ``width`` wide from ``origin``."""
    ts, value = points.ts, points.value
    low, high = (int(ts[0]) - origin) // width, (int(ts[-1]) - origin) // width
    cuts = np.searchsorted(ts, origin + np.arange(low + 1, high + 1, dtype=np.int64) * width)
    bounds = np.concatenate(([0], cuts, [len(ts)]))  # nondecreasing: empty buckets repeat
    filled = np.flatnonzero(bounds[1:] != bounds[:-1])
    starts, ends = bounds[filled], bounds[filled + 1]
    sizes = ends - starts
    if len(starts) * _LONG_RUN < len(ts):  # few long buckets: one pass over each
        lows = np.array([s + value[s:e].argmin() for s, e in zip(starts, ends, strict=True)])
        highs = np.array([s + value[s:e].argmax() for s, e in zip(starts, ends, strict=True)])
    else:
        lows = first_equal(value, np.minimum.reduceat(value, starts), starts, sizes)
        highs = first_equal(value, np.maximum.reduceat(value, starts), starts, sizes)
    picks = np.sort(np.stack([starts, ends - 1, lows, highs], axis=1), axis=1).ravel()
    return picks[np.concatenate(([True], picks[1:] != picks[:-1]))]  # buckets in order


def thin_span(conn: Connection, tag_id: int, span: TimeRange, keep: int) -> tuple[Columns, bool]:
    """The stored points of ``tag_id`` in ``span`` thinned to at most ``keep`` and ``True``,
    or all of them and ``False`` when they are no more than ``keep``."""
    infos = chunks.find(conn, tag_id, span)
    rows = read_rows(conn, tag_id, span)
    if sum(info.size for info in infos) + len(rows.ts) > keep:
        parts = _Parts(conn, tag_id, span, infos, rows)
        if parts.count > keep:
            return parts.thin(keep), True
    return read_span(conn, tag_id, span), False


class _Parts:
    """The stored points of a period as whole rollup hours and runs of points (in no order)."""

    def __init__(
        self,
        conn: Connection,
        tag_id: int,
        span: TimeRange,
        infos: Sequence[chunks.ChunkInfo],
        rows: Columns,
    ) -> None:
        self._conn, self._tag_id, self._span = conn, tag_id, span
        self._stamps = {info.day: info.stamp for info in infos}
        self.points: list[Columns] = [rows] if len(rows.ts) else []
        row_days = rows.ts // DAY_US
        written = set(row_days.tolist())
        stamps = [(info.day, info.stamp) for info in infos]
        hours, rolled = rollups.joined(conn, tag_id, stamps)
        overlap = sorted(written & rolled)
        if hours is not None and overlap:  # rows among a chunk's points win over its rollups;
            # rows after them all (a tag's newest) leave them true
            days = np.array(overlap)
            last = np.searchsorted(hours.start, (days + 1) * DAY_US) - 1
            firsts = np.array([rows.ts[row_days == d].min() for d in overlap])
            stale = days[firsts <= hours.last_ts[last]]
            hours = hours.take(~np.isin(hours.start // DAY_US, stale))
            rolled = rolled.difference(stale.tolist())
        raw = [info.day for info in infos if info.day not in rolled]
        for day, stored in zip(raw, self._days(raw), strict=True):
            points = within(stored, span)
            self.points.append(
                points.take(~np.isin(points.ts, rows.ts)) if day in written else points
            )
        self.hours, self._whole = hours, np.zeros(0, np.bool_)
        whole_points = 0
        if hours is not None:  # whole hours give their four points; the rest are read
            start, end = span.bounds()
            self._whole = (hours.flagged == 0) & (hours.first_ts >= start) & (hours.last_ts <= end)
            self._read_hours(hours.take(~self._whole))
            whole_points = int(hours.size[self._whole].sum())
        self.count = whole_points + sum(len(p.ts) for p in self.points)

    def _days(self, days: Sequence[int]) -> list[Columns]:
        """The points of the chunks of ``days``, whole."""
        return chunks.load(self._conn, self._tag_id, [(day, self._stamps[day]) for day in days])

    def _read_hours(self, hours: Hours) -> None:
        """Add the stored points (in the span) of ``hours``, found in their chunks by offset;
        adjacent hours of a day make one run, and the short runs are joined into one."""
        if not len(hours):
            return
        day, lo = hours.start // DAY_US, hours.offset
        hi = lo + hours.size
        breaks = np.concatenate(([True], (day[1:] != day[:-1]) | (lo[1:] != hi[:-1])))
        first = np.flatnonzero(breaks)
        last = np.concatenate((first[1:], [len(day)])) - 1
        runs = day[first].tolist(), lo[first].tolist(), hi[last].tolist()
        days = sorted(set(runs[0]))
        loaded = dict(zip(days, self._days(days), strict=True))
        ts: list[Ints] = []
        value: list[npt.NDArray[np.float64]] = []
        quality: list[npt.NDArray[np.int16]] = []
        for run_day, a, b in zip(*runs, strict=True):
            columns = loaded[run_day]
            if b - a >= _LONG_RUN:
                self.points.append(within(columns.take(slice(a, b)), self._span))
            else:
                ts.append(columns.ts[a:b])
                value.append(columns.value[a:b])
                quality.append(columns.quality[a:b])
        if ts:  # the short runs joined in time order: only their ends may reach past the span
            joined = Columns(np.concatenate(ts), np.concatenate(value), np.concatenate(quality))
            self.points.append(within(joined, self._span))

    def thin(self, keep: int) -> Columns:
        """Rule 4 over all the parts (more than ``keep`` points)."""
        buckets = max(1, keep // 4)
        runs = [p for p in self.points if len(p.ts)]
        hours, whole = self.hours, self._whole
        ends = [(int(p.ts[0]), int(p.ts[-1])) for p in runs]
        if hours is not None and whole.any():
            at = np.flatnonzero(whole)
            ends.append((int(hours.first_ts[at[0]]), int(hours.last_ts[at[-1]])))
        origin = min(first for first, _ in ends)
        width = (max(last for _, last in ends) - origin + buckets) // buckets
        candidates = []
        if hours is not None and whole.any():
            across = (hours.first_ts - origin) // width != (hours.last_ts - origin) // width
            self._read_hours(hours.take(whole & across))
            runs = [p for p in self.points if len(p.ts)]
            candidates.append(_hour_picks(hours.take(whole & ~across), origin, width))
        candidates += [p.take(_picks(p, origin, width)) for p in runs]
        every = concat(candidates)
        every = every.take(np.argsort(every.ts, kind="stable"))
        return thin(every, keep)


def _hour_picks(hours: Hours, origin: int, width: int) -> Columns:
    """The first, last, lowest and highest point of each bucket over whole hours, each inside
    one bucket and none holding a flagged point (so every quality is good)."""
    if not len(hours):
        return EMPTY
    bucket = (hours.first_ts - origin) // width
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    sizes = np.diff(np.r_[starts, len(bucket)])
    lows = first_equal(hours.low, np.minimum.reduceat(hours.low, starts), starts, sizes)
    highs = first_equal(hours.high, np.maximum.reduceat(hours.high, starts), starts, sizes)
    last = starts + sizes - 1
    ts = np.concatenate(
        [hours.first_ts[starts], hours.last_ts[last], hours.low_ts[lows], hours.high_ts[highs]]
    )
    value = np.concatenate(
        [hours.first[starts], hours.last[last], hours.low[lows], hours.high[highs]]
    )
    order = np.argsort(ts, kind="stable")
    ts, value = ts[order], value[order]
    once = np.r_[True, ts[1:] != ts[:-1]]
    return Columns(ts[once], value[once], np.zeros(int(once.sum()), np.int16))
