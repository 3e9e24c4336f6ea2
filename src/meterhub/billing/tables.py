"""Billing tables: tariffs, tasks, runs (one per task and fire time), bills and the items of
time-of-use bills."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from meterhub.db import metadata

tariffs = Table(
    "tariffs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("device_type", String(16), nullable=False),
    Column("water_kind", String(16), nullable=False, default=""),
    Column("definition", Text, nullable=False),  # Tariff.to_json()
    UniqueConstraint("project_id", "device_type", "water_kind", name="uq_tariffs_scope"),
)

billing_tasks = Table(
    "billing_tasks",
    metadata,
    Column("natrual_key", String(32), primary_key=True),
    Column(
        "project_id",
        Integer,
        ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("name", String(255), nullable=False),
    Column("device_type", String(16), nullable=False),
    Column("crontab", Text, nullable=False),  # JSON {month, day, hour, minute}
    Column("enabled", Boolean, nullable=False),
    Column("description", Text, nullable=False),
    Column("last_run_at", BigInteger, nullable=True),
    Column("create_time", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
)

billing_runs = Table(
    "billing_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_key", String(32), nullable=False),
    Column("scheduled_at", BigInteger, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("billed", Integer, nullable=False),
    Column("skipped", Text, nullable=False),  # JSON [{device_id, reason}]
    UniqueConstraint("task_key", "scheduled_at", name="uq_billing_runs_period"),
)

bills = Table(
    "bills",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("billing_runs.id"), nullable=False),
    Column("task_key", String(32), nullable=False),
    Column("project_id", Integer, nullable=False),
    Column("device_pk", Integer, nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("device_type", String(16), nullable=False),
    Column("water_kind", String(16), nullable=True),
    Column("from_time", BigInteger, nullable=False),
    Column("to_time", BigInteger, nullable=False),
    Column("previous_reading", Numeric(18, 3), nullable=False),
    Column("reading", Numeric(18, 3), nullable=False),
    Column("consumption", Numeric(18, 3), nullable=False),
    Column("charge", Numeric(14, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("estimated", Boolean, nullable=False),
    Column("rule", String(64), nullable=True),
    Column("house_address", Text, nullable=False),  # snapshot, JSON list
    Column("residents", Text, nullable=False),  # snapshot, JSON [{name, cellphone}]
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("task_key", "device_pk", "to_time", name="uq_bills_period"),
)
Index("ix_bills_device_to_time", bills.c.device_pk, bills.c.to_time)
Index("ix_bills_project_to_time", bills.c.project_id, bills.c.to_time)

bill_items = Table(
    "bill_items",
    metadata,
    Column("bill_id", Integer, ForeignKey("bills.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),  # the period's place in the tariff
    Column("period", String(32), nullable=False),
    Column("start_register", Numeric(18, 3), nullable=False),
    Column("end_register", Numeric(18, 3), nullable=False),
    Column("consumption", Numeric(18, 3), nullable=False),
    Column("price", Text, nullable=False),  # exact decimal text
    Column("charge", Numeric(14, 2), nullable=False),
    Column("estimated", Boolean, nullable=False),
    Column("note", Text, nullable=True),
    PrimaryKeyConstraint("bill_id", "seq", name="pk_bill_items"),
)
"""One row per period of a time-of-use bill (``tou_items.Item``); flat and tiered bills have
none."""
