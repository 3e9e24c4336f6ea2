"""Disk cost of stored points, ingest and compaction rates, on SQLite and PostgreSQL.

Two data sets of simulated meters (``collector.simulated_values``: a current gauge and a kWh
register per meter, a reading a minute): the collector's real timestamps (µs, each meter at
its own phase plus up to 0.5 s of poll jitter) and exactly regular ones. Each is written
day by day, time-major in batches of 5,000 as the collector does; the first ROW_DAYS days
before any compaction (the row table as it was, measured on them), and from then on each
day compacted once the next has been written, as ``serve`` compacts each day once it has
closed (the order chunks are written in decides how full SQLite's pages are); the last day
is compacted at the end. Printed per database and data set: ingest points/s over the first
day against a plain upsert loop (SQLite) or plain COPY (PostgreSQL) of the same points into
the ``points`` table of a database of its own, in the same run; bytes per point in the row
table, after compaction, and as a Parquet+zstd file of the same points (pyarrow, the
reference), and the chunks' payload under zstd of scaled deltas (the codec pcodec was
chosen over, at level 19 on the first 100 meters' tags); compaction points/s.
Usage: .venv/bin/python -m bench.storage_size [--meters 1000] [--days 30] [--postgres URL]
[--only sqlite|postgresql] [--only-times collector|regular]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from sqlalchemy import Connection, Engine, text

from bench.databases import scratch_postgres, scratch_sqlite
from meterhub.collector.simulated_values import meter_values
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.storage import Point, write_points
from meterhub.storage.compactor import compact, reclaim
from meterhub.times import DAY_US

BATCH = 5000
MINUTE_US = 60_000_000
START_US = 1_767_225_600_000_000  # 2026-01-01 UTC
SEED = 1


class Dataset:
    """The points of one run as columns, time-major; handed out in batches of 5,000."""

    def __init__(self, meters: int, days: int, jittered: bool) -> None:
        rng = random.Random(SEED)
        phases = [rng.randrange(MINUTE_US) if jittered else 0 for _ in range(meters)]
        n = meters * days * 1440 * 2
        self.tag_id = np.empty(n, np.int32)
        self.ts = np.empty(n, np.int64)
        self.value = np.empty(n, np.float64)
        at = 0
        for minute in range(days * 1440):
            base = START_US + minute * MINUTE_US
            for meter in range(meters):
                ts = base + phases[meter] + (rng.randrange(500_000) if jittered else 0)
                amps, kwh = meter_values(SEED, meter, ts / 1e6)
                self.tag_id[at : at + 2] = (2 * meter + 1, 2 * meter + 2)
                self.ts[at : at + 2] = ts
                self.value[at : at + 2] = (amps, kwh)
                at += 2
        self.days = days
        self._per_day = meters * 1440 * 2

    def __len__(self) -> int:
        return len(self.ts)

    def points_of(self, days: int) -> int:
        return days * self._per_day

    def batches(self, first_day: int, last_day: int) -> Iterator[list[Point]]:
        """The points of days ``first_day`` to ``last_day`` (exclusive, from 0)."""
        end = self.points_of(last_day)
        for lo in range(self.points_of(first_day), end, BATCH):
            hi = min(lo + BATCH, end)
            yield [
                Point(tag, ts, value)
                for tag, ts, value in zip(
                    self.tag_id[lo:hi].tolist(),
                    self.ts[lo:hi].tolist(),
                    self.value[lo:hi].tolist(),
                    strict=True,
                )
            ]


def write_rate(
    engine: Engine,
    batches: Iterable[list[Point]],
    write: Callable[[Connection, list[Point]], object],
) -> float:
    """Points/s of ``write``, a transaction per batch (making the batches not counted)."""
    spent, written = 0.0, 0
    for batch in batches:
        started = time.perf_counter()
        with engine.begin() as conn:
            write(conn, batch)
        spent += time.perf_counter() - started
        written += len(batch)
    return written / spent


def plain_write(conn: Connection, batch: list[Point]) -> None:
    """The reference write: the same points into the ``points`` table, the plainest fast way
    per database (an ``executemany`` upsert, or COPY row by row); the table the store
    writes, so both write the same shape (on SQLite one WITHOUT ROWID B-tree)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(
            "INSERT INTO points (tag_id, ts, value, quality) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tag_id, ts) DO UPDATE SET value = excluded.value,"
            " quality = excluded.quality",
            batch,
        )
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy("COPY points (tag_id, ts, value, quality) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["integer", "bigint", "double precision", "smallint"])
        for row in batch:
            copy.write_row(row)


def reference_rate(url: str, batches: Iterable[list[Point]]) -> float:
    """Points/s of ``plain_write`` into the ``points`` table of a migrated database of its
    own."""
    upgrade(url)
    engine = make_engine(url)
    rate = write_rate(engine, batches, plain_write)
    engine.dispose()
    return rate


_COMPACT = ("chunks", "rollups", "hour_marks")
"""The tables of compacted points: chunks, their rollups and hour marks."""


def stored_bytes(engine: Engine, url: str) -> tuple[int, int]:
    """The store on disk, and its compacted part (``_COMPACT`` with their indexes): the
    SQLite file and its pages, or the PostgreSQL relations with their TOAST and indexes."""
    with engine.begin() as conn:
        if url.startswith("sqlite"):
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            pages = conn.execute(
                text(
                    "SELECT sum(pgsize) FROM dbstat WHERE name IN"
                    " (SELECT name FROM sqlite_schema WHERE tbl_name IN"
                    f" ({', '.join(repr(t) for t in _COMPACT)}))"
                )
            )
            return os.path.getsize(url.removeprefix("sqlite:///")), int(pages.scalar_one())
        sizes = " + ".join(f"pg_total_relation_size('{t}')" for t in _COMPACT)
        total, packed = conn.execute(
            text(f"SELECT pg_total_relation_size('points') + {sizes}, {sizes}")
        ).one()
        return int(total), int(packed)


def row_table_bytes(engine: Engine) -> int:
    """The row table with its index: after compaction, each tag's newest row, which stays."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sql = (
                "SELECT sum(pgsize) FROM dbstat WHERE name IN"
                " (SELECT name FROM sqlite_schema WHERE tbl_name = 'points')"
            )
        else:
            sql = "SELECT pg_total_relation_size('points')"
        return int(conn.exec_driver_sql(sql).scalar_one())


def parquet_bytes(data: Dataset) -> int:
    """The same points as a Parquet+zstd file, sorted by tag and time as chunks are."""
    order = np.lexsort((data.ts, data.tag_id))
    table = pa.table(
        {
            "tag_id": data.tag_id[order],
            "ts": data.ts[order],
            "value": data.value[order],
            "quality": np.zeros(len(data), np.int16),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "points.parquet"
        pq.write_table(table, path, compression="zstd")
        return path.stat().st_size


ZSTD_METERS = 100
"""Meters whose tags the zstd comparison encodes (level 19 takes microseconds a point)."""


def zstd_per_point(data: Dataset) -> float:
    """Bytes a point of the codec pcodec was chosen over: each tag's UTC day as zstd (level
    19) of its time deltas and of its value deltas scaled to integers (the simulator keeps 3
    decimals), over the tags of the first ``ZSTD_METERS`` meters."""
    sample = np.flatnonzero(data.tag_id <= 2 * ZSTD_METERS)
    order = sample[np.lexsort((data.ts[sample], data.tag_id[sample]))]
    tag, ts, value = data.tag_id[order], data.ts[order], data.value[order]
    key = tag.astype(np.int64) * 1_000_000 + ts // DAY_US
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    packer = zstandard.ZstdCompressor(level=19)
    total = 0
    for lo, hi in zip(starts, [*starts[1:], len(ts)], strict=True):
        scaled = np.round(value[lo:hi] * 1000).astype(np.int64)
        deltas = np.concatenate([np.diff(ts[lo:hi], prepend=0), np.diff(scaled, prepend=0)])
        total += len(packer.compress(deltas.tobytes()))
    return total / len(order)


ROW_DAYS = 3
"""Days written before the first compaction; the row table's bytes a point are theirs."""


