"""Alerts: rules and channels per project, alerts (one row per firing, at most one open per
rule and meter), the notification outbox and its delivery attempts.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"

OPEN = sa.text("resolved_at IS NULL")
PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, _cascade("projects.id"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("device_pk", sa.Integer, _cascade("devices.id"), nullable=True),
        sa.Column("device_type", sa.String(16), nullable=True),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("remind_after_minutes", sa.Integer, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("watermark", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_alert_rules_project_id", "alert_rules", ["project_id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule_id", sa.Integer, _cascade("alert_rules.id"), nullable=False),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column(
            "device_pk",
            sa.Integer,
            sa.ForeignKey("devices.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("fired_at", sa.BigInteger, nullable=False),
        sa.Column("acknowledged_at", sa.BigInteger, nullable=True),
        sa.Column("acknowledged_by", sa.String(150), nullable=True),
        sa.Column("resolved_at", sa.BigInteger, nullable=True),
        sa.Column("last_notified_at", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index(
        "uq_alerts_open",
        "alerts",
        ["rule_id", "device_pk"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )
    op.create_index("ix_alerts_project_fired", "alerts", ["project_id", "fired_at"])
    op.create_index("ix_alerts_device", "alerts", ["device_pk", "resolved_at"])
    op.create_table(
        "alert_channels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, _cascade("projects.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("secret", sa.Text, nullable=True),
        sa.Column("addresses", sa.Text, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_alert_channels_project_id", "alert_channels", ["project_id"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.Integer, _cascade("alerts.id"), nullable=False),
        sa.Column("channel_id", sa.Integer, _cascade("alert_channels.id"), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("delivered_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_notifications_channel_id", "notifications", ["channel_id"])
    op.create_index("ix_notifications_alert", "notifications", ["alert_id"])
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["next_attempt_at"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.create_table(
        "notification_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("notification_id", sa.Integer, _cascade("notifications.id"), nullable=False),
        sa.Column("attempted_at", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_notification_attempts_notification_id", "notification_attempts", ["notification_id"]
    )


def _cascade(target: str) -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete="CASCADE")


def downgrade() -> None:
    for table in ("notification_attempts", "notifications", "alert_channels", "alerts"):
        op.drop_table(table)
    op.drop_table("alert_rules")
