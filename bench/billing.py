"""One monthly billing run over 100,000 devices with daily readings over two months.

Builds a project of DEVICES electricity meters (one house each, a tiered tariff), writes a
register reading per day for two months, bills the first month, then times the run of
the second month (the monthly run). For scale, the same run reads what a plain SQL query
of first and last register per meter reads; that query is timed too, and the ratio shown.
Runs on SQLite and, when reachable, PostgreSQL.
Usage: .venv/bin/python -m bench.billing [--devices 100000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from decimal import Decimal

from sqlalchemy import Connection, Engine, insert, text

from bench.databases import scratch_postgres, scratch_sqlite
from meterhub.billing.runs import run_task
from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tasks import create_task
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import create_project
from meterhub.registry.tables import devices, houses, tags
from meterhub.storage import Point, write_points

MONTHLY = {"month": "*", "day": "1", "hour": "0", "minute": "0"}
DAY_US = 86_400_000_000
START_US = 1_788_220_800_000_000  # 2026-09-01 00:00 UTC
MONTH_1_END = START_US + 30 * DAY_US  # 2026-10-01
MONTH_2_END = MONTH_1_END + 31 * DAY_US  # 2026-11-01
FIRST_LAST = text("""
SELECT t.id,
  (SELECT value FROM points p WHERE p.tag_id = t.id ORDER BY ts LIMIT 1),
  (SELECT value FROM points p WHERE p.tag_id = t.id ORDER BY ts DESC LIMIT 1)
FROM tags t WHERE t.channel = 'kW'
""")


def populate(engine: Engine, count: int) -> str:
    """The project, houses, devices and tags in bulk, then 61 daily readings per device."""
    with engine.begin() as conn:
        project = create_project(conn, "Bench estate", "UTC", "CNY")
        tiers = [(Decimal(100), Decimal("0.55")), (None, Decimal("0.80"))]
        set_tariff(conn, project.id, DeviceType.ELECTRICITY, Tariff.tiered(tiers, Decimal(5)))
        task = create_task(conn, project.id, "monthly", DeviceType.ELECTRICITY, MONTHLY)
        address = json.dumps(["Bench", "1", "1", "1", "1"])
        conn.execute(
            insert(houses),
            [
                {"id": i + 1, "project_id": project.id, "address": address, "created_at": 0}
                for i in range(count)
            ],
        )
        conn.execute(
            insert(devices),
            [
                {
                    "id": i + 1,
                    "device_id": f"m{i}",
                    "type": "electricity",
                    "enabled": True,
                    "created_at": 0,
                    "house_id": i + 1,
                }
                for i in range(count)
            ],
        )
        conn.execute(
            insert(tags),
            [
                {
                    "id": i + 1,
                    "key": f"m{i}.kW",
                    "device_pk": i + 1,
                    "channel": "kW",
                    "kind": "register",
                    "unit": "kWh",
                    "created_at": 0,
                }
                for i in range(count)
            ],
        )
    write_readings(engine, count)
    return task.key


def write_readings(engine: Engine, count: int) -> None:
    rng = random.Random(3)
    registers = [rng.uniform(1_000, 50_000) for _ in range(count)]
    for day in range(61):
        ts = START_US + day * DAY_US + 3_600_000_000
        batch = []
        for i in range(count):
            registers[i] += rng.uniform(0, 12)
            batch.append(Point(i + 1, ts, round(registers[i], 3)))
        with engine.begin() as conn:
            write_points(conn, batch)


def timed_run(engine: Engine, task_key: str, end: int) -> tuple[float, int]:
    started = time.perf_counter()
    with engine.begin() as conn:
        report = run_task(conn, task_key, end)
    return time.perf_counter() - started, report.billed


def first_last(conn: Connection) -> float:
    started = time.perf_counter()
    conn.execute(FIRST_LAST).all()
    return time.perf_counter() - started


def measure(url: str, count: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    started = time.perf_counter()
    task_key = populate(engine, count)
    setup = time.perf_counter() - started
    first_seconds, first_billed = timed_run(engine, task_key, MONTH_1_END)
    seconds, billed = timed_run(engine, task_key, MONTH_2_END)
    with engine.connect() as conn:
        plain = min(first_last(conn) for _ in range(3))
    engine.dispose()
    kind = url.split(":", 1)[0]
    print(f"{kind}: {count} devices, 61 daily readings each (setup {setup:.0f} s)")
    print(f"  first run (from first reading): {first_seconds:6.2f} s, {first_billed} bills")
    print(f"  monthly run (from last bill):   {seconds:6.2f} s, {billed} bills")
    print(
        f"  plain first/last register query: {plain:6.2f} s; the run takes {seconds / plain:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", dest="use_postgres", action="store_false")
    args = parser.parse_args()
    with scratch_sqlite("billing") as url:
        measure(url, args.devices)
    if args.use_postgres:
        with scratch_postgres(args.postgres, "billing") as url:
            measure(url, args.devices)


if __name__ == "__main__":
    main()
