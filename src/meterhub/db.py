"""Engine factory and the shared table metadata: SQLite pragmas or a PostgreSQL pool."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine, create_engine

metadata = MetaData()


def make_engine(database_url: str) -> Engine:
    """Build the engine for ``database_url`` (already normalised by ``Settings``)."""
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(database_url, pool_size=5, max_overflow=10, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
