"""Hour marks keep a block's values as integers of a decimal scale where that is exact
(``scale``; NULL: as floats, as every block kept before).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"


def upgrade() -> None:
    op.add_column("hour_marks", sa.Column("scale", sa.SmallInteger, nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM hour_marks WHERE scale IS NOT NULL")
    with op.batch_alter_table("hour_marks") as batch:
        batch.drop_column("scale")
