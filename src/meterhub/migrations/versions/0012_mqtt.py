"""MQTT sources: the password a source's configuration needs, kept apart from it; each
source's connection state and counters; and the arrival times given to messages not yet
acknowledged, so a redelivered one is stored at the same time.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    with op.batch_alter_table("data_sources") as batch:
        batch.add_column(sa.Column("secret", sa.Text, nullable=True))
    op.create_table(
        "mqtt_status",
        sa.Column("source_id", sa.String(128), _source(), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since", sa.BigInteger, nullable=False),
        sa.Column("seen_at", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("error_at", sa.BigInteger, nullable=True),
        sa.Column("stored", sa.BigInteger, nullable=False),
        sa.Column("last_stored_at", sa.BigInteger, nullable=True),
        sa.Column("bad", sa.BigInteger, nullable=False),
        sa.Column("bad_topic", sa.Text, nullable=True),
        sa.Column("bad_payload", sa.Text, nullable=True),
        sa.Column("bad_reason", sa.Text, nullable=True),
        sa.Column("bad_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "mqtt_arrivals",
        sa.Column("source_id", sa.String(128), _source(), nullable=False),
        sa.Column("mid", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("source_id", "mid", name="pk_mqtt_arrivals"),
    )


def _source() -> sa.ForeignKey:
    return sa.ForeignKey("data_sources.id", ondelete="CASCADE")


def downgrade() -> None:
    op.drop_table("mqtt_arrivals")
    op.drop_table("mqtt_status")
    with op.batch_alter_table("data_sources") as batch:
        batch.drop_column("secret")
