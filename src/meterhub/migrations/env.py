"""Alembic environment: runs migrations online against the configured URL."""

from __future__ import annotations

from alembic import context

from meterhub.db import make_engine

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
