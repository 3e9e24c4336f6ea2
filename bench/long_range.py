"""Long-range history through the running server: ``maxCount=1000`` over compacted history.

Two tags of one data source: L, 1M points at 1 s, and Y, a year of minute points (simulated
meter current). Both are written, compacted, and read back with the SDK's ``get_data``
(``/smt/data/get``, ``maxCount=1000``, the whole period) from ``meterhub serve``, on SQLite
and on PostgreSQL. The reference, in the same run: DuckDB over the same points in memory,
answering the same buckets' first, last, lowest and highest points, called in turn with
the server's answer so both meet the same load. Medians of REPEAT warm calls.
Usage: .venv/bin/python -m bench.long_range [--repeat 20] [--postgres URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from bench.databases import scratch_postgres, scratch_sqlite
from bench.servers import serving
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.sources import create_source, source_tags
from meterhub.registry.tags import TagSpec
from meterhub.storage import Point, write_points
from meterhub.storage.compactor import compact, reclaim
from meterhub.times import DAY_US
from meterhub_client import DataInteractionClient
from meterhub_client.tags import TagId

START_US = 1_735_689_600_000_000  # 2025-01-01 UTC
SOURCE = "bench"
SERIES = {"L": (1_000_000, 1_000_000), "Y": (525_600, 60_000_000)}  # points, step µs
KEEP = 1000


def series(points: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    ts = START_US + np.arange(points, dtype=np.int64) * step + rng.integers(0, 500_000, points)
    minutes = np.arange(points) * step / 60e6
    value = np.round(40 + 8 * np.sin(minutes / 45) + rng.normal(0, 0.8, points), 2)
    return ts, value


def fill(url: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        specs = [TagSpec(ref={"tagName": name, "parentObjectId": SOURCE}) for name in SERIES]
        create_source(conn, SOURCE, "Long-range benchmark", tag_specs=specs)
        ids = [tag.pk for tag in source_tags(conn, SOURCE)]
    for tag_id, (points, step) in zip(ids, SERIES.values(), strict=True):
        ts, value = series(points, step)
        for lo in range(0, points, 5000):
            batch = [
                Point(tag_id, t, v)
                for t, v in zip(
                    ts[lo : lo + 5000].tolist(), value[lo : lo + 5000].tolist(), strict=True
                )
            ]
            with engine.begin() as conn:
                write_points(conn, batch)
    compact(engine, settle_us=0, now=START_US + 400 * DAY_US)
    reclaim(engine)  # as `meterhub db compact` does; autovacuum would, in time
    engine.dispose()


def median_ms(call: Callable[[], object], repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def paired_ms(
    ours: Callable[[], object], reference: Callable[[], object], repeat: int
) -> tuple[float, float]:
    """Medians of ``ours`` and ``reference`` called in turn, so both meet the same load."""
    ours(), reference()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for call, spent in zip((ours, reference), times, strict=True):
            started = time.perf_counter()
            call()
            spent.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


class DuckDB:
    """The reference: the same thinning in DuckDB over the same points in memory. Per
    bucket of (last - first + B) // B µs: its first, last, lowest and highest point."""

    def __init__(self) -> None:
        self._db = duckdb.connect()
        for name, (points, step) in SERIES.items():
            ts, value = series(points, step)
            self._db.register(f"t_{name}", pa.table({"ts": ts, "value": value}))

    def query(self, name: str) -> object:
        buckets = KEEP // 4
        return self._db.execute(f"""
            WITH b AS (SELECT min(ts) AS lo, (max(ts) - min(ts) + {buckets}) // {buckets} AS w
                       FROM t_{name})
            SELECT (ts - lo) // w AS k, min(ts), max(ts), arg_min(ts, value),
                   arg_max(ts, value)
            FROM t_{name}, b GROUP BY k ORDER BY k
        """).fetchall()


def measure(url: str, reference: DuckDB, repeat: int) -> None:
    fill(url)
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving(url, Path(tmp), METERHUB_OPEN_INGEST="true") as base,
        DataInteractionClient(base, timeout=60) as client,
    ):
        for name, (points, _) in SERIES.items():
            tag = TagId(name, SOURCE)

            def read(tag: TagId = tag) -> None:
                answer = client.get_data(tag_id=tag, from_time=0, max_count=KEEP)
                assert answer[0]["excess"]
                assert len(answer[0]["data"]) <= KEEP

            ms, duck = paired_ms(read, partial(reference.query, name), repeat)
            print(
                f"  {url.split(':', 1)[0]:18s} {name} ({points} points): {ms:6.1f} ms"
                f" = {ms / duck:4.2f}x DuckDB ({duck:.1f} ms)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    args = parser.parse_args()
    reference = DuckDB()
    print("maxCount=1000 over the whole period, compacted history, through the SDK:")
    with scratch_sqlite("long") as url:
        measure(url, reference, args.repeat)
    with scratch_postgres(args.postgres, "long") as url:
        measure(url, reference, args.repeat)


if __name__ == "__main__":
    main()
