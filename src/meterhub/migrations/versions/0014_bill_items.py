"""The items of time-of-use bills: one row per period of a bill.

Revision ID: 0014
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    op.create_table(
        "bill_items",
        sa.Column(
            "bill_id", sa.Integer, sa.ForeignKey("bills.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("period", sa.String(32), nullable=False),
        sa.Column("start_register", sa.Numeric(18, 3), nullable=False),
        sa.Column("end_register", sa.Numeric(18, 3), nullable=False),
        sa.Column("consumption", sa.Numeric(18, 3), nullable=False),
        sa.Column("price", sa.Text, nullable=False),
        sa.Column("charge", sa.Numeric(14, 2), nullable=False),
        sa.Column("estimated", sa.Boolean, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("bill_id", "seq", name="pk_bill_items"),
    )


def downgrade() -> None:
    op.drop_table("bill_items")
