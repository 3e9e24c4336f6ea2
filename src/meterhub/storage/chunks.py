"""Compressed day chunks of a tag: finding them, loading them through the cache, writing and
deleting them.

A chunk holds one UTC day of a tag's points as three pcodec columns (``codec``). The channels
of one reading are stored at one time, so their chunks of a day usually hold the same times:
a chunk whose times equal those of another chunk of that day borrows them (``ts_tag`` names
the lender; its own ``ts_blob`` stays empty). A lender never borrows, so times are one join
away. Before a lender's times change, or it is deleted, its borrowers get the times back: the
first takes a copy and lends to the others.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from itertools import repeat
from typing import NamedTuple

import numpy as np
from sqlalchemy import Connection, and_, case, delete, func, select, update
from sqlalchemy.orm import aliased

from meterhub.db import driver_rows
from meterhub.storage.cache import CACHE
from meterhub.storage.codec import EMPTY, Columns, decode, encode
from meterhub.storage.points import TimeRange
from meterhub.storage.sqlite_pages import page_size, pages
from meterhub.storage.tables import chunks

ROW_BYTES = 64
"""Bytes of a chunk row besides its blobs (keys, first and last point, counts), as measured
with SQLite's ``dbstat``."""
SHARED_TIMES_MIN_BYTES = 256
"""Times that compress below this are kept by each chunk: sharing them saves nothing, and
regular times (every meter at the same instants) would make one chunk the lender of all."""

_lender = aliased(chunks)
_TIMES = case((chunks.c.ts_tag.is_(None), chunks.c.ts_blob), else_=_lender.c.ts_blob)
_BLOBS = (
    _TIMES,
    chunks.c.value_blob,
    case((chunks.c.flagged > 0, chunks.c.quality_blob), else_=None),
)
_WITH_LENDER = chunks.outerjoin(
    _lender, and_(_lender.c.tag_id == chunks.c.ts_tag, _lender.c.day == chunks.c.day)
)


def new_stamp() -> int:
    """A random stamp: changes with a chunk's points, keys it in the cache."""
    return secrets.randbits(62) + 1


class ChunkInfo(NamedTuple):
    """A chunk, as found without decoding it."""

    day: int
    stamp: int
    size: int  # points
    flagged: int
    first_ts: int
    last_ts: int


