"""The points table: (tag, time µs) is the primary key, so a repeated write is an upsert.

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
