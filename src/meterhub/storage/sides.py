"""The stored neighbours of many instants of many tags at once, as columns.

``series.near`` answers each instant with its own index seeks; a time-of-use bill asks for
dozens of instants per meter, most of them inside compacted days. Here an instant whose day
is a chunk, which spans it, is answered from that chunk's points: the chunks of every such
(tag, day) are read in one statement and decoded once (identical time columns, as meters
read at the same instants have, once), and all instants are found in one ``searchsorted``.
A row of the tag at or after the start of its earliest such day is found by one seek per
tag: an instant before it is answered from its chunk, the row taking the after side when it
is as near (rows win ties). At the hour, the instants of a (tag, month) asked three times or
more are answered from the tag's hour marks (``storage.marks``), a row a month, instead of
a chunk a day. Every other instant goes to ``series.near``. The answers are
``near``'s, point for point.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import compress
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection

from meterhub.db import driver_rows
from meterhub.storage import marks
from meterhub.storage.codec import Columns, unpack_floats_joined, unpack_ints
from meterhub.storage.points import Point
from meterhub.storage.series import Near, near
from meterhub.times import DAY_US, HOUR_US

NO_POINT = np.iinfo(np.int64).min
"""The time of a side with no point."""

SIDES_TAGS = 2_000
"""Tags whose chunks one statement reads (their decoded points are held together)."""

_DAY_BITS = 37  # µs within a UTC day fit in 37 bits
_TAG_DAY_BITS = 20  # days since 1970 fit in 20 bits for the next two thousand years
_DAY_MASK = (1 << _TAG_DAY_BITS) - 1

Ints = npt.NDArray[np.int64]
Marked = npt.NDArray[np.bool_]


class Sides(NamedTuple):
    """Per instant, the last stored point at or before it and the first at or after it; a
    side with no point has time ``NO_POINT``."""

    before: Columns
    after: Columns

    def take(self, which: slice) -> Sides:
        return Sides(self.before.take(which), self.after.take(which))

    @classmethod
    def of(cls, found: Sequence[Near]) -> Sides:
        """``near``'s answers as columns."""
        before, after = ([pair[k] for pair in found] for k in (0, 1))
        return cls(_columns(before), _columns(after))


def sides(conn: Connection, tags: Ints, times: Ints) -> Sides:
    """The neighbours of each instant ``times[i]`` of tag ``tags[i]``."""
    found = _empty(len(times))
    if not len(times):
        return found
    order = np.lexsort((times, tags))
    bounds = np.flatnonzero(np.r_[True, tags[order][1:] != tags[order][:-1], True])
    for first in range(0, len(bounds) - 1, SIDES_TAGS):
        last = min(first + SIDES_TAGS, len(bounds) - 1)
        which = order[bounds[first] : bounds[last]]
        _fill(conn, tags[which], times[which], which, found)
    return found


def _empty(size: int) -> Sides:
    def columns() -> Columns:
        return Columns(np.full(size, NO_POINT, np.int64), np.zeros(size), np.zeros(size, np.int16))

    return Sides(columns(), columns())


def _columns(points: Sequence[Point | None]) -> Columns:
    return Columns(
        np.array([NO_POINT if p is None else p.ts for p in points], np.int64),
        np.array([0.0 if p is None else p.value for p in points], np.float64),
        np.array([0 if p is None else p.quality for p in points], np.int16),
    )


def _fill(conn: Connection, tags: Ints, times: Ints, where: Ints, found: Sides) -> None:
    """Answer the instants (sorted by tag, then time) into ``found`` at ``where``."""
    days = times // DAY_US
    marked = _from_marks(conn, tags, times, where, found)
    keys = tags << _TAG_DAY_BITS | days.clip(0, _DAY_MASK)
    in_range = (days >= 0) & (days <= _DAY_MASK)
    chunks = _chunks(conn, np.unique(keys[in_range & ~marked])) if not marked.all() else None
    in_chunk = np.zeros(len(times), bool)
    if chunks is not None:
        j = np.searchsorted(chunks.keys, keys).clip(max=len(chunks.keys) - 1)
        in_chunk = (
            ~marked
            & (chunks.keys[j] == keys)
            & (chunks.first_ts[j] <= times)
            & (times <= chunks.last_ts[j])
        )
    quick = marked | in_chunk
    if quick.any():
        rows = _first_rows(conn, tags[quick], days[quick])
        k = np.searchsorted(rows.tags, tags).clip(max=max(len(rows.tags) - 1, 0))
        has_row = np.zeros(len(times), bool)
        if len(rows.tags):
            has_row = rows.tags[k] == tags
            quick &= ~has_row | (times < rows.points.ts[k])
        if chunks is not None:
            in_chunk &= quick
            _from_chunks(chunks, j[in_chunk], times[in_chunk], where[in_chunk], found)
        _rows_after(rows, k[quick & has_row], where[quick & has_row], found)
    slow = np.flatnonzero(~quick)
    if len(slow):
        answers = Sides.of(
            near(conn, list(zip(tags[slow].tolist(), times[slow].tolist(), strict=True)))
        )
        _put(found.before, where[slow], answers.before)
        _put(found.after, where[slow], answers.after)


