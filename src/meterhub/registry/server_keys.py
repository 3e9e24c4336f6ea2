"""Keys the server makes for itself and keeps in the database, so that every worker
process (and every restart) uses the same one."""

from __future__ import annotations

import secrets

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.registry.tables import server_keys
from meterhub.times import now_us


def server_key(engine: Engine, name: str) -> bytes:
    """The key called ``name``: made (256 random bits) by whichever process asks first."""
    query = select(server_keys.c.value).where(server_keys.c.name == name)
    with engine.begin() as conn:
        value = conn.execute(query).scalar()
        if value is None:
            dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
            made = {"name": name, "value": secrets.token_hex(32), "created_at": now_us()}
            conn.execute(dialect.insert(server_keys).values(made).on_conflict_do_nothing())
            value = conn.execute(query).scalar_one()
    return bytes.fromhex(value)
