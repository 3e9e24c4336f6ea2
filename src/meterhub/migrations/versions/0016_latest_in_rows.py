"""Each tag's latest point is its newest row, which compaction no longer moves: the rows
that only ``latest_points`` still held (moved into a chunk) go back to the row table, and
the table that writes kept goes.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"


def upgrade() -> None:
    op.execute(
        "INSERT INTO points (tag_id, ts, value, quality)"
        " SELECT l.tag_id, l.ts, l.value, l.quality FROM latest_points l"
        " WHERE NOT EXISTS (SELECT 1 FROM points p WHERE p.tag_id = l.tag_id AND p.ts >= l.ts)"
    )
    op.drop_table("latest_points")


def downgrade() -> None:
    op.create_table(
        "latest_points",
        sa.Column("tag_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("quality", sa.SmallInteger, nullable=False),
        postgresql_with={"fillfactor": 50},
    )
    op.execute(
        "INSERT INTO latest_points (tag_id, ts, value, quality)"
        " SELECT p.tag_id, p.ts, p.value, p.quality FROM points p"
        " WHERE p.ts = (SELECT max(m.ts) FROM points m WHERE m.tag_id = p.tag_id)"
    )
