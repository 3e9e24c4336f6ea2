"""The store's tables. ``points`` holds recent readings: (tag, time µs) is the primary key,
so a repeated write is an upsert; older days of a tag live compressed in ``chunks``.

SQLite keeps it WITHOUT ROWID (rows clustered by tag and time, no second index);
columns are ordered widest first so PostgreSQL rows carry no alignment padding.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    text,
)

from meterhub.db import metadata

points = Table(
    "points",
    metadata,
    Column("ts", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Column("tag_id", Integer, nullable=False),
    Column("quality", SmallInteger, nullable=False, default=0),
    PrimaryKeyConstraint("tag_id", "ts", name="pk_points"),
    sqlite_with_rowid=False,
)

Index(
    "ix_points_flagged",
    points.c.tag_id,
    points.c.ts,
    sqlite_where=text("quality != 0"),
    postgresql_where=text("quality != 0"),
)
"""Flagged points only (a register that went backwards): billing finds resets without scans."""

chunks = Table(
    "chunks",
    metadata,
    Column("tag_id", Integer, nullable=False),
    Column("day", Integer, nullable=False),
    Column("first_ts", BigInteger, nullable=False),
    Column("last_ts", BigInteger, nullable=False),
    Column("first_value", Float, nullable=False),
    Column("last_value", Float, nullable=False),
    Column("first_quality", SmallInteger, nullable=False),
    Column("last_quality", SmallInteger, nullable=False),
    Column("count", Integer, nullable=False),
    Column("flagged", Integer, nullable=False),
    Column("stamp", BigInteger, nullable=False),
    Column("ts_tag", Integer, nullable=True),
    Column("ts_blob", LargeBinary, nullable=False),
    Column("value_blob", LargeBinary, nullable=False),
    Column("quality_blob", LargeBinary, nullable=False),
    PrimaryKeyConstraint("tag_id", "day", name="pk_chunks"),
)
"""One compressed UTC day (``ts // DAY_US``) of a tag's points (``storage.compactor`` makes
them); ``flagged`` counts its points with a quality other than good, so billing decodes only
chunks holding resets; the first and last point are kept in the clear, so neighbour seeks
rarely decode. ``stamp`` is a random number drawn anew whenever the chunk's points change
(decoded chunks are cached under it). The channels of one reading share their times: a
chunk whose times equal another chunk's of the same day names that tag in ``ts_tag`` and
keeps an empty ``ts_blob`` (``storage.chunks``). A rowid table on SQLite (unlike ``points``):
its rows outgrow a page, and rowid tables fill their overflow pages, where a WITHOUT ROWID
table wastes a third of them."""

Index(
    "ix_chunks_flagged",
    chunks.c.tag_id,
    chunks.c.day,
    sqlite_where=text("flagged > 0"),
    postgresql_where=text("flagged > 0"),
)

Index(
    "ix_chunks_span",
    *(chunks.c[name] for name in ("tag_id", "day", "last_ts", "first_ts", "stamp")),
    *(chunks.c[name] for name in ("count", "flagged")),
)
"""Everything ``chunks.find`` reads of a tag's chunks in a span, without a visit to the rows
(which hold the blobs)."""

Index("ix_chunks_day", chunks.c.day, chunks.c.first_ts)
"""Chunks by day and first time: where a new chunk finds its twin, and retention a day."""

Index(
    "ix_chunks_ts_tag",
    chunks.c.ts_tag,
    chunks.c.day,
    sqlite_where=text("ts_tag IS NOT NULL"),
    postgresql_where=text("ts_tag IS NOT NULL"),
)
"""Chunks borrowing another's times: found when the lender changes or goes."""

rollups = Table(
    "rollups",
    metadata,
    Column("tag_id", Integer, nullable=False),
    Column("day", Integer, nullable=False),
    Column("stamp", BigInteger, nullable=False),
    Column("int_blob", LargeBinary, nullable=False),
    Column("float_blob", LargeBinary, nullable=False),
    PrimaryKeyConstraint("tag_id", "day", name="pk_rollups"),
)
"""Hourly aggregates of a compacted UTC day of a tag (``storage.rollups``), made with its
chunk and under the same ``stamp``; kept when retention drops the chunk."""

hour_marks = Table(
    "hour_marks",
    metadata,
    Column("tag_id", Integer, nullable=False),
    Column("block", Integer, nullable=False),
    Column("int_blob", LargeBinary, nullable=False),
    Column("float_blob", LargeBinary, nullable=False),
    Column("scale", SmallInteger, nullable=True),  # values as integers of 10**-scale; NULL: floats
    PrimaryKeyConstraint("tag_id", "block", name="pk_hour_marks"),
)
"""Each hour's first and last point of a tag's block, a UTC calendar month (``storage.marks``),
taken from the rollups of the block's chunks."""

storage_state = Table(
    "storage_state",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
"""Facts about the store as a whole: ``raw_horizon_day``, the first UTC day whose points are
all still kept (retention dropped the days before it)."""
