"""Data sources, and tag metadata for the platform API.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "data_sources",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("tags") as batch:
        batch.add_column(sa.Column("source_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("tag_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("parent_object_id", sa.String(255), nullable=True))
        batch.add_column(
            sa.Column("value_type", sa.SmallInteger, nullable=False, server_default="1")
        )
        batch.add_column(sa.Column("scale", sa.Float, nullable=False, server_default="1"))
        batch.add_column(sa.Column("attributes", sa.Text, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.create_foreign_key(
            "fk_tags_source", "data_sources", ["source_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_tags_source_id", ["source_id"])


def downgrade() -> None:
    with op.batch_alter_table("tags") as batch:
        batch.drop_index("ix_tags_source_id")
        batch.drop_constraint("fk_tags_source", type_="foreignkey")
        for column in (
            "active",
            "attributes",
            "scale",
            "value_type",
            "parent_object_id",
            "tag_name",
            "source_id",
        ):
            batch.drop_column(column)
    op.drop_table("data_sources")
