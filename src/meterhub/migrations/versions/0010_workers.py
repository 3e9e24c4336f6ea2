"""Polling and billing by workers: each interval's published shards, the (meter, interval)
claims that keep a poll once, the workers' heartbeats, and the chunks of billing runs.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_table(
        "poll_shards",
        sa.Column("interval_start", sa.BigInteger, nullable=False),
        sa.Column("shard", sa.Integer, nullable=False),
        sa.Column("shards", sa.Integer, nullable=False),
        sa.Column("meters", sa.Integer, nullable=False),
        sa.Column("due_at", sa.BigInteger, nullable=False),
        sa.Column("published_at", sa.BigInteger, nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("done_at", sa.BigInteger, nullable=True),
        sa.Column("polls", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("interval_start", "shard", name="pk_poll_shards"),
    )
    op.create_table(
        "poll_claims",
        sa.Column("interval_start", sa.BigInteger, nullable=False),
        sa.Column("device_pk", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("interval_start", "device_pk", name="pk_poll_claims"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "workers",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "billing_run_chunks",
        sa.Column(
            "run_id",
            sa.Integer,
            sa.ForeignKey("billing_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("chunk", sa.Integer, nullable=False),
        sa.Column("first_pk", sa.Integer, nullable=False),
        sa.Column("last_pk", sa.Integer, nullable=False),
        sa.Column("sent_at", sa.BigInteger, nullable=False),
        sa.Column("done_at", sa.BigInteger, nullable=True),
        sa.Column("billed", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "chunk", name="pk_billing_run_chunks"),
    )


def downgrade() -> None:
    for table in ("billing_run_chunks", "workers", "poll_claims", "poll_shards"):
        op.drop_table(table)