def find(conn: Connection, tag_id: int, span: TimeRange) -> list[ChunkInfo]:
    """The chunks of ``tag_id`` holding points in ``span``, oldest first: one driver-level
    query along the index holding all it reads (``ix_chunks_span``)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        "SELECT day, stamp, count, flagged, first_ts, last_ts FROM chunks"
        f" WHERE tag_id = {mark} AND last_ts >= {mark} AND first_ts <= {mark} ORDER BY day"
    )
    start, end = span.bounds()
    return list(map(tuple.__new__, repeat(ChunkInfo), driver_rows(conn, sql, (tag_id, start, end))))


def load(conn: Connection, tag_id: int, days: Sequence[tuple[int, int]]) -> list[Columns]:
    """The points of each chunk ``(day, stamp)`` of ``tag_id``, decoded once and then served
    from the cache (a chunk deleted meanwhile has none)."""
    held = CACHE.get("chunk", [stamp for _, stamp in days])
    found: dict[int, Columns | None] = {day: h for (day, _), h in zip(days, held, strict=True)}
    missing = [day for day, columns in found.items() if columns is None]
    if missing:
        query = (
            select(chunks.c.day, chunks.c.stamp, *_BLOBS)
            .select_from(_WITH_LENDER)
            .where(chunks.c.tag_id == tag_id, chunks.c.day.in_(missing))
        )
        for day, stamp, *blobs in conn.execute(query):
            columns = _read_only(decode(*blobs))
            CACHE.put("chunk", stamp, columns, columns.nbytes)
            found[day] = columns
    return [found[day] or EMPTY for day, _ in days]


def load_day(
    conn: Connection, tag_id: int, day: int, *, for_update: bool = False
) -> Columns | None:
    """The points of one chunk, ``None`` if there is none; ``for_update`` locks its row
    (PostgreSQL) until the transaction ends, as a writer must before changing it."""
    query = (
        select(chunks.c.stamp, *_BLOBS)
        .select_from(_WITH_LENDER)
        .where(chunks.c.tag_id == tag_id, chunks.c.day == day)
    )
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update(of=chunks)
    row = conn.execute(query).first()
    return None if row is None else decode(*row[1:])


def _read_only(columns: Columns) -> Columns:
    for array in columns:
        array.flags.writeable = False
    return columns


def write(conn: Connection, tag_id: int, day: int, columns: Columns, *, held: bool) -> int:
    """Store ``columns`` as the chunk of ``tag_id`` on ``day`` (replacing it when ``held``),
    borrowing the times of a twin chunk where it can; returns the chunk's new stamp.

    A chunk that is replaced must have been read with ``load_day(for_update=True)``."""
    times, values, qualities = encode(columns)
    lends = held and _borrowers(conn, tag_id, day)
    if lends and _own_times(conn, tag_id, day) != times:
        _return_times(conn, tag_id, day, lends)
        lends = []
    lender = None if lends else _twin(conn, tag_id, day, columns, times)
    if lender is not None and _cheaper_to_lend(
        conn, len(times), len(values) + len(qualities), lender[1]
    ):
        _lend_instead(conn, tag_id, lender[0], day)
        lender = None
    stamp = new_stamp()
    values_in_row = {
        "first_ts": int(columns.ts[0]),
        "last_ts": int(columns.ts[-1]),
        "first_value": float(columns.value[0]),
        "last_value": float(columns.value[-1]),
        "first_quality": int(columns.quality[0]),
        "last_quality": int(columns.quality[-1]),
        "count": len(columns.ts),
        "flagged": int(np.count_nonzero(columns.quality)),
        "stamp": stamp,
        "ts_tag": None if lender is None else lender[0],
        "ts_blob": times if lender is None else b"",
        "value_blob": values,
        "quality_blob": qualities,
    }
    if held:
        where = (chunks.c.tag_id == tag_id, chunks.c.day == day)
        conn.execute(update(chunks).where(*where).values(**values_in_row))
    else:
        conn.execute(chunks.insert().values(tag_id=tag_id, day=day, **values_in_row))
    return stamp


def _borrowers(conn: Connection, tag_id: int, day: int) -> list[int]:
    query = select(chunks.c.tag_id).where(chunks.c.ts_tag == tag_id, chunks.c.day == day)
    return list(conn.execute(query.order_by(chunks.c.tag_id)).scalars())


def _own_times(conn: Connection, tag_id: int, day: int) -> bytes:
    query = select(chunks.c.ts_blob).where(chunks.c.tag_id == tag_id, chunks.c.day == day)
    return bytes(conn.execute(query).scalar_one())


def _twin(
    conn: Connection, tag_id: int, day: int, columns: Columns, times: bytes
) -> tuple[int, int] | None:
    """A chunk of ``day`` holding its own times, the same as ``times``: the lender to borrow
    from, with the size of the rest of its row (locked on PostgreSQL until this transaction
    ends)."""
    if len(times) < SHARED_TIMES_MIN_BYTES:
        return None
    c = chunks.c
    query = (
        select(c.tag_id, func.length(c.value_blob) + func.length(c.quality_blob))
        .where(
            c.day == day,
            c.first_ts == int(columns.ts[0]),
            c.ts_tag.is_(None),
            c.tag_id != tag_id,
            c.last_ts == int(columns.ts[-1]),
            c.count == len(columns.ts),
            c.ts_blob == times,
        )
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=chunks)
    found = conn.execute(query).first()
    return None if found is None else (found[0], found[1])


def _cheaper_to_lend(conn: Connection, times: int, own: int, lenders: int) -> bool:
    """Whether the times take fewer SQLite pages in the new chunk's row (``own`` bytes of
    blobs besides them) than in the lender's (``lenders``). A row over a page goes to
    overflow pages filled to the brim; smaller rows share pages, where two rows a little
    over half a page each leave a page half empty. PostgreSQL moves blobs of any row over
    2 KB to TOAST, filled alike whichever row holds them: the lender keeps them."""
    if conn.dialect.name != "sqlite":
        return False
    page, row = page_size(conn), ROW_BYTES
    keep = pages(row + lenders + times, page) + pages(row + own, page)
    move = pages(row + lenders, page) + pages(row + own + times, page)
    return move < keep


def _lend_instead(conn: Connection, tag_id: int, lender: int, day: int) -> None:
    """Make ``tag_id`` (about to be written with its own times) the lender of ``lender``'s
    chunk of ``day`` and of its borrowers; their points do not change."""
    c = chunks.c
    conn.execute(
        update(chunks)
        .where(c.day == day, (c.tag_id == lender) | (c.ts_tag == lender))
        .values(ts_tag=tag_id, ts_blob=b"")
    )


def _return_times(conn: Connection, lender: int, day: int, borrowers: Sequence[int]) -> None:
    """Give the lender's times to its first borrower, who then lends to the others."""
    first, *others = borrowers
    own = select(chunks.c.ts_blob).where(chunks.c.tag_id == lender, chunks.c.day == day)
    conn.execute(
        update(chunks)
        .where(chunks.c.tag_id == first, chunks.c.day == day)
        .values(ts_blob=own.scalar_subquery(), ts_tag=None, stamp=new_stamp())
    )
    if others:
        conn.execute(
            update(chunks)
            .where(chunks.c.tag_id.in_(others), chunks.c.day == day)
            .values(ts_tag=first)
        )


def delete_tags(conn: Connection, tag_ids: Sequence[int]) -> None:
    """Delete every chunk of ``tag_ids``; chunks of other tags keep their times."""
    ids = list(tag_ids)
    c = chunks.c
    if conn.dialect.name == "postgresql":  # no chunk may start borrowing from them meanwhile
        conn.execute(select(c.day).where(c.tag_id.in_(ids)).with_for_update())
    outside = (
        select(c.ts_tag, c.day, c.tag_id)
        .where(c.ts_tag.in_(ids), c.tag_id.not_in(ids))
        .order_by(c.ts_tag, c.day, c.tag_id)
    )
    pending: dict[tuple[int, int], list[int]] = {}
    for lender, day, borrower in conn.execute(outside):
        pending.setdefault((lender, day), []).append(borrower)
    for (lender, day), borrowers in pending.items():
        _return_times(conn, lender, day, borrowers)
    conn.execute(delete(chunks).where(c.tag_id.in_(ids)))
