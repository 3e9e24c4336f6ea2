"""Disk cost and ingest rate of the points table, on SQLite and PostgreSQL.

Writes METERS meters x 2 channels (A gauge, kWh register) x READINGS minute readings,
time-major in batches of 5,000 as the collector does, then prints points/s, bytes per
point and what a year of minute readings of 56,001 meters would take.
Usage: .venv/bin/python -m bench.storage_size [--meters 2000] [--readings 100] [--postgres URL]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator

from sqlalchemy import Engine, text

from bench.databases import scratch_postgres, scratch_sqlite
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.storage import Point, latest, write_points

BATCH = 5000
YEAR_POINTS = 56_001 * 2 * 525_600
MINUTE_US = 60_000_000
START_US = 1_767_225_600_000_000  # 2026-01-01 UTC


def readings(meters: int, count: int) -> Iterator[Point]:
    rng = random.Random(1)
    registers = [rng.uniform(1_000, 100_000) for _ in range(meters)]
    for step in range(count):
        ts = START_US + step * MINUTE_US + rng.randrange(1_000_000)
        for meter in range(meters):
            amps = round(rng.uniform(5, 80), 2)
            registers[meter] = round(registers[meter] + amps * 0.23 / 60, 3)
            yield Point(2 * meter + 1, ts, amps)
            yield Point(2 * meter + 2, ts, registers[meter])


def ingest(engine: Engine, meters: int, count: int) -> float:
    started = time.perf_counter()
    batch: list[Point] = []
    for point in readings(meters, count):
        batch.append(point)
        if len(batch) == BATCH:
            with engine.begin() as conn:
                write_points(conn, batch)
            batch = []
    with engine.begin() as conn:
        write_points(conn, batch)
    return time.perf_counter() - started


def size_bytes(engine: Engine, url: str) -> int:
    with engine.begin() as conn:
        if url.startswith("sqlite"):
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            pages = conn.execute(text("SELECT count(*) FROM dbstat WHERE name = 'points'"))
            return int(pages.scalar_one()) * 4096
        total = conn.execute(text("SELECT pg_total_relation_size('points')"))
        return int(total.scalar_one())


def measure(url: str, meters: int, count: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    seconds = ingest(engine, meters, count)
    n = meters * 2 * count
    per_point = size_bytes(engine, url) / n
    tag_ids = list(range(2, 2 * meters + 1, 2))
    started = time.perf_counter()
    with engine.connect() as conn:
        found = latest(conn, tag_ids)
    latest_ms = (time.perf_counter() - started) * 1000
    engine.dispose()
    kind = url.split(":", 1)[0]
    print(
        f"{kind:22s} {n / seconds:9.0f} points/s  {per_point:5.1f} B/point  "
        f"latest of {len(found)} registers {latest_ms:6.1f} ms  "
        f"year of 56,001 meters: {YEAR_POINTS * per_point / 1e12:4.2f} TB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--readings", type=int, default=100)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    args = parser.parse_args()
    with scratch_sqlite("size") as url:
        measure(url, args.meters, args.readings)
    with scratch_postgres(args.postgres, "size") as url:
        measure(url, args.meters, args.readings)


if __name__ == "__main__":
    main()
