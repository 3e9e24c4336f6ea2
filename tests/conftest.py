"""Fixtures shared by every test: databases (SQLite and PostgreSQL), free ports."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from meterhub.api.app import create_app
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry import users
from meterhub.settings import Settings
from tests.postgres_pool import PostgresPool
from tests.support import admin_token

# Argon2 at its production cost takes about 0.1 s a hash, and most tests make an
# administrator (and many log in): tests hash at argon2's lowest cost. A hash names its own
# parameters, so servers started by tests verify these as they are.
users._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

PG_ADMIN_URL = os.environ.get("METERHUB_TEST_PG", "postgresql://127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_available() -> str | None:
    """``None`` when the server answers, else why not."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}".strip()


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    problem = _postgres_available()
    if problem and IN_CI:
        pytest.fail(f"{problem} (CI=true requires it)")
    if problem:
        pytest.skip(f"{problem}; set CI=true to make this an error")
    return PG_ADMIN_URL


def fresh_postgres(admin_url: str, template: str | None = None) -> Iterator[str]:
    name = f"meterhub_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield "postgresql+psycopg://" + admin_url.split("://", 1)[1].rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_template(postgres_admin: str) -> Iterator[str]:
    """A migrated PostgreSQL database that each test's database is copied from."""
    for url in fresh_postgres(postgres_admin):
        upgrade(url)
        yield url.rsplit("/", 1)[1]


@pytest.fixture(scope="session")
def postgres_pool(postgres_admin: str, postgres_template: str) -> Iterator[PostgresPool]:
    """This worker's migrated PostgreSQL databases, reused from test to test."""
    pool = PostgresPool(postgres_admin, postgres_template)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test's database is copied from."""
    path = tmp_path_factory.mktemp("template") / "meterhub.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each kind (a copy of a migrated template; on PostgreSQL
    one emptied after an earlier test, ``PostgresPool``)."""
    if request.param == "sqlite":
        path = tmp_path / "meterhub.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    pool: PostgresPool = request.getfixturevalue("postgres_pool")
    name = pool.take()
    try:
        yield pool.url(name)
    finally:
        pool.give_back(name)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    """The real app in-process (no collector), on a fresh database of each kind."""
    app = create_app(Settings(database_url=database_url, collector_enabled=False))
    headers = {"Authorization": f"token {admin_token(database_url)}"}
    with TestClient(app, headers=headers) as client:
        yield client
