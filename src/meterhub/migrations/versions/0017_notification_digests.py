"""Notifications of one rule's event, queued by one evaluation for one channel, may go as
one digest: ``digest`` names the digest a notification went into (the lowest id among its
notifications), fixed when it is first sent, so that every retry carries the same ones.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"


def upgrade() -> None:
    op.add_column("notifications", sa.Column("digest", sa.Integer, nullable=True))
    op.create_index(
        "ix_notifications_digest",
        "notifications",
        ["digest"],
        sqlite_where=sa.text("digest IS NOT NULL"),
        postgresql_where=sa.text("digest IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_digest", "notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("digest")