def measure(url: str, reference_url: str, data: Dataset, parquet: float) -> None:
    reference = reference_rate(reference_url, data.batches(0, 1))
    upgrade(url)
    engine = make_engine(url)
    n = len(data)
    rate = write_rate(engine, data.batches(0, 1), write_points)
    first = min(ROW_DAYS, data.days)
    write_rate(engine, data.batches(1, first), write_points)  # the rates of other days: unused
    rows = stored_bytes(engine, url)[0] / data.points_of(first)
    compacting = 0.0
    for day in range(1, data.days + 1):
        if day > first:
            write_rate(engine, data.batches(day - 1, day), write_points)
        settle = DAY_US if day < data.days else 0  # the day before closed; at the end, all
        started = time.perf_counter()
        compact(engine, settle_us=settle, now=START_US + day * DAY_US)
        compacting += time.perf_counter() - started
    compact_rate = n / compacting
    reclaim(engine)
    total, packed = (size / n for size in stored_bytes(engine, url))
    newest = row_table_bytes(engine) / n
    with engine.connect() as conn:
        payload, hours, marks = conn.execute(
            text(
                "SELECT (SELECT sum(length(ts_blob) + length(value_blob)"
                " + length(quality_blob)) FROM chunks),"
                " (SELECT sum(length(int_blob) + length(float_blob)) FROM rollups),"
                " (SELECT sum(length(int_blob) + length(float_blob)) FROM hour_marks)"
            )
        ).one()
    engine.dispose()
    kind = engine.dialect.name
    plain = "upsert loop" if kind == "sqlite" else "COPY"
    print(
        f"  {kind:8s} ingest (first day) {rate:7.0f} points/s = {rate / reference:4.2f}x"
        f" the plain {plain} ({reference:.0f}/s); rows {rows:5.1f} B/point;"
        f" compacted {packed:4.2f} B/point"
        f" = {packed / parquet:4.2f}x Parquet (pcodec payload: points {payload / n:4.2f},"
        f" hourly rollups {hours / n:4.2f}, hour marks {marks / n:4.2f};"
        f" newest rows {newest:4.2f});"
        f" store on disk {total:5.2f} B/point;"
        f" compaction {compact_rate:7.0f} points/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--only", choices=("sqlite", "postgresql"), help="one database")
    parser.add_argument("--only-times", choices=("collector", "regular"), help="one data set")
    args = parser.parse_args()
    for jittered in (True, False):
        if args.only_times and (args.only_times == "collector") != jittered:
            continue
        data = Dataset(args.meters, args.days, jittered)
        parquet = parquet_bytes(data) / len(data)
        times = "collector times (µs, 0.5 s jitter)" if jittered else "regular times"
        print(f"{args.meters} meters x 2 channels x {args.days} days, {times}: {len(data)} points")
        print(
            f"  Parquet+zstd (pyarrow, the reference) {parquet:4.2f} B/point; the day chunks"
            f" under zstd of scaled deltas instead of pcodec {zstd_per_point(data):4.2f}"
        )
        if args.only != "postgresql":
            with scratch_sqlite("size") as url, scratch_sqlite("plain") as plain:
                measure(url, plain, data, parquet)
        if args.only == "sqlite":
            continue
        with (
            scratch_postgres(args.postgres, "size") as url,
            scratch_postgres(args.postgres, "plain") as plain,
        ):
            measure(url, plain, data, parquet)
        del data


if __name__ == "__main__":
    main()
