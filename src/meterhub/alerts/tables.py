"""Alert tables: rules and channels per project, one row per firing, and the notification
outbox with its log of delivery attempts."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)

from meterhub.db import metadata

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "project_id",
        Integer,
        ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("name", String(255), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("device_pk", Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=True),
    Column("device_type", String(16), nullable=True),
    Column("params", Text, nullable=False),  # JSON, as rules.validate leaves it
    Column("remind_after_minutes", Integer, nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("watermark", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)
"""A rule watches one meter (``device_pk``), every meter of a type in the project
(``device_type``) or every meter of the project (neither). ``watermark``: the instant up to
which the rule's readings were last evaluated (``conditions``)."""

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule_id", Integer, ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", Integer, nullable=False),
    Column("device_pk", Integer, ForeignKey("devices.id", ondelete="SET NULL"), nullable=True),
    Column("device_id", String(64), nullable=False),
    Column("fired_at", BigInteger, nullable=False),
    Column("acknowledged_at", BigInteger, nullable=True),
    Column("acknowledged_by", String(150), nullable=True),
    Column("resolved_at", BigInteger, nullable=True),
    Column("last_notified_at", BigInteger, nullable=False),
    Column("detail", Text, nullable=False),  # JSON: what the condition found when it fired
)
"""One firing of a rule on a meter, from its start to its end (``resolved_at``)."""

Index(
    "uq_alerts_open",
    alerts.c.rule_id,
    alerts.c.device_pk,
    unique=True,
    sqlite_where=text("resolved_at IS NULL"),
    postgresql_where=text("resolved_at IS NULL"),
)
"""At most one open alert per (rule, meter): two evaluators at once fire it once."""

Index("ix_alerts_project_fired", alerts.c.project_id, alerts.c.fired_at)
Index("ix_alerts_device", alerts.c.device_pk, alerts.c.resolved_at)

alert_channels = Table(
    "alert_channels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "project_id",
        Integer,
        ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("kind", String(16), nullable=False),  # webhook | email
    Column("url", Text, nullable=True),
    Column("secret", Text, nullable=True),  # the webhook's HMAC key; never answered
    Column("addresses", Text, nullable=True),  # JSON list of e-mail addresses
    Column("enabled", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column(
        "channel_id",
        Integer,
        ForeignKey("alert_channels.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("event", String(16), nullable=False),  # fired | reminder | resolved
    Column("body", Text, nullable=False),  # the exact JSON sent (and signed)
    Column("state", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger, nullable=True),
    Column("digest", Integer, nullable=True),
)
"""The outbox: evaluation only adds rows here; the delivery worker sends them. ``digest``:
the digest a notification went into (the lowest id among its notifications), else null."""

Index(
    "ix_notifications_due",
    notifications.c.next_attempt_at,
    sqlite_where=text("state = 'pending'"),
    postgresql_where=text("state = 'pending'"),
)
Index("ix_notifications_alert", notifications.c.alert_id)
Index(
    "ix_notifications_digest",
    notifications.c.digest,
    sqlite_where=text("digest IS NOT NULL"),
    postgresql_where=text("digest IS NOT NULL"),
)

notification_attempts = Table(
    "notification_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "notification_id",
        Integer,
        ForeignKey("notifications.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("attempted_at", BigInteger, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
)
