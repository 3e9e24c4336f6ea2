"""Hour marks: per tag and block of 32 UTC days, each hour's first and last point and whether
it holds flagged points, taken from the hourly rollups of the block's chunks.

A time-of-use bill reads a meter's register at dozens of period boundaries a month, nearly
all of them on the hour. Between two hours' points the neighbours of such an instant are the
last point of one hour and the first of the next, which one row of marks per block answers
without the block's chunks: a month of meters is read in a few rows a meter instead of a
chunk a day (``sides``).

The marks of a block are its days' rollups taken together (days with an empty rollup, too
few points to roll up, have none, and so do days that do not rise as a register does), kept
so in the transaction that rolls a day up (``compactor``): the day's hours are put in place
of its old ones, or, where the block has no marks yet, the block's are made from its
chunks' rollups. Deleting a tag deletes its marks; retention deletes the marks of the
blocks it drops days of, so marks never answer for a day without its chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, delete, select

from meterhub.storage import rollups
from meterhub.storage.codec import pack, unpack_floats, unpack_ints
from meterhub.storage.tables import chunks, hour_marks
from meterhub.times import DAY_US, HOUR_US

BLOCK_DAYS = 32

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


class Marks(NamedTuple):
    """Hours holding points, oldest first: their start, flagged points, first and last µs,
    first and last value."""

    start: Ints
    flagged: Ints
    first_ts: Ints
    last_ts: Ints
    first: Floats
    last: Floats

    @classmethod
    def empty(cls) -> Marks:
        ints, floats = np.empty(0, np.int64), np.empty(0, np.float64)
        return cls(ints, ints, ints, ints, floats, floats)

    @classmethod
    def join(cls, parts: list[Marks]) -> Marks:
        columns: list[Any] = [np.concatenate(column) for column in zip(*parts, strict=True)]
        return cls(*columns)

    def take(self, which: npt.NDArray[np.bool_]) -> Marks:
        columns: list[Any] = [np.compress(which, column) for column in self]
        return Marks(*columns)


def block_of(day: int) -> int:
    return day // BLOCK_DAYS


def encode(marks: Marks, block: int) -> tuple[bytes, bytes]:
    if not len(marks.start):
        return b"", b""
    ints = np.concatenate(
        [
            (marks.start - block * BLOCK_DAYS * DAY_US) // HOUR_US,
            marks.flagged,
            marks.first_ts - marks.start,
            marks.last_ts - marks.start,
        ]
    )
    return pack(ints), pack(np.concatenate([marks.first, marks.last]))


def stored(int_blob: bytes, float_blob: bytes) -> tuple[Ints, Floats]:
    """A block's marks as ``encode`` stores them: rows of the hour in the block, flagged
    points, first and last µs from the hour's start; rows of first and last value."""
    return unpack_ints(int_blob).reshape(4, -1), unpack_floats(float_blob).reshape(2, -1)


def decode(block: int, int_blob: bytes, float_blob: bytes) -> Marks:
    if not int_blob:
        return Marks.empty()
    (hour, flagged, first_ts, last_ts), (first, last) = stored(int_blob, float_blob)
    start = block * BLOCK_DAYS * DAY_US + hour * HOUR_US
    return Marks(start, flagged, start + first_ts, start + last_ts, first, last)


def put_day(conn: Connection, tag_id: int, day: int, hours: rollups.Hours | None) -> None:
    """Put ``hours`` (``None``: an empty rollup) in the marks of ``tag_id`` as those of UTC
    ``day``, whose rollup was just written."""
    block = block_of(day)
    where = (hour_marks.c.tag_id == tag_id, hour_marks.c.block == block)
    held = conn.execute(select(hour_marks.c.int_blob, hour_marks.c.float_blob).where(*where))
    row = held.first()
    if row is None:
        make(conn, tag_id, block)
        return
    old = decode(block, row.int_blob, row.float_blob)
    days = old.start // DAY_US
    parts = [old.take(days < day), old.take(days > day)]
    if hours is not None and rising(hours):
        parts.insert(1, _of_hours(hours))
    conn.execute(delete(hour_marks).where(*where))
    _insert(conn, tag_id, block, Marks.join(parts))


def make(conn: Connection, tag_id: int, block: int) -> None:
    """Store the marks of a block that has none, from the rollups of its chunks."""
    first = block * BLOCK_DAYS
    c = chunks.c
    query = (
        select(c.day, c.stamp)
        .where(c.tag_id == tag_id, c.day >= first, c.day < first + BLOCK_DAYS)
        .order_by(c.day)
    )
    held = rollups.load(conn, tag_id, [(day, stamp) for day, stamp in conn.execute(query)])
    found = [_of_hours(hours) for hours in held.values() if hours is not None and rising(hours)]
    _insert(conn, tag_id, block, Marks.join(found) if found else Marks.empty())


def rising(hours: rollups.Hours) -> bool:
    """Whether a day's hours look like a register's, the readings bills read at boundaries:
    in each hour without flagged points the first point is the lowest and the last the
    highest, and none starts below the hour before it ends. A gauge's days, which bills
    never read, keep no marks."""
    calm = hours.flagged == 0
    inside = (hours.low == hours.first) & (hours.high == hours.last)
    across = hours.first[1:] >= hours.last[:-1]
    return bool(np.all(inside | ~calm) and np.all(across | ~calm[1:]))


def _insert(conn: Connection, tag_id: int, block: int, marks: Marks) -> None:
    int_blob, float_blob = encode(marks, block)
    values = {"tag_id": tag_id, "block": block, "int_blob": int_blob, "float_blob": float_blob}
    conn.execute(hour_marks.insert().values(**values))


def _of_hours(hours: rollups.Hours) -> Marks:
    return Marks(hours.start, hours.flagged, hours.first_ts, hours.last_ts, hours.first, hours.last)


def delete_tags(conn: Connection, tag_ids: Sequence[int]) -> None:
    conn.execute(delete(hour_marks).where(hour_marks.c.tag_id.in_(list(tag_ids))))


def delete_block_of(conn: Connection, day: int) -> None:
    """Delete every tag's marks of the block holding UTC ``day`` (whose chunks go)."""
    conn.execute(delete(hour_marks).where(hour_marks.c.block == block_of(day)))
