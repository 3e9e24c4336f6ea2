"""Compressed day chunks of older points and the latest point of each tag.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

_BLOBS = ("ts_blob", "value_blob", "quality_blob")


def upgrade() -> None:
    op.create_table(
        "chunks",
        sa.Column("tag_id", sa.Integer, nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("first_ts", sa.BigInteger, nullable=False),
        sa.Column("last_ts", sa.BigInteger, nullable=False),
        sa.Column("first_value", sa.Float, nullable=False),
        sa.Column("last_value", sa.Float, nullable=False),
        sa.Column("first_quality", sa.SmallInteger, nullable=False),
        sa.Column("last_quality", sa.SmallInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("flagged", sa.Integer, nullable=False),
        *(sa.Column(name, sa.LargeBinary, nullable=False) for name in _BLOBS),
        sa.PrimaryKeyConstraint("tag_id", "day", name="pk_chunks"),
    )
    if op.get_context().dialect.name == "postgresql":
        for name in _BLOBS:  # already compressed: TOAST must store them as they are
            op.execute(f"ALTER TABLE chunks ALTER COLUMN {name} SET STORAGE EXTERNAL")
    op.create_index(
        "ix_chunks_flagged",
        "chunks",
        ["tag_id", "day"],
        sqlite_where=sa.text("flagged > 0"),
        postgresql_where=sa.text("flagged > 0"),
    )
    op.create_table(
        "latest_points",
        sa.Column("tag_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("quality", sa.SmallInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO latest_points (tag_id, ts, value, quality)"
        " SELECT p.tag_id, p.ts, p.value, p.quality FROM points p"
        " WHERE p.ts = (SELECT max(m.ts) FROM points m WHERE m.tag_id = p.tag_id)"
    )


def downgrade() -> None:
    op.drop_table("latest_points")
    op.drop_table("chunks")
