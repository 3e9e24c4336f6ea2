"""PostgreSQL keeps half of each page of ``latest_points`` free, so rewriting a tag's newest
point is a heap-only update: the new version goes into the same page, no index entry is
added, and the old one is pruned there (at the default fillfactor of 100 most updates went
to other pages and the table grew many times its rows).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE latest_points SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE latest_points RESET (fillfactor)")
