"""Reads through the running server while it compacts a backlog, against the same reads
once it is done.

The two tags of ``bench/long_range.py`` (1.5M points: 1M at 1 s and a year of minutes) are
written to the row table, uncompacted; ``meterhub serve`` starts with compaction on (its
first pass compacts them) and a third tag's latest value is read through
``/smt/data/get`` every READ_EVERY seconds, while the backlog is compacted (from its first
chunk to its last, the chunks counted between reads) and for as long again afterwards.
Printed per database: the reads' median, 95th percentile and slowest, in each phase, and
the 95th percentile's ratio.
Usage: .venv/bin/python -m bench.read_while_compacting [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import text

from bench.databases import on_each_database
from bench.long_range import SERIES, SOURCE, series
from bench.servers import serving
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.sources import create_source, source_tags
from meterhub.registry.tags import TagSpec
from meterhub.storage import Point, write_points

READ_EVERY = 0.02
LATEST = "Z"


def fill(url: str) -> int:
    """The backlog, and one point of the tag read; the number of chunks it compacts into."""
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        names = (*SERIES, LATEST)
        specs = [TagSpec(ref={"tagName": name, "parentObjectId": SOURCE}) for name in names]
        create_source(conn, SOURCE, "Read while compacting", tag_specs=specs)
        ids = [tag.pk for tag in source_tags(conn, SOURCE)]
    days = 0
    for tag_id, (points, step) in zip(ids, SERIES.values(), strict=False):
        ts, value = series(points, step)
        days += len(np.unique(ts[:-1] // 86_400_000_000))  # the newest row stays a row
        for lo in range(0, points, 5000):
            batch = zip(ts[lo : lo + 5000].tolist(), value[lo : lo + 5000].tolist(), strict=True)
            with engine.begin() as conn:
                write_points(conn, [Point(tag_id, t, v) for t, v in batch])
    with engine.begin() as conn:
        write_points(conn, [Point(ids[-1], int(ts[0]), 1.0)])
    engine.dispose()
    return days


def measure(url: str) -> None:
    chunks = fill(url)
    engine = make_engine(url)
    with tempfile.TemporaryDirectory() as tmp, serving(url, Path(tmp)) as base:
        host, port = base.split("//")[1].split(":")
        client = http.client.HTTPConnection(host, int(port))
        body = json.dumps({"tagId": [{"tagName": LATEST, "parentObjectId": SOURCE}]})
        phases: tuple[list[float], list[float], list[float]] = ([], [], [])
        begun_at = done_at = 0.0  # when the first chunk and the last are seen
        while not done_at or time.monotonic() < done_at + (done_at - begun_at):
            started = time.perf_counter()
            client.request("POST", "/smt/data/get", body, {"Content-Type": "application/json"})
            client.getresponse().read()
            phases[bool(begun_at) + bool(done_at)].append((time.perf_counter() - started) * 1000)
            if not done_at:
                with engine.connect() as conn:
                    made = conn.execute(text("SELECT count(*) FROM chunks")).scalar_one()
                begun_at = begun_at or (time.monotonic() if made else 0.0)
                done_at = time.monotonic() if made >= chunks else 0.0
            time.sleep(READ_EVERY)
    engine.dispose()
    kind = url.split(":", 1)[0]
    p95 = [float(np.percentile(phase, 95)) for phase in phases[1:]]
    for name, phase, slow in zip(("compacting", "after"), phases[1:], p95, strict=True):
        print(
            f"  {kind:18s} {name:10s} {len(phase):4d} reads: median"
            f" {statistics.median(phase):5.1f} ms, p95 {slow:5.1f} ms, slowest {max(phase):5.1f} ms"
        )
    print(f"  {kind:18s} p95 while compacting / after: {p95[0] / p95[1]:.2f}x")


def main() -> None:
    on_each_database(
        __doc__,
        "compacting",
        f"latest value of one tag, read every {READ_EVERY * 1000:.0f} ms through the server:",
        measure,
    )


if __name__ == "__main__":
    main()
