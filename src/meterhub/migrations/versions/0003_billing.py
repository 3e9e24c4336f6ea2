"""Billing: projects, houses, residents, tariffs, billing tasks, runs and bills.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "houses",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "project_id",
            sa.Integer,
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "residents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "house_id",
            sa.Integer,
            sa.ForeignKey("houses.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("cellphone", sa.String(32), nullable=False),
    )
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("house_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("water_kind", sa.String(16), nullable=True))
        batch.create_foreign_key(
            "fk_devices_house", "houses", ["house_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_devices_house_id", ["house_id"])
    op.create_table(
        "tariffs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "project_id",
            sa.Integer,
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("device_type", sa.String(16), nullable=False),
        sa.Column("water_kind", sa.String(16), nullable=False, server_default=""),
        sa.Column("definition", sa.Text, nullable=False),
        sa.UniqueConstraint("project_id", "device_type", "water_kind", name="uq_tariffs_scope"),
    )
    op.create_table(
        "billing_tasks",
        sa.Column("natrual_key", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column(
            "project_id",
            sa.Integer,
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("device_type", sa.String(16), nullable=False),
        sa.Column("crontab", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("last_run_at", sa.BigInteger, nullable=True),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("update_time", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "billing_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_key", sa.String(32), nullable=False),
        sa.Column("scheduled_at", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("billed", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Text, nullable=False),
        sa.UniqueConstraint("task_key", "scheduled_at", name="uq_billing_runs_period"),
    )
    op.create_table(
        "bills",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("billing_runs.id"), nullable=False),
        sa.Column("task_key", sa.String(32), nullable=False),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("device_pk", sa.Integer, nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("device_type", sa.String(16), nullable=False),
        sa.Column("water_kind", sa.String(16), nullable=True),
        sa.Column("from_time", sa.BigInteger, nullable=False),
        sa.Column("to_time", sa.BigInteger, nullable=False),
        sa.Column("previous_reading", sa.Numeric(18, 3), nullable=False),
        sa.Column("reading", sa.Numeric(18, 3), nullable=False),
        sa.Column("consumption", sa.Numeric(18, 3), nullable=False),
        sa.Column("charge", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("estimated", sa.Boolean, nullable=False),
        sa.Column("rule", sa.String(64), nullable=True),
        sa.Column("house_address", sa.Text, nullable=False),
        sa.Column("residents", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("task_key", "device_pk", "to_time", name="uq_bills_period"),
    )
    op.create_index("ix_bills_device_to_time", "bills", ["device_pk", "to_time"])
    op.create_index("ix_bills_project_to_time", "bills", ["project_id", "to_time"])
    op.create_index(
        "ix_points_flagged",
        "points",
        ["tag_id", "ts"],
        sqlite_where=sa.text("quality != 0"),
        postgresql_where=sa.text("quality != 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_points_flagged", "points")
    for table in ("bills", "billing_runs", "billing_tasks", "tariffs"):
        op.drop_table(table)
    with op.batch_alter_table("devices") as batch:
        batch.drop_index("ix_devices_house_id")
        batch.drop_constraint("fk_devices_house", type_="foreignkey")
        batch.drop_column("water_kind")
        batch.drop_column("house_id")
    for table in ("residents", "houses", "projects"):
        op.drop_table(table)
