"""Hourly rollups of compacted days: per hour of a tag, its count, first and last point, lowest
and highest point (the earliest of equals), sum, and rise.

Made with each chunk (``compactor``) under the chunk's stamp, and kept when retention drops
the chunk. The rise counts on across drops the way billing does: the last value less the
first, plus the size of each fall onto a flagged point whose predecessor lies in the hour
(the falls are what is stored: nearly always zero, they take no room).
A day whose hours average fewer than ``MIN_POINTS_PER_HOUR`` points gets an empty rollup:
there the chunk itself is as small, and is read instead. A day's figures are its hours'
figures taken together (first of the first hour, lowest of the lowest, ...): a year is 8,760
hours, few enough to fold on read, so days are not stored apart.

Readers use them where a long period is asked for: thinning (``thinning``) takes whole hours
inside one bucket from here, and neighbour seeks (``series.near``) take an hour's first or
last point from here when the instant lies between two hours' points (midnights, hour
boundaries), instead of decoding the day.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, delete, select

from meterhub.storage.cache import CACHE
from meterhub.storage.codec import Columns, pack, unpack_floats, unpack_ints
from meterhub.storage.points import Point
from meterhub.storage.tables import rollups
from meterhub.times import HOUR_US

MIN_POINTS_PER_HOUR = 4

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


class Hours:
    """Rollups of the hours holding points, oldest first, one column per hour: ``ints`` rows
    are the hour's start, its points, its flagged points, the µs of its first, last,
    lowest and highest point, and where its points start in its day's chunk (not stored:
    the sum of the points of the day's hours before it); ``floats`` rows their values, then
    the sum and the falls."""

    __slots__ = ("floats", "ints")

    def __init__(self, ints: Ints, floats: Floats) -> None:
        self.ints, self.floats = ints, floats

    start = property(lambda self: self.ints[0])
    size = property(lambda self: self.ints[1])
    flagged = property(lambda self: self.ints[2])
    first_ts = property(lambda self: self.ints[3])
    last_ts = property(lambda self: self.ints[4])
    low_ts = property(lambda self: self.ints[5])
    high_ts = property(lambda self: self.ints[6])
    offset = property(lambda self: self.ints[7])
    first = property(lambda self: self.floats[0])
    last = property(lambda self: self.floats[1])
    low = property(lambda self: self.floats[2])
    high = property(lambda self: self.floats[3])
    total = property(lambda self: self.floats[4])
    fallen = property(lambda self: self.floats[5])  # rise = last - first + fallen

    def __len__(self) -> int:
        return int(self.ints.shape[1])

    def take(self, which: npt.NDArray[np.bool_]) -> Hours:
        """The hours ``which`` marks (``np.compress``: a few times faster than a mask)."""
        return Hours(np.compress(which, self.ints, axis=1), np.compress(which, self.floats, axis=1))

    @classmethod
    def join(cls, parts: Sequence[Hours]) -> Hours:
        return Hours(
            np.concatenate([p.ints for p in parts], axis=1),
            np.concatenate([p.floats for p in parts], axis=1),
        )

    @property
    def nbytes(self) -> int:
        return int(self.ints.nbytes + self.floats.nbytes)


def hourly(columns: Columns) -> Hours:
    """The rollups of each hour of ``columns`` (time-ordered points, at least one)."""
    ts, value, quality = columns
    hour = ts // HOUR_US
    starts = np.flatnonzero(np.r_[True, hour[1:] != hour[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    sizes = ends - starts + 1
    low = np.minimum.reduceat(value, starts)
    high = np.maximum.reduceat(value, starts)
    flagged = quality != 0
    fall = np.zeros(len(ts))
    fall[1:] = np.where(flagged[1:], np.maximum(value[:-1] - value[1:], 0.0), 0.0)
    fall[starts] = 0.0  # a fall onto an hour's first point lies between two hours
    ints = [
        hour[starts] * HOUR_US,
        sizes,
        np.add.reduceat(flagged.astype(np.int64), starts),
        ts[starts],
        ts[ends],
        ts[first_equal(value, low, starts, sizes)],
        ts[first_equal(value, high, starts, sizes)],
        starts,
    ]
    floats = [
        value[starts],
        value[ends],
        low,
        high,
        np.add.reduceat(value, starts),
        np.add.reduceat(fall, starts),
    ]
    return Hours(np.array(ints, np.int64), np.array(floats, np.float64))


def first_equal(value: Floats, target: Floats, starts: Ints, sizes: Ints) -> Ints:
    """Per segment of ``value`` (``starts``, ``sizes``), the index of its first value equal to
    the segment's ``target`` (which it holds)."""
    hits = np.flatnonzero(value == np.repeat(target, sizes))
    return hits[np.searchsorted(hits, starts)]


_STORED = 7
"""The ``ints`` rows stored (the offsets are not)."""