_MARKS_FROM = 3
"""Instants a (tag, block) is asked at for its hour marks to be read: fewer read their days'
chunks, whose value columns decode faster than a block's marks."""


def _from_marks(conn: Connection, tags: Ints, times: Ints, where: Ints, found: Sides) -> Marked:
    """Instants the hour marks answer, both sides from them into ``found``: at an hour's first
    or last point, before its first with the hour before marked, or after its last with the
    hour after marked (no point lies between two marked hours' points); which instants
    were answered."""
    blocks = marks.blocks_of(times)
    keys = tags << _TAG_DAY_BITS | blocks.clip(0, _DAY_MASK)  # ascending, as the instants are
    in_range = (blocks >= 0) & (blocks <= _DAY_MASK)
    firsts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    asked = np.diff(np.r_[firsts, len(keys)])
    held = _marks(conn, keys[firsts[(asked >= _MARKS_FROM) & in_range[firsts]]])
    answered = np.zeros(len(times), bool)
    if held is None:
        return answered
    pair_keys, blobs = held
    r = np.searchsorted(pair_keys, keys).clip(max=len(pair_keys) - 1)
    which = np.flatnonzero(in_range & (pair_keys[r] == keys))
    times = times[which]
    start = times // HOUR_US * HOUR_US
    near = marks.around(blobs, r[which], (start - marks.starts_of(blocks[which])) // HOUR_US)
    at = times - start
    on_first, on_last = at == near.first_ts, at == near.last_ts
    early = (at < near.first_ts) & (near.flagged_before == 0)
    late = (at > near.last_ts) & (near.flagged_after == 0)
    ok = (near.flagged == 0) & (on_first | on_last | early | late)
    near = marks.Around(*(column[ok] for column in near))
    start, on_first, early, late = start[ok], on_first[ok], early[ok], late[ok]
    own_ts = start + np.where(on_first, near.first_ts, near.last_ts)  # the hour's first or last
    own = np.where(on_first, near.first, near.last)  # (its last when early or late)
    before = Columns(  # early: the hour before's last
        np.where(early, start - HOUR_US + near.last_ts_before, own_ts),
        np.where(early, near.last_before, own),
        np.zeros(len(own), np.int16),
    )
    after = Columns(  # early: the hour's first; late: the hour after's first
        np.where(
            early,
            start + near.first_ts,
            np.where(late, start + HOUR_US + near.first_ts_after, own_ts),
        ),
        np.where(early, near.first, np.where(late, near.first_after, own)),
        before.quality,
    )
    which = which[ok]
    _put(found.before, where[which], before)
    _put(found.after, where[which], after)
    answered[which] = True
    return answered


def _marks(conn: Connection, wanted: Ints) -> tuple[Ints, list[marks.Stored]] | None:
    """The stored marks of the (tag, block) pairs ``wanted`` (as keys, ascending) that hold
    any, and those pairs' keys. ``None`` if none does."""
    if not len(wanted):
        return None
    tags, blocks = np.unique(wanted >> _TAG_DAY_BITS), np.unique(wanted & _DAY_MASK)
    if len(tags) * len(blocks) > _CROSS * len(wanted):
        rows = _fetch(conn, _MARKS_OF_PAIRS, wanted >> _TAG_DAY_BITS, wanted & _DAY_MASK)
    else:
        rows = _select(conn, _MARKS, tags, blocks)
    asked = set(wanted.tolist())
    keys, blobs = [], []
    for tag, block, int_blob, float_blob, scale in rows:
        key = tag << _TAG_DAY_BITS | block
        if int_blob and key in asked:
            keys.append(key)
            blobs.append(marks.Stored(bytes(int_blob), bytes(float_blob), scale))
    return (np.array(keys, np.int64), blobs) if keys else None


class _Chunks(NamedTuple):
    """Decoded chunks, ordered by (tag, day): per chunk its key, span, time column and where
    its points start; each distinct time column once, laid end to end, each time keyed by
    its column and its µs within the day; and every chunk's values and qualities laid end
    to end."""

    keys: Ints
    first_ts: Ints
    last_ts: Ints
    times_of: Ints
    starts: Ints
    time_keys: Ints
    time_starts: Ints
    ts: Ints
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int16]


