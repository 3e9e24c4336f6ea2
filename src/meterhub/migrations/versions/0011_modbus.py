"""Modbus meters: a device's protocol, unit id and meter model; the meter models (the
built-in ones stored here); a device's address becomes (host, port, unit id), so the
units behind one gateway share its host and port.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meterhub.registry.meter_models import builtin_models, model_row

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    models = op.create_table(
        "meter_models",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("device_type", sa.String(16), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("builtin", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(models, [model_row(model) for model in builtin_models()])
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("protocol", sa.String(8), nullable=False, server_default="http"))
        batch.add_column(sa.Column("unit_id", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("model", sa.String(64), nullable=True))
        batch.create_foreign_key("fk_devices_model", "meter_models", ["model"], ["name"])
        batch.drop_constraint("uq_devices_address", type_="unique")
        batch.create_unique_constraint("uq_devices_address", ["host", "port", "unit_id"])


def downgrade() -> None:
    op.execute("DELETE FROM devices WHERE protocol <> 'http'")
    with op.batch_alter_table("devices") as batch:
        batch.drop_constraint("uq_devices_address", type_="unique")
        batch.create_unique_constraint("uq_devices_address", ["host", "port"])
        batch.drop_constraint("fk_devices_model", type_="foreignkey")
        batch.drop_column("model")
        batch.drop_column("unit_id")
        batch.drop_column("protocol")
    op.drop_table("meter_models")
