"""On PostgreSQL a serving connection keeps the statements it runs prepared (psycopg prepares
one after its fifth run on a connection and drops them all on a ROLLBACK): the pool hands out
the connection given back last, and reads on a connection of their own (a request's token
check, the periodic reads beside serving) commit. The apps here run without the loops
beside serving (those reads are tested on their own)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from meterhub.alerts.evaluator import AlertEvaluator
from meterhub.api.app import create_app
from meterhub.billing.scheduler import BillingScheduler
from meterhub.collector.poller import Poller
from meterhub.collector.publisher import Publisher
from meterhub.collector.writer import BatchWriter
from meterhub.db import snapshot
from meterhub.mqtt.supervisor import Supervisor
from meterhub.registry.users import create_user
from meterhub.settings import Settings
from meterhub.storage import chunks
from meterhub.storage.compactor import compact, roll_up_unrolled
from meterhub.storage.points import TimeRange
from tests.support import admin_token
from tests.web.conftest import Dashboard, log_in

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]


def _read_chunks(engine: Engine, times: int) -> None:
    for _ in range(times):
        with snapshot(engine) as conn:
            chunks.find(conn, 1, TimeRange())


def _poller(engine: Engine) -> Poller:
    return Poller(Settings(), engine, BatchWriter(engine, 100, 0.1, 7))


def _prepared(engine: Engine, table: str) -> bool:
    """Whether the connection the pool hands out next holds a read of ``table`` prepared."""
    with snapshot(engine) as conn:
        found = conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements")
        return any(f"FROM {table}" in statement for statement in found.scalars())


def _chunks_read_prepared(engine: Engine) -> bool:
    return _prepared(engine, "chunks")


def _requests_only(database_url: str) -> Settings:
    """An app's settings with none of its loops beside serving, whose first reads at start
    could take a connection of their own amid the requests and be the one given back last."""
    return Settings(
        database_url=database_url,
        collector_enabled=False,
        scheduler_enabled=False,
        compact_enabled=False,
        mqtt_enabled=False,
        alerts_enabled=False,
    )


def test_repeated_reads_run_on_a_warm_connection(engine: Engine) -> None:
    with ExitStack() as burst:  # three connections left idle in the pool, as after a burst
        for _ in range(3):
            burst.enter_context(engine.connect())
    _read_chunks(engine, 6)  # taken in turn, each connection would run it twice
    assert _chunks_read_prepared(engine)


@pytest.mark.parametrize(
    "periodic_read",
    [
        lambda engine: Supervisor(engine, Settings())._wanted(),
        lambda engine: BillingScheduler(engine).tick(),
        lambda engine: AlertEvaluator(engine).tick(),
        lambda engine: compact(engine, settle_us=0),
        roll_up_unrolled,
        lambda engine: _poller(engine)._read_targets(set()),
        lambda engine: _poller(engine)._read_signature(),
        lambda engine: Publisher(Settings(), engine, lambda *_: None)._plan(0),
    ],
    ids=[
        "mqtt supervisor",
        "billing scheduler",
        "alert evaluator",
        "compactor",
        "rollups",
        "poller targets",
        "poller signature",
        "publisher",
    ],
)
def test_the_periodic_reads_beside_serving_keep_them(
    engine: Engine, periodic_read: Callable[[Engine], object]
) -> None:
    _read_chunks(engine, 6)
    assert _chunks_read_prepared(engine)
    periodic_read(engine)
    assert _chunks_read_prepared(engine)


def test_a_requests_token_check_keeps_them(database_url: str) -> None:
    app = create_app(_requests_only(database_url))
    headers = {"Authorization": f"token {admin_token(database_url)}"}
    with TestClient(app, headers=headers) as api:
        api.post("/api/v1/data-sources/", json={"id": "plant-1"}).raise_for_status()
        for _ in range(6):  # each checks the token on a connection of its own first
            api.get("/api/v1/data-sources/plant-1/").raise_for_status()
        assert _prepared(app.state.engine, "data_sources")


def test_a_dashboard_pages_session_check_keeps_them(engine: Engine, database_url: str) -> None:
    with engine.begin() as conn:
        create_user(conn, "operator", "correct horse", is_admin=True)
    app = create_app(_requests_only(database_url))
    with Dashboard(app, follow_redirects=False) as dashboard:
        log_in(dashboard, "operator", "correct horse")
        for _ in range(6):  # each checks the session on a connection of its own first
            dashboard.get("/projects").raise_for_status()
        assert _prepared(app.state.engine, "projects")
