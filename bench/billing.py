"""A monthly billing run over 100,000 meters read every 15 minutes: flat tariff against
time-of-use tariff, on the same data, in the same run.

Builds a Berlin project of DEVICES electricity meters (one house each) with a register
reading every 15 minutes from 30 September to 31 October 2026 (UTC days; 32 x 96 readings per
meter, ~307 million at 100,000 meters), bills the first day (so the monthly run starts at each
meter's previous bill, as monthly runs do), then times the run of October (a 25-hour DST day
inside) twice, each in a transaction rolled back: once with a tiered flat-rate tariff, once
with a time-of-use tariff (weekdays peak 08:00-22:00, valley otherwise, a tier surcharge and a
fixed charge: 44 period boundaries per meter). Prints both and their ratio.

The readings are stored the way compaction stores closed days, built the fastest honest way:
every meter is read at the same instants, so each UTC day's chunk is encoded with the store's
own codec (``codec.pack`` of the values, the day's shared times packed once) and its hourly
rollups with ``rollups.encode`` of the figures ``rollups.hourly`` makes (computed for all
meters of a day at once; checked against ``rollups.hourly`` for the first meter of each day),
then inserted in bulk. Writing ~307 million points through ``write_points`` and compacting them
would take hours on a small machine; the tables end up the same.

Usage: .venv/bin/python -m bench.billing [--devices 100000] [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import json
import time
from decimal import Decimal

import numpy as np
from sqlalchemy import Connection, Engine, insert

from bench.databases import scratch_postgres, scratch_sqlite
from meterhub.billing.runs import run_task
from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tasks import create_task
from meterhub.billing.tou import TouTariff
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import create_project
from meterhub.registry.tables import devices, houses, tags
from meterhub.storage import rollups
from meterhub.storage.chunks import new_stamp
from meterhub.storage.codec import Columns, pack
from meterhub.storage.tables import chunks
from meterhub.storage.tables import rollups as rollup_rows
from meterhub.times import DAY_US, HOUR_US

MONTHLY = {"month": "*", "day": "1", "hour": "0", "minute": "0"}
FIRST_DAY = 20_726  # 2026-09-30 (UTC)
DAYS = 32
PER_DAY = 96
QUARTER_US = 900_000_000
OCT_1 = 1_790_805_600_000_000  # 2026-10-01 00:00 Berlin (CEST)
NOV_1 = 1_793_487_600_000_000  # 2026-11-01 00:00 Berlin (CET)
TIERED = Tariff.tiered([(Decimal(100), Decimal("0.55")), (None, Decimal("0.80"))], Decimal(5))
TOU = TouTariff.from_json(
    {
        "kind": "tou",
        "periods": [
            {
                "name": "peak",
                "price": "0.80",
                "windows": [{"days": "weekdays", "from": "08:00", "to": "22:00"}],
            },
            {
                "name": "valley",
                "price": "0.40",
                "windows": [
                    {"days": "weekdays", "from": "22:00", "to": "08:00"},
                    {"days": "weekends", "from": "08:00", "to": "08:00"},
                ],
            },
        ],
        "tiers": [{"up_to": "200", "price": "0"}, {"up_to": None, "price": "0.05"}],
        "fixed_charge": "5.00",
    }
)


def populate(engine: Engine, count: int) -> tuple[int, str]:
    """The project, houses, devices and tags in bulk, then the readings: (project, task)."""
    with engine.begin() as conn:
        project = create_project(conn, "Bench estate", "Europe/Berlin", "CNY")
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
    rng = np.random.default_rng(3)
    registers = rng.uniform(1_000, 50_000, count)
    for day in range(FIRST_DAY, FIRST_DAY + DAYS):
        values = registers[:, None] + np.cumsum(rng.uniform(0, 0.12, (count, PER_DAY)), axis=1)
        values = np.round(values, 3)
        registers = values[:, -1]
        with engine.begin() as conn:
            store_day(conn, day, values)
    return project.id, task.key


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


def timed_run(engine: Engine, task_key: str, end: int, *, keep: bool = False) -> tuple[float, int]:
    """Seconds and bills of the run ending at ``end``; rolled back unless ``keep``."""
    with engine.connect() as conn:
        started = time.perf_counter()
        with conn.begin() as transaction:
            report = run_task(conn, task_key, end)
            seconds = time.perf_counter() - started
            if not keep:
                transaction.rollback()
    return seconds, report.billed


def use_tariff(engine: Engine, project: int, tariff: Tariff | TouTariff) -> None:
    with engine.begin() as conn:
        set_tariff(conn, project, DeviceType.ELECTRICITY, tariff)


def measure(url: str, count: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    started = time.perf_counter()
    project, task_key = populate(engine, count)
    setup = time.perf_counter() - started
    timed_run(engine, task_key, OCT_1, keep=True)
    flat, flat_billed = timed_run(engine, task_key, NOV_1)
    use_tariff(engine, project, TOU)
    tou, tou_billed = timed_run(engine, task_key, NOV_1)
    engine.dispose()
    kind = url.split(":", 1)[0]
    print(f"{kind}: {count} meters, {DAYS} days x {PER_DAY} readings each (setup {setup:.0f} s)")
    print(f"  monthly run, flat (tiered) tariff: {flat:7.2f} s, {flat_billed} bills")
    print(f"  monthly run, time-of-use tariff:   {tou:7.2f} s, {tou_billed} bills")
    print(f"  time-of-use / flat: {tou / flat:.2f}x")


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
