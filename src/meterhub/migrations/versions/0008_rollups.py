"""Chunks share the times of a reading's channels and carry a stamp; hourly rollups; the
store's retention horizon.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    random = "(random() * 9.2e18)::bigint" if postgres else "abs(random())"
    with op.batch_alter_table("chunks") as chunks:
        chunks.add_column(sa.Column("stamp", sa.BigInteger, nullable=False, server_default="0"))
        chunks.add_column(sa.Column("ts_tag", sa.Integer, nullable=True))
    op.execute(f"UPDATE chunks SET stamp = {random}")
    op.create_index(
        "ix_chunks_span",
        "chunks",
        ["tag_id", "day", "last_ts", "first_ts", "stamp", "count", "flagged"],
    )
    op.create_index("ix_chunks_day", "chunks", ["day", "first_ts"])
    op.create_index(
        "ix_chunks_ts_tag",
        "chunks",
        ["ts_tag", "day"],
        sqlite_where=sa.text("ts_tag IS NOT NULL"),
        postgresql_where=sa.text("ts_tag IS NOT NULL"),
    )
    op.create_table(
        "rollups",
        sa.Column("tag_id", sa.Integer, nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("stamp", sa.BigInteger, nullable=False),
        sa.Column("int_blob", sa.LargeBinary, nullable=False),
        sa.Column("float_blob", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("tag_id", "day", name="pk_rollups"),
    )
    if postgres:
        for name in ("int_blob", "float_blob"):  # compressed already
            op.execute(f"ALTER TABLE rollups ALTER COLUMN {name} SET STORAGE EXTERNAL")
    op.create_table(
        "storage_state",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("storage_state")
    op.drop_table("rollups")
    op.drop_index("ix_chunks_ts_tag", "chunks")
    op.drop_index("ix_chunks_day", "chunks")
    op.drop_index("ix_chunks_span", "chunks")
    with op.batch_alter_table("chunks") as chunks:
        chunks.drop_column("ts_tag")
        chunks.drop_column("stamp")
