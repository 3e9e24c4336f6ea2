"""Hour marks: each hour's first and last point of a tag's block of 32 UTC days, for
readings at hour boundaries without the chunks (``meterhub db compact`` makes them for the
blocks compacted before).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"


def upgrade() -> None:
    op.create_table(
        "hour_marks",
        sa.Column("tag_id", sa.Integer, nullable=False),
        sa.Column("block", sa.Integer, nullable=False),
        sa.Column("int_blob", sa.LargeBinary, nullable=False),
        sa.Column("float_blob", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("tag_id", "block", name="pk_hour_marks"),
    )
    if op.get_context().dialect.name == "postgresql":
        for name in ("int_blob", "float_blob"):  # compressed already
            op.execute(f"ALTER TABLE hour_marks ALTER COLUMN {name} SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("hour_marks")
