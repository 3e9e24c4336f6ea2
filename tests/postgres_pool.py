"""Migrated PostgreSQL databases for tests, emptied between tests rather than made anew.

With ``fsync`` on, copying the template into a new database and dropping it costs about half
a second a test; emptying a used one costs a few tens of milliseconds. A database is given
back emptied: its other sessions ended (their advisory locks go with them), every table's
rows deleted with foreign-key triggers off, the template's own rows (the built-in meter
models) and sequence positions put back. One whose schema a test changed, or that cannot be
emptied, is dropped instead, so a test never sees what an earlier one left.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg import sql

_SCHEMA = """
SELECT md5(string_agg(relname || ':' || relkind::text, ',' ORDER BY relname)),
       (SELECT string_agg(version_num, ',') FROM alembic_version)
FROM pg_class WHERE relnamespace = 'public'::regnamespace
"""


class PostgresPool:
    """Databases copied from ``template`` on the server of ``admin_url``, reused."""

    def __init__(self, admin_url: str, template: str) -> None:
        self._admin_url = admin_url
        self._template = template
        self._free: list[str] = []
        self._rows: dict[str, list[Any]]
        with psycopg.connect(self._url(template)) as conn:
            self._schema = conn.execute(_SCHEMA).fetchone()
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version' ORDER BY tablename"
            )
            self._tables = [name for (name,) in tables]
            self._rows = {}  # the template's own rows, by table
            for name in self._tables:
                select = sql.SQL("SELECT * FROM {}").format(sql.Identifier(name))
                if rows := conn.execute(select).fetchall():
                    self._rows[name] = rows
            sequences = conn.execute(
                "SELECT sequencename, coalesce(last_value, start_value), last_value IS NOT NULL"
                " FROM pg_sequences WHERE schemaname = 'public'"
            )
            self._sequences: list[tuple[str, int, bool]] = list(sequences)

    def take(self) -> str:
        """The name of an empty migrated database."""
        if self._free:
            return self._free.pop()
        name = f"meterhub_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        return name

    def give_back(self, name: str) -> None:
        """Empty ``name`` for the next test, or drop it if it cannot be trusted empty."""
        try:
            self._empty(name)
        except psycopg.Error:
            self._drop(name)
        else:
            self._free.append(name)

    def close(self) -> None:
        for name in self._free:
            self._drop(name)
        self._free.clear()

    def url(self, name: str) -> str:
        """The SQLAlchemy URL of database ``name``."""
        return "postgresql+psycopg://" + self._url(name).split("://", 1)[1]

    def _url(self, name: str) -> str:
        return self._admin_url.rsplit("/", 1)[0] + "/" + name

    def _empty(self, name: str) -> None:
        with psycopg.connect(self._url(name), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if conn.execute(_SCHEMA).fetchone() != self._schema:
                raise psycopg.DataError(f"a test changed the schema of {name}")
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '10s'")
                conn.execute("SET LOCAL session_replication_role = replica")  # no FK triggers
                for table in self._tables:
                    conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
                for table, rows in self._rows.items():
                    self._insert(conn, table, rows)
                for sequence, value, called in self._sequences:
                    conn.execute("SELECT setval(%s, %s, %s)", (sequence, value, called))

    @staticmethod
    def _insert(conn: psycopg.Connection[Any], table: str, rows: list[Any]) -> None:
        marks = sql.SQL(", ").join([sql.Placeholder()] * len(rows[0]))
        query = sql.SQL("INSERT INTO {} VALUES ({})").format(sql.Identifier(table), marks)
        with conn.cursor() as cursor:
            cursor.executemany(query, rows)

    def _drop(self, name: str) -> None:
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