def _chunks(conn: Connection, wanted: Ints) -> _Chunks | None:
    """The chunks of the (tag, day) pairs ``wanted`` (as keys, ascending) that exist, decoded;
    ``None`` if none does."""
    tags, days = np.unique(wanted >> _TAG_DAY_BITS), np.unique(wanted & _DAY_MASK)
    if len(tags) * len(days) > _CROSS * len(wanted):  # the pairs themselves, then
        rows = _fetch(conn, _CHUNKS_OF_PAIRS, wanted >> _TAG_DAY_BITS, wanted & _DAY_MASK)
    else:  # every tag on every day (index seeks the driver need not parse): keep those wanted
        rows = _select(conn, _CHUNKS, tags, days)
    if not rows:
        return None
    columns = list(zip(*rows, strict=True))
    keys = np.array(columns[0], np.int64) << _TAG_DAY_BITS | np.array(columns[1], np.int64)
    keep = np.isin(keys, wanted)
    if not keep.all():
        if not keep.any():
            return None
        mask = keep.tolist()
        columns = [tuple(compress(column, mask)) for column in columns]
        keys = keys[keep]
    _, day, first_ts, last_ts, lender, ts_blobs, value_blobs, quality_blobs = columns
    lent = _lent_times(conn, {(t, d) for t, d in zip(lender, day, strict=True) if t is not None})
    number: dict[bytes, int] = {}  # each distinct time column, decoded once
    chunk_times = np.array(
        [
            number.setdefault(blob if t is None else lent[t, d], len(number))
            for t, d, blob in zip(lender, day, ts_blobs, strict=True)
        ],
        np.int64,
    )
    times = [unpack_ints(blob) for blob in number]
    column_days = np.array(day, np.int64)[np.unique(chunk_times, return_index=True)[1]]
    column_sizes = np.array([len(t) for t in times], np.int64)
    time_starts = np.cumsum(column_sizes) - column_sizes
    ts = np.concatenate(times)
    origins = (np.arange(len(times), dtype=np.int64) << _DAY_BITS) - column_days * DAY_US
    sizes = column_sizes[chunk_times]
    starts = np.cumsum(sizes) - sizes
    quality = np.zeros(int(sizes.sum()), np.int16)
    for n, blob in enumerate(quality_blobs):
        if blob is not None:
            quality[starts[n] : starts[n] + sizes[n]] = unpack_ints(bytes(blob))
    return _Chunks(
        keys,
        np.array(first_ts),
        np.array(last_ts),
        chunk_times,
        starts,
        ts + np.repeat(origins, column_sizes),
        time_starts,
        ts,
        unpack_floats_joined([bytes(b) for b in value_blobs], sizes.tolist()),
        quality,
    )


