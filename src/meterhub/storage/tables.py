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
    Column("ts_blob", LargeBinary, nullable=False),
    Column("value_blob", LargeBinary, nullable=False),
    Column("quality_blob", LargeBinary, nullable=False),
    PrimaryKeyConstraint("tag_id", "day", name="pk_chunks"),
)
"""One compressed UTC day (``ts // DAY_US``) of a tag's points (``storage.compactor`` makes
them); ``flagged`` counts its points with a quality other than good, so billing decodes only
chunks holding resets; the first and last point are kept in the clear, so neighbour seeks
rarely decode. A rowid table on SQLite (unlike ``points``): its rows outgrow a page, and
rowid tables fill their overflow pages, where a WITHOUT ROWID table wastes a third of them."""

Index(
    "ix_chunks_flagged",
    chunks.c.tag_id,
    chunks.c.day,
    sqlite_where=text("flagged > 0"),
    postgresql_where=text("flagged > 0"),
)

latest_points = Table(
    "latest_points",
    metadata,
    Column("tag_id", Integer, primary_key=True, autoincrement=False),
    Column("ts", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Column("quality", SmallInteger, nullable=False),
)
"""The newest point of each tag, kept at write time."""
