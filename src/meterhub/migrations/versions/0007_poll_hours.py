"""Hourly health: polls folded out of the poll log, kept for the long run.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "poll_hours",
        sa.Column("start_us", sa.BigInteger, nullable=False),
        sa.Column("total_ms", sa.Float, nullable=False),
        sa.Column("max_ms", sa.Float, nullable=False),
        sa.Column(
            "device_pk",
            sa.Integer,
            sa.ForeignKey("devices.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("polls", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("device_pk", "start_us", name="pk_poll_hours"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("poll_hours")
