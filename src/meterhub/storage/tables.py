"""The points table: (tag, time µs) is the clustered primary key, so writes are upserts."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, PrimaryKeyConstraint, SmallInteger, Table

from meterhub.db import metadata

points = Table(
    "points",
    metadata,
    Column("tag_id", Integer, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Column("quality", SmallInteger, nullable=False, default=0),
    PrimaryKeyConstraint("tag_id", "ts", name="pk_points"),
    sqlite_with_rowid=False,
)
