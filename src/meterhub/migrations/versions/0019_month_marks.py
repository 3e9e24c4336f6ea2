"""Hour marks by UTC calendar month, hour by hour: the marks kept by blocks of 32 days are
deleted (``meterhub db compact`` makes the new ones for the months compacted before, and
each compaction pass for the months it rolls a day of up).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"


def upgrade() -> None:
    op.execute("DELETE FROM hour_marks")


def downgrade() -> None:
    op.execute("DELETE FROM hour_marks")
