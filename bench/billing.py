"""Monthly billing runs over 100,000 devices, two ways.

1. Daily readings (``--only daily``): a project of DEVICES electricity meters (one house each,
   a tiered tariff), a register reading per day for two months written through
   ``write_points``; the first month billed, then the run of the second month (the monthly
   run) timed, against a plain SQL query of first and last register per meter.
2. Readings every 15 minutes (``--only tou``): the same estate in Berlin, read every 15
   minutes from 30 September to 31 October 2026 (UTC days; 32 x 96 readings per meter, ~307
   million at 100,000 meters). The first day is billed (so the monthly run starts at each
   meter's previous bill), then the run of October (with the 25-hour DST day) is timed
   on the same data, each in a transaction rolled back: with the tiered flat-rate
   tariff, and with a time-of-use tariff (weekdays peak 08:00-22:00, valley otherwise, a
   tier surcharge and a fixed charge: 44 period boundaries per meter), ROUNDS times each in
   turn; their medians and ratio are printed.

   The 15-minute readings are stored the way compaction stores closed days, built the
   fastest honest way: every meter is read at the same instants, so each UTC day's chunk is
   encoded with the store's own codec (``codec.pack`` of the values, the day's shared times
   packed once) and its hourly rollups with ``rollups.encode`` of the figures
   ``rollups.hourly`` makes (computed for all meters of a day at once, and checked against
   ``rollups.hourly`` for the first meter of each day), then inserted in bulk, and the space
   reclaimed as ``meterhub db compact`` does (on PostgreSQL that takes the tables'
   statistics, without which its planner read a batch's chunks of two days by scanning
   every chunk of those days). Writing ~307 million points through ``write_points`` and
   compacting them would take hours on a small machine; the tables end up holding the same.

Each runs on SQLite and, when reachable, PostgreSQL.
Usage: .venv/bin/python -m bench.billing [--devices 100000] [--only daily|tou]
    [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from decimal import Decimal

import numpy as np
from sqlalchemy import Connection, Engine, insert, text

from bench.databases import scratch_postgres, scratch_sqlite
from meterhub.billing.runs import run_task
from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tasks import create_task
from meterhub.billing.tou import PEAK_VALLEY, TouTariff
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import create_project
from meterhub.registry.tables import devices, houses, tags
from meterhub.storage import Point, rollups, write_points
from meterhub.storage.chunks import new_stamp
from meterhub.storage.codec import Columns, pack
from meterhub.storage.compactor import mark_unmarked, reclaim
from meterhub.storage.tables import chunks
from meterhub.storage.tables import rollups as rollup_rows
from meterhub.times import HOUR_US

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
TIERED = Tariff.tiered([(Decimal(100), Decimal("0.55")), (None, Decimal("0.80"))], Decimal(5))
FIRST_DAY = 20_726  # 2026-09-30 (UTC)
DAYS = 32
PER_DAY = 96
QUARTER_US = 900_000_000
OCT_1 = 1_790_805_600_000_000  # 2026-10-01 00:00 Berlin (CEST)
NOV_1 = 1_793_487_600_000_000  # 2026-11-01 00:00 Berlin (CET)
TOU = TouTariff.from_json(PEAK_VALLEY)
ROUNDS = 3


def estate(engine: Engine, count: int, timezone: str) -> tuple[int, str]:
    """A project of ``count`` electricity meters, one house each, in bulk, with the tiered
    tariff and a monthly task: (project, task)."""
    with engine.begin() as conn:
        project = create_project(conn, "Bench estate", timezone, "CNY")
        set_tariff(conn, project.id, DeviceType.ELECTRICITY, TIERED)
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
    return project.id, task.key


# --- daily readings ---------------------------------------------------------------------


def populate(engine: Engine, count: int) -> str:
    """The estate (UTC), then 61 daily readings per device: its task."""
    _, task_key = estate(engine, count, "UTC")
    write_readings(engine, count)
    return task_key


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


# --- readings every 15 minutes: flat against time-of-use --------------------------------


def populate_quarter_hours(engine: Engine, count: int) -> tuple[int, str]:
    """The estate (Berlin), then 15-minute readings stored as compacted days: (project, task)."""
    project, task_key = estate(engine, count, "Europe/Berlin")
    rng = np.random.default_rng(3)
    registers = rng.uniform(1_000, 50_000, count)
    for day in range(FIRST_DAY, FIRST_DAY + DAYS):
        values = registers[:, None] + np.cumsum(rng.uniform(0, 0.12, (count, PER_DAY)), axis=1)
        values = np.round(values, 3)
        registers = values[:, -1]
        with engine.begin() as conn:
            store_day(conn, day, values)
    return project, task_key


def store_day(conn: Connection, day: int, values: np.ndarray) -> None:
    """One UTC day of every meter (row ``i``: tag ``i + 1``) as its chunk and rollups."""
    ts = day * DAY_US + np.arange(PER_DAY, dtype=np.int64) * QUARTER_US
    times = pack(ts)
    ints, floats = _hours(ts, values)
    check = rollups.hourly(Columns(ts, values[0], np.zeros(PER_DAY, np.int16)))
    assert np.array_equal(check.ints, ints[0])
    assert np.array_equal(check.floats, floats[0])
    chunk_rows, rollup_rows_ = [], []
    for i, row in enumerate(values):
        stamp = new_stamp()
        int_blob, float_blob = rollups.encode(rollups.Hours(ints[i], floats[i]))
        chunk_rows.append(
            {
                "tag_id": i + 1,
                "day": day,
                "first_ts": int(ts[0]),
                "last_ts": int(ts[-1]),
                "first_value": float(row[0]),
                "last_value": float(row[-1]),
                "first_quality": 0,
                "last_quality": 0,
                "count": PER_DAY,
                "flagged": 0,
                "stamp": stamp,
                "ts_tag": None,
                "ts_blob": times,
                "value_blob": pack(row),
                "quality_blob": b"",
            }
        )
        rollup_rows_.append(
            {
                "tag_id": i + 1,
                "day": day,
                "stamp": stamp,
                "int_blob": int_blob,
                "float_blob": float_blob,
            }
        )
    conn.execute(insert(chunks), chunk_rows)
    conn.execute(insert(rollup_rows), rollup_rows_)


def _hours(ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rollups.hourly``'s figures of every meter's day at once (4 readings an hour, none
    flagged): ints of shape (meters, 8, 24), floats (meters, 6, 24)."""
    count = len(values)
    per_hour = PER_DAY // 24
    hours = values.reshape(count, 24, per_hour)
    at = ts.reshape(24, per_hour)
    first_at = np.arange(24) * per_hour
    ints = np.empty((count, 8, 24), np.int64)
    ints[:, 0] = ts[0] // HOUR_US * HOUR_US + np.arange(24) * HOUR_US
    ints[:, 1] = per_hour
    ints[:, 2] = 0
    ints[:, 3] = at[:, 0]
    ints[:, 4] = at[:, -1]
    ints[:, 5] = at[np.arange(24), hours.argmin(axis=2)]
    ints[:, 6] = at[np.arange(24), hours.argmax(axis=2)]
    ints[:, 7] = first_at
    floats = np.stack(
        [
            hours[:, :, 0],
            hours[:, :, -1],
            hours.min(axis=2),
            hours.max(axis=2),
            _in_order_sum(hours),
            np.zeros((count, 24)),
        ],
        axis=1,
    )
    return ints, floats


