"""Raw retention on SQLite and PostgreSQL: days past it lose their points and keep their hourly
rollups and latest values; reads and bills that would need the dropped points say so."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, func, select

from meterhub.api.app import create_app
from meterhub.db import make_engine
from meterhub.errors import NotKept
from meterhub.registry.devices import channel_tags, get_device
from meterhub.settings import Settings
from meterhub.storage import HistoryQuery, Point, latest, read_history, write_points
from meterhub.storage.compactor import compact
from meterhub.storage.daily import daily_consumption
from meterhub.storage.retention import drop_before, horizon_us
from meterhub.storage.tables import chunks, rollups
from meterhub.times import DAY_US, iso, now_us
from tests.support import admin_token

DAY0 = 20_454  # 2026-01-01
T0 = DAY0 * DAY_US
MINUTE = 60_000_000
DAYS = 6


def fill(engine: Engine) -> None:
    """A register read every minute for ``DAYS`` days, all compacted."""
    with engine.begin() as conn:
        write_points(conn, [Point(1, T0 + n * MINUTE, 100.0 + n) for n in range(DAYS * 1440)])
    compact(engine, settle_us=0, now=T0 + (DAYS + 1) * DAY_US)


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(chunks)).scalar_one(),
            conn.execute(select(func.count()).select_from(rollups)).scalar_one(),
        )


def test_days_past_retention_keep_rollups_and_refuse_reads(engine: Engine) -> None:
    fill(engine)
    kept = HistoryQuery(start=T0 + 3 * DAY_US, end=T0 + 4 * DAY_US, max_count=100)
    with engine.connect() as conn:
        before = read_history(conn, 1, kept)
    assert drop_before(engine, DAY0 + 3) == 3 * 1440
    assert drop_before(engine, DAY0 + 2) == 0  # the horizon only moves forward
    assert counts(engine) == (DAYS - 3, DAYS)
    with engine.connect() as conn:
        assert horizon_us(conn) == T0 + 3 * DAY_US
        assert read_history(conn, 1, kept) == before
        with pytest.raises(NotKept) as refused:
            read_history(conn, 1, HistoryQuery(start=T0, end=T0 + 4 * DAY_US))
        assert list(refused.value.errors) == ["from"]
        with pytest.raises(NotKept):
            read_history(conn, 1, HistoryQuery(start=T0, end=T0 + DAY_US, step=3_600_000_000))
        everything = read_history(conn, 1, HistoryQuery(end=T0 + 10 * DAY_US, actual=True))
        assert everything.points[0].ts == T0 + 3 * DAY_US
        assert latest(conn, [1])[1].ts == T0 + (DAYS * 1440 - 1) * MINUTE
        days = daily_consumption(conn, 1, date(2025, 12, 30), date(2026, 1, 5), ZoneInfo("UTC"))
        assert [d.day for d in days] == [date(2026, 1, 4), date(2026, 1, 5)]
        assert all(d.consumption == 1440.0 for d in days)


def test_db_compact_drops_points_past_the_retention(engine: Engine, database_url: str) -> None:
    with engine.begin() as conn:
        write_points(conn, [Point(1, T0 + n * MINUTE, float(n)) for n in range(3 * 1440)])
    env = {**os.environ, "METERHUB_RAW_RETENTION_DAYS": "3"}
    command = [sys.executable, "-m", "meterhub.cli", "db", "compact", "--database", database_url]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert "dropped 4319 points past the raw retention" in done.stdout
    assert counts(engine) == (0, 3)
    with engine.connect() as conn:  # the newest point stays in the row table, and answers
        assert latest(conn, [1]) == {1: Point(1, T0 + 4319 * MINUTE, 4319.0)}


def test_retention_must_outlast_the_settle_window() -> None:
    with pytest.raises(ValidationError, match="longer than compact_after"):
        Settings(raw_retention_days=1, compact_after=2)


def test_the_api_names_the_bound_past_the_retention(api: TestClient, database_url: str) -> None:
    assert api.post("/counter/", json={"id": 44, "port": 9044}).status_code == 201
    engine = make_engine(database_url)
    with engine.begin() as conn:
        tags = channel_tags(conn, get_device(conn, "44").pk)
        batch = [Point(tags["kW"], T0 + n * MINUTE, float(n)) for n in range(DAYS * 1440)]
        write_points(conn, batch + [Point(tags["A"], p.ts, 1.0) for p in batch])
    compact(engine, settle_us=0, now=T0 + (DAYS + 1) * DAY_US)
    drop_before(engine, DAY0 + 3)
    engine.dispose()
    old, kept = iso(T0, UTC), iso(T0 + 3 * DAY_US, UTC)
    refused = api.get("/counter-archive/", params={"counter_id": 44, "timestamp__gte": old})
    assert refused.status_code == 400
    assert list(refused.json()["errors"]) == ["timestamp__gte"]
    archive = api.get("/counter-archive/", params={"counter_id": 44, "timestamp__gte": kept})
    assert len(archive.json()) == (DAYS - 3) * 1440
    answer = api.post("/smt/data/get", json={"params": {"tagId": "44.kW", "from": T0}}).json()
    assert answer["error"]["id"] == 5
    assert "are not kept" in answer["error"]["message"]


def test_writes_the_retention_would_drop_are_refused(database_url: str) -> None:
    settings = Settings(database_url=database_url, collector_enabled=False, raw_retention_days=3)
    headers = {"Authorization": f"token {admin_token(database_url)}"}
    with TestClient(create_app(settings), headers=headers) as api:
        assert api.post("/counter/", json={"id": 44, "port": 9044}).status_code == 201
        recent = now_us() - DAY_US
        points = [{"x": recent, "y": 1.0}, {"x": recent - 4 * DAY_US, "y": 2.0}]
        write = {
            "data": [{"tagId": "44.A", "data": [points[0]]}, {"tagId": "44.kW", "data": points}]
        }
        answer = api.post("/smt/data/set", json=write).json()
        assert answer["error"]["id"] == 5
        assert "data[1].data[1].x" in answer["error"]["message"]
        assert api.post("/smt/data/set", json={"data": write["data"][:1]}).json()["written"] == 1
