"""Engine factory and the shared table metadata: SQLite pragmas or a PostgreSQL pool."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, MetaData, event
from sqlalchemy.engine import Engine, create_engine, make_url

metadata = MetaData()

POOL_SIZE, POOL_OVERFLOW = 10, 5
"""Connections an engine keeps once opened, and how many more it opens for a burst (each
closed when given back). It keeps as many as requests may hold at once: with fewer, a
steady load above them kept opening connections (on PostgreSQL a server process each) and
closing them again as they were given back. The pool hands out the connection given back
last: on PostgreSQL a connection keeps the statements it ran prepared (psycopg prepares one
after its fifth run there; a ROLLBACK drops them all), and handing connections out in turn
kept each one cold. For the same reason reads on a connection of their own end in COMMIT
(``engine.begin()``), not in the ROLLBACK ``engine.connect()`` ends in: a token check before
each request dropped everything the request's own statements had prepared."""

REQUEST_CONNECTIONS = POOL_SIZE + POOL_OVERFLOW - 5
"""Requests that may hold a connection for their whole run at once; the rest of the pool is
left to short reads and background jobs, so those never wait on a request."""


def make_engine(database_url: str) -> Engine:
    """Build the engine for ``database_url`` (already normalised by ``Settings``)."""
    pool: dict[str, Any] = {
        "pool_size": POOL_SIZE,
        "max_overflow": POOL_OVERFLOW,
        "pool_use_lifo": True,  # the connection used last, whose prepared statements are warm
    }
    if database_url.startswith("sqlite"):
        if make_url(database_url).database in (None, "", ":memory:"):
            pool = {}
        engine = create_engine(database_url, connect_args={"timeout": 30}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(database_url, pool_pre_ping=True, **pool)


def driver_rows(conn: Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """The rows of ``sql`` straight from the driver (``?`` marks on SQLite, ``%s`` on
    PostgreSQL): plain tuples, without SQLAlchemy's statement and row handling, which cost
    more than the query on reads of many rows or on hot paths. PostgreSQL answers in its
    binary format, which the driver reads faster (a blob as it is, not as hex text)."""
    driver: Any = conn.connection.driver_connection
    binary = {"binary": True} if conn.dialect.name == "postgresql" else {}
    with contextlib.closing(driver.cursor(**binary)) as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def insert_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` (values of ``columns``) into ``table`` in bulk: on PostgreSQL one COPY;
    on SQLite statements of up to ``_SQLITE_ROWS`` rows each, of a few distinct sizes, so
    the driver keeps each prepared (several times quicker than a statement a row). A row
    whose key is taken fails them all."""
    if not rows:
        return
    names = ", ".join(columns)
    driver: Any = conn.connection.driver_connection
    with contextlib.closing(driver.cursor()) as cursor:
        if conn.dialect.name == "postgresql":
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        width = len(columns)
        full = min(_SQLITE_ROWS, driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
        done = 0
        while done < len(rows):
            left = len(rows) - done
            size = full if left >= full else 1 << (left.bit_length() - 1)
            values = ", ".join([f"({', '.join('?' * width)})"] * size)
            params = [value for row in rows[done : done + size] for value in row]
            cursor.execute(f"INSERT INTO {table} ({names}) VALUES {values}", params)
            done += size


_SQLITE_ROWS = 256


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose statements all see the database as of its first one, for reads of
    several statements that a concurrent transaction (compaction moving a day from rows
    into a chunk) must not split: on PostgreSQL a repeatable-read transaction, on SQLite
    a read transaction (WAL: writers go on meanwhile). Nothing is written."""
    if engine.dialect.name == "postgresql":
        repeatable = engine.connect().execution_options(isolation_level="REPEATABLE READ")
        with repeatable as conn, conn.begin():
            yield conn
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("BEGIN")  # pysqlite begins only before a write by itself
        try:
            yield conn
        finally:
            conn.rollback()


sqlite3.register_adapter(Decimal, str)
"""sqlite3 binds a ``Decimal`` as its exact text, which a NUMERIC column stores as a number
(without this it refuses one)."""


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
