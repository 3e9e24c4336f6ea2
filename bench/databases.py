"""Scratch databases for benchmarks: a SQLite file in a temporary folder, or a PostgreSQL
database created for the run and dropped afterwards."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from meterhub.settings import Settings


@contextmanager
def scratch_sqlite(name: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{Path(tmp) / name}.db"


@contextmanager
def scratch_postgres(admin_url: str, name: str, template: str | None = None) -> Iterator[str]:
    """A new database on the server of ``admin_url`` (itself a database to connect to), a
    copy of the database ``template`` if given (nobody may be connected to that one)."""
    database = f"meterhub_{name}_{int(time.time())}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"{copy}')
    try:
        yield Settings(database_url=admin_url).database_url.rsplit("/", 1)[0] + f"/{database}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
