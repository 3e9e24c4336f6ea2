"""On PostgreSQL a serving connection keeps the statements it runs prepared (psycopg prepares
one after its fifth run on a connection and drops them all on a ROLLBACK): the pool hands out
the connection given back last, and the periodic reads beside serving commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from sqlalchemy import Engine

from meterhub.db import make_engine, snapshot
from meterhub.mqtt.supervisor import Supervisor
from meterhub.settings import Settings
from meterhub.storage import chunks
from meterhub.storage.points import TimeRange
from tests.postgres_pool import PostgresPool

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_engine(postgres_pool: PostgresPool) -> Iterator[Engine]:
    name = postgres_pool.take()
    engine = make_engine(postgres_pool.url(name))
    try:
        yield engine
    finally:
        engine.dispose()
        postgres_pool.give_back(name)


def _read_chunks(engine: Engine, times: int) -> None:
    for _ in range(times):
        with snapshot(engine) as conn:
            chunks.find(conn, 1, TimeRange())


def _chunks_read_prepared(engine: Engine) -> bool:
    """Whether the connection the pool hands out next holds the chunk read prepared."""
    with snapshot(engine) as conn:
        found = conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements")
        return any("FROM chunks" in statement for statement in found.scalars())


def test_repeated_reads_run_on_a_warm_connection(pg_engine: Engine) -> None:
    with ExitStack() as burst:  # three connections left idle in the pool, as after a burst
        for _ in range(3):
            burst.enter_context(pg_engine.connect())
    _read_chunks(pg_engine, 6)  # taken in turn, each connection would run it twice
    assert _chunks_read_prepared(pg_engine)


def test_the_mqtt_supervisors_read_keeps_them(pg_engine: Engine) -> None:
    _read_chunks(pg_engine, 6)
    assert _chunks_read_prepared(pg_engine)
    Supervisor(pg_engine, Settings())._wanted()
    assert _chunks_read_prepared(pg_engine)
