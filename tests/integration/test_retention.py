"""Raw retention on SQLite and PostgreSQL: days past it lose their points and keep their hourly
rollups and latest values; reads and bills that would need the dropped points say so."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, func, select

from meterhub.errors import NotKept
from meterhub.settings import Settings
from meterhub.storage import HistoryQuery, Point, latest, read_history, write_points
from meterhub.storage.compactor import compact
from meterhub.storage.daily import daily_consumption
from meterhub.storage.retention import drop_before, horizon_us
from meterhub.storage.tables import chunks, rollups
from meterhub.times import DAY_US

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
    assert "dropped 4320 points past the raw retention" in done.stdout
    assert counts(engine) == (0, 3)


def test_retention_must_outlast_the_settle_window() -> None:
    with pytest.raises(ValidationError, match="longer than compact_after"):
        Settings(raw_retention_days=1, compact_after=2)