def _lent_times(conn: Connection, pairs: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The times blob of each lending chunk (tag, day) of ``pairs``."""
    if not pairs:
        return {}
    tags, days = (np.unique(np.array(sorted(pairs))[:, k]) for k in (0, 1))
    rows = _select(conn, _TIMES, tags, days)
    return {(t, d): bytes(blob) for t, d, blob in rows if (t, d) in pairs}


def _from_chunks(chunks: _Chunks, j: Ints, times: Ints, where: Ints, found: Sides) -> None:
    """Instants inside chunk ``j[i]``: both sides from its points."""
    column = chunks.times_of[j]
    keys = (column << _DAY_BITS) + times - (chunks.keys[j] & _DAY_MASK) * DAY_US
    for side, at in (
        (found.before, np.searchsorted(chunks.time_keys, keys, "right") - 1),
        (found.after, np.searchsorted(chunks.time_keys, keys, "left")),
    ):
        point = chunks.starts[j] + at - chunks.time_starts[column]
        _put(side, where, Columns(chunks.ts[at], chunks.value[point], chunks.quality[point]))


class _Rows(NamedTuple):
    """Per tag (ascending) with one, its first row at or after its earliest chunk day asked."""

    tags: Ints
    points: Columns


def _first_rows(conn: Connection, tags: Ints, days: Ints) -> _Rows:
    """Per tag, its first row at or after the first of ``days`` (sorted by tag, then day)."""
    starts = np.unique(tags, return_index=True)
    rows = _fetch(conn, _FIRST_ROWS, starts[0], days[starts[1]] * DAY_US)
    found = Columns.of([row[1:] for row in rows])
    return _Rows(np.array([row[0] for row in rows], np.int64), found)


def _rows_after(rows: _Rows, k: Ints, where: Ints, found: Sides) -> None:
    """Where the tag's first row ``k[i]`` is as near as the after side found in its chunk,
    the row is the after side (rows win ties)."""
    nearer = rows.points.ts[k] <= found.after.ts[where]
    _put(found.after, where[nearer], rows.points.take(k[nearer]))


def _put(side: Columns, where: Ints, points: Columns) -> None:
    side.ts[where], side.value[where], side.quality[where] = points


_CHUNK_COLUMNS = (
    "c.tag_id, c.day, c.first_ts, c.last_ts, c.ts_tag, c.ts_blob, c.value_blob,"
    " CASE WHEN c.flagged > 0 THEN c.quality_blob END"
)
_CHUNKS = (
    f"SELECT {_CHUNK_COLUMNS} FROM chunks c WHERE c.tag_id {{tags}} AND c.day {{days}}"
    " ORDER BY c.tag_id, c.day"
)
_CHUNKS_OF_PAIRS = (
    f"SELECT {_CHUNK_COLUMNS} FROM {{q}} JOIN chunks c ON c.tag_id = q.a AND c.day = q.b"
    " ORDER BY c.tag_id, c.day"
)
_CROSS = 4
"""How many times the (tag, day) pairs asked every tag on every day may be and still be
read as that (a batch of bills mostly asks each tag for the same days)."""
_MARK_COLUMNS = "m.tag_id, m.block, m.int_blob, m.float_blob, m.scale"
_MARKS = (
    f"SELECT {_MARK_COLUMNS} FROM hour_marks m WHERE m.tag_id {{tags}} AND m.block {{days}}"
    " ORDER BY m.tag_id, m.block"
)
_MARKS_OF_PAIRS = (
    f"SELECT {_MARK_COLUMNS} FROM {{q}} JOIN hour_marks m ON m.tag_id = q.a AND m.block = q.b"
    " ORDER BY m.tag_id, m.block"
)
_TIMES = "SELECT tag_id, day, ts_blob FROM chunks WHERE tag_id {tags} AND day {days}"
_FIRST_ROWS = {
    "sqlite": "SELECT q.a, p.ts, p.value, p.quality FROM {q} JOIN points p ON p.tag_id = q.a"
    " AND p.ts = (SELECT min(x.ts) FROM points x WHERE x.tag_id = q.a AND x.ts >= q.b)"
    " ORDER BY q.a",
    "postgresql": "SELECT q.a, p.ts, p.value, p.quality FROM {q} JOIN LATERAL"
    " (SELECT x.ts, x.value, x.quality FROM points x WHERE x.tag_id = q.a AND x.ts >= q.b"
    " ORDER BY x.ts LIMIT 1) p ON true ORDER BY q.a",
}
_PAIRS = {
    "sqlite": "(SELECT json_extract(value, '$[0]') AS a, json_extract(value, '$[1]') AS b"
    " FROM json_each(?)) q",
    "postgresql": "unnest(%s::bigint[], %s::bigint[]) AS q(a, b)",
}


def _fetch(conn: Connection, sql: str | dict[str, str], a: Ints, b: Ints) -> list[Any]:
    """Rows of ``sql`` over the pairs ``(a[i], b[i])`` as table ``q(a, b)``."""
    dialect = conn.dialect.name
    statement = (sql if isinstance(sql, str) else sql[dialect]).format(q=_PAIRS[dialect])
    params: Sequence[Any] = (
        (a.tolist(), b.tolist())
        if dialect == "postgresql"
        else (json.dumps(np.stack([a, b], axis=1).tolist()),)
    )
    return driver_rows(conn, statement, params)


def _select(conn: Connection, sql: str, tags: Ints, days: Ints) -> list[Any]:
    """Rows of ``sql`` with ``tag_id`` in ``tags`` and ``day`` in ``days``."""
    if conn.dialect.name == "postgresql":
        statement = sql.format(tags="= ANY(%s)", days="= ANY(%s)")
        return driver_rows(conn, statement, (tags.tolist(), days.tolist()))
    marks = {k: f"IN ({', '.join('?' * len(v))})" for k, v in (("tags", tags), ("days", days))}
    return driver_rows(conn, sql.format(**marks), (*tags.tolist(), *days.tolist()))