def _in_order_sum(hours: np.ndarray) -> np.ndarray:
    """Each hour's sum as ``rollups.hourly`` adds it (``np.add.reduceat``, to the last bit)."""
    flat = hours.reshape(-1)
    return np.add.reduceat(flat, np.arange(0, len(flat), hours.shape[2])).reshape(hours.shape[:2])


def rolled_back_run(engine: Engine, task_key: str, end: int) -> tuple[float, int]:
    """Seconds and bills of the run ending at ``end``, in a transaction rolled back."""
    with engine.connect() as conn:
        started = time.perf_counter()
        with conn.begin() as transaction:
            report = run_task(conn, task_key, end)
            seconds = time.perf_counter() - started
            transaction.rollback()
    return seconds, report.billed


def measure_tou(url: str, count: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    started = time.perf_counter()
    project, task_key = populate_quarter_hours(engine, count)
    marking = time.perf_counter()
    mark_unmarked(engine)  # each block's hour marks, from its rollups
    marking = time.perf_counter() - marking
    reclaim(engine)  # as `meterhub db compact` leaves it (PostgreSQL: its statistics taken)
    setup = time.perf_counter() - started
    timed_run(engine, task_key, OCT_1)
    runs: dict[str, list[float]] = {"flat": [], "tou": []}
    for _ in range(ROUNDS):  # alternated, so both meet the same load
        for name, tariff in (("flat", TIERED), ("tou", TOU)):
            with engine.begin() as conn:
                set_tariff(conn, project, DeviceType.ELECTRICITY, tariff)
            seconds, billed = rolled_back_run(engine, task_key, NOV_1)
            runs[name].append(seconds)
    engine.dispose()
    flat, tou = (statistics.median(runs[name]) for name in ("flat", "tou"))
    ratios = [t / f for f, t in zip(runs["flat"], runs["tou"], strict=True)]
    kind = url.split(":", 1)[0]
    print(
        f"{kind}: {count} meters, {DAYS} days x {PER_DAY} readings each (setup {setup:.0f} s,"
        f" of which hour marks {marking:.0f} s)"
    )
    print(f"  monthly run, medians of {ROUNDS} in turn ({billed} bills each):")
    print(f"    flat (tiered) tariff: {flat:7.2f} s")
    print(f"    time-of-use tariff:   {tou:7.2f} s")
    print(
        f"  time-of-use / flat: {tou / flat:.2f}x (rounds {min(ratios):.2f}x-{max(ratios):.2f}x;"
        " goal <= 2x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--only", choices=("daily", "tou"))
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", dest="use_postgres", action="store_false")
    args = parser.parse_args()
    for name, run in (("daily", measure), ("tou", measure_tou)):
        if args.only not in (None, name):
            continue
        with scratch_sqlite("billing") as url:
            run(url, args.devices)
        if args.use_postgres:
            with scratch_postgres(args.postgres, "billing") as url:
                run(url, args.devices)


if __name__ == "__main__":
    main()
