"""Compaction in real processes: ``serve`` compacting by itself, SIGKILL of ``meterhub db
compact`` mid-way, and ingest alongside."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, func, select

from meterhub.db import snapshot
from meterhub.storage import Point, TimeRange, write_points
from meterhub.storage.compactor import compact, compact_day
from meterhub.storage.series import read_span
from meterhub.storage.tables import chunks
from meterhub.storage.tables import points as rows
from meterhub.times import DAY_US
from tests.support import Server, wait_until

DAY0 = 20_454  # 2026-01-01 UTC: long closed for the default settle window
TAGS = range(1, 121)
DAYS = 6
PER_DAY = 60


def history() -> dict[tuple[int, int], float]:
    rng = random.Random(7)
    return {
        (tag, (DAY0 + d) * DAY_US + n * 1_440_000_000 + rng.randrange(1_000_000)): rng.random()
        for tag in TAGS
        for d in range(DAYS)
        for n in range(PER_DAY)
    }


def stored(engine: Engine) -> dict[tuple[int, int], float]:
    found: dict[tuple[int, int], float] = {}
    with engine.connect() as conn:
        for tag in TAGS:
            columns = read_span(conn, tag, TimeRange())
            times, values = columns.ts.tolist(), columns.value.tolist()
            found.update(((tag, ts), value) for ts, value in zip(times, values, strict=True))
            assert len(columns.ts) == len(set(columns.ts.tolist())), "a point is stored twice"
    return found


def chunk_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(chunks)).scalar_one()


def test_serve_compacts_closed_days_in_the_background(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    points = history()
    with engine.begin() as conn:
        write_points(conn, [Point(tag, ts, value) for (tag, ts), value in points.items()])
    with Server(database_url, tmp_path, METERHUB_COLLECTOR_ENABLED="false") as server:
        wait_until(lambda: chunk_count(engine) == len(TAGS) * DAYS, timeout=60)
        with engine.connect() as conn:  # each tag's newest point stays, for its latest value
            assert conn.execute(select(func.count()).select_from(rows)).scalar_one() == len(TAGS)
        with server.client() as client:  # the server still answers
            assert client.get(f"/counter-data/{TAGS[0]}/").status_code < 500
    assert stored(engine) == points


def test_sigkill_during_compaction_loses_and_doubles_nothing(
    engine: Engine, database_url: str
) -> None:
    points = history()
    with engine.begin() as conn:
        write_points(conn, [Point(tag, ts, value) for (tag, ts), value in points.items()])
    command = [sys.executable, "-m", "meterhub.cli", "db", "compact", "--database", database_url]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    seen = []
    for target in (0, 240, 560):  # chunks written before the kill
        child = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while chunk_count(engine) < target and child.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert stored(engine) == points
        seen.append(chunk_count(engine))
    assert seen[-1] < len(TAGS) * DAYS, f"every kill came too late: {seen}"
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    assert chunk_count(engine) == len(TAGS) * DAYS
    assert stored(engine) == points


def test_ingest_while_compacting_loses_nothing(engine: Engine) -> None:
    expected = history()
    with engine.begin() as conn:
        write_points(conn, [Point(tag, ts, value) for (tag, ts), value in expected.items()])
    rng = random.Random(3)
    keys = sorted(expected)
    done = threading.Event()
    failures: list[BaseException] = []

    def ingest() -> None:
        try:
            for n in range(60):
                batch = {}
                for key in rng.sample(keys, 200):
                    batch[key] = float(n)  # a correction of a stored point
                for tag in rng.sample(list(TAGS), 20):  # a late point in a compacted day
                    batch[(tag, (DAY0 + rng.randrange(DAYS)) * DAY_US + rng.randrange(DAY_US))] = n
                with engine.begin() as conn:
                    write_points(conn, [Point(t, ts, v) for (t, ts), v in batch.items()])
                expected.update(batch)
        except BaseException as error:  # raised again in the test, not lost in the thread
            failures.append(error)
        finally:
            done.set()

    writer = threading.Thread(target=ingest)
    writer.start()
    passes = 0
    while not done.is_set() or passes == 0:
        compact(engine, settle_us=0)
        passes += 1
    writer.join()
    if failures:
        raise failures[0]
    assert stored(engine) == expected
    compact(engine, settle_us=0)
    assert stored(engine) == expected


def test_reads_while_compacting_see_every_point(engine: Engine) -> None:
    """A long read (chunks, then rows) never falls between the two halves of a compaction:
    the day leaving the rows for its chunk is seen in one place or the other."""
    per_day = 600
    with engine.begin() as conn:
        write_points(
            conn,
            [
                Point(1, (DAY0 + d) * DAY_US + n * 100_000_000, float(n))
                for d in range(DAYS)
                for n in range(per_day)
            ],
        )
    done = threading.Event()
    counts: list[int] = []

    def read() -> None:
        while not done.is_set():
            with snapshot(engine) as conn:
                counts.append(len(read_span(conn, 1, TimeRange()).ts))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for day in range(DAY0, DAY0 + DAYS):
            for _ in range(20):  # rewrite a point of the day, then move the day again
                with engine.begin() as conn:
                    write_points(conn, [Point(1, day * DAY_US, 1.0)])
                    compact_day(conn, 1, day)
    finally:
        done.set()
        reader.join()
    assert len(counts) > 10
    assert set(counts) == {DAYS * per_day}
