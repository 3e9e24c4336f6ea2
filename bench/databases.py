"""Scratch databases for benchmarks: a SQLite file in a temporary folder, or a PostgreSQL
database created for the run and dropped afterwards."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
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


def on_each_database(doc: str, name: str, heading: str, measure: Callable[[str], None]) -> None:
    """A benchmark's command line (``[--postgres URL | --no-postgres]``, described by the
    first line of ``doc``): ``heading`` printed, then ``measure`` run on a scratch SQLite
    database and, unless told not to, a scratch PostgreSQL one."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", dest="use_postgres", action="store_false")
    args = parser.parse_args()
    print(heading)
    with scratch_sqlite(name) as url:
        measure(url)
    if args.use_postgres:
        with scratch_postgres(args.postgres, name) as url:
            measure(url)