def encode(hours: Hours) -> tuple[bytes, bytes]:
    """The hours of one UTC day compressed; empty when too few points per hour to pay off."""
    if hours.size.sum() < MIN_POINTS_PER_HOUR * len(hours):
        return b"", b""
    ints = hours.ints[:_STORED].copy()
    ints[3:] -= ints[0]  # times from the hour's start
    ints[0] = ints[0] // HOUR_US % 24
    return pack(ints.ravel()), pack(hours.floats.ravel())


def decode(day: int, int_blob: bytes, float_blob: bytes) -> Hours | None:
    """The hours ``encode`` packed for UTC ``day``; ``None`` for an empty rollup."""
    if not int_blob:
        return None
    stored = unpack_ints(int_blob).reshape(_STORED, -1)
    ints = np.empty((_STORED + 1, stored.shape[1]), np.int64)
    ints[:_STORED] = stored
    ints[0] = (day * 24 + ints[0]) * HOUR_US
    ints[3:_STORED] += ints[0]
    ints[_STORED] = np.cumsum(ints[1]) - ints[1]
    return Hours(ints, unpack_floats(float_blob).reshape(6, -1))


def write(conn: Connection, tag_id: int, day: int, stamp: int, columns: Columns) -> Hours | None:
    """Store the rollups of ``columns``, the points of the chunk of ``tag_id`` on ``day``;
    the hours stored (``None``: an empty rollup)."""
    hours = hourly(columns)
    int_blob, float_blob = encode(hours)
    where = (rollups.c.tag_id == tag_id, rollups.c.day == day)
    conn.execute(delete(rollups).where(*where))
    values = {"stamp": stamp, "int_blob": int_blob, "float_blob": float_blob}
    conn.execute(rollups.insert().values(tag_id=tag_id, day=day, **values))
    return hours if int_blob else None


def load(
    conn: Connection, tag_id: int, chunks: Sequence[tuple[int, int]]
) -> dict[int, Hours | None]:
    """The rollups of the chunks ``(day, stamp)`` of ``tag_id`` (``None``: an empty one, or
    none); cached under the chunk's stamp, which its rollup shares."""
    found: dict[int, Hours | None] = {}
    missing = {}
    for (day, stamp), held in zip(chunks, CACHE.get("hours", [s for _, s in chunks]), strict=True):
        if held is None:
            missing[day] = stamp
        else:
            found[day] = held[0]
    if missing:
        c = rollups.c
        query = select(c.day, c.stamp, c.int_blob, c.float_blob).where(
            c.tag_id == tag_id, c.day.in_(list(missing))
        )
        for day, stamp, int_blob, float_blob in conn.execute(query):
            if stamp == missing[day]:
                hours = decode(day, int_blob, float_blob)
                CACHE.put("hours", stamp, (hours,), 64 if hours is None else hours.nbytes)
                found[day] = hours
    return {day: found.get(day) for day, _ in chunks}


def joined(
    conn: Connection, tag_id: int, chunks: Sequence[tuple[int, int]]
) -> tuple[Hours | None, frozenset[int]]:
    """The hours of the rollups of the chunks ``(day, stamp)`` of ``tag_id`` (oldest first)
    joined, and the days that have one. Cached joined under the chunks' stamps (kept with
    the entry, and compared: a key is only their hash), so a long period read again (a
    chart refreshed, a year asked for twice) folds no day again."""
    stamps = tuple(stamp for _, stamp in chunks)
    key = hash(stamps)
    held = CACHE.get("joined", [key])[0]
    if held is not None and held[0] == stamps:
        return held[1], held[2]
    found = {day: hours for day, hours in load(conn, tag_id, chunks).items() if hours is not None}
    hours = Hours.join(list(found.values())) if found else None
    size = 8 * len(stamps) + 64 * len(found)
    if hours is not None:
        hours.ints.flags.writeable = hours.floats.flags.writeable = False
        size += hours.nbytes
    days = frozenset(found)
    CACHE.put("joined", key, (stamps, hours, days), size)
    return hours, days


def side(hours: Hours, tag_id: int, ts: int, *, before: bool) -> Point | None:
    """The stored point at or before (else at or after) ``ts``, when it is the first or last
    point of an hour without flagged points (so its quality is good); ``None`` when only the
    points themselves can tell. ``ts`` lies within the hours' first and last point."""
    if before:
        n = int(np.searchsorted(hours.first_ts, ts, "right")) - 1
        found = hours.last_ts[n] <= ts or hours.first_ts[n] == ts
        at, value = (
            (hours.last_ts[n], hours.last[n]) if hours.last_ts[n] <= ts else (ts, hours.first[n])
        )
    else:
        n = int(np.searchsorted(hours.last_ts, ts, "left"))
        found = hours.first_ts[n] >= ts or hours.last_ts[n] == ts
        at, value = (
            (hours.first_ts[n], hours.first[n]) if hours.first_ts[n] >= ts else (ts, hours.last[n])
        )
    if not found or hours.flagged[n]:
        return None
    return Point(tag_id, int(at), float(value))


def delete_tags(conn: Connection, tag_ids: Sequence[int]) -> None:
    conn.execute(delete(rollups).where(rollups.c.tag_id.in_(list(tag_ids))))
