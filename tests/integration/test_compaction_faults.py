"""Compaction in real processes: ``serve`` compacting by itself (each pass in a process of its
own, halted with it), SIGKILL of ``meterhub db compact`` mid-way, and ingest alongside."""

from __future__ import annotations

import asyncio
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
from meterhub.storage.compactor import Compactor, compact, compact_day, has_closed_days
from meterhub.storage.series import read_span
from meterhub.storage.tables import chunks
from meterhub.storage.tables import points as rows
from meterhub.times import DAY_US, now_us
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


def written_history(engine: Engine) -> dict[tuple[int, int], float]:
    """``history()``, written to the row table."""
    points = history()
    with engine.begin() as conn:
        write_points(conn, [Point(tag, ts, value) for (tag, ts), value in points.items()])
    return points


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
    points = written_history(engine)
    with Server(database_url, tmp_path, METERHUB_COLLECTOR_ENABLED="false") as server:
        wait_until(lambda: chunk_count(engine) == len(TAGS) * DAYS, timeout=60)
        with engine.connect() as conn:  # each tag's newest point stays, for its latest value
            assert conn.execute(select(func.count()).select_from(rows)).scalar_one() == len(TAGS)
        with server.client() as client:  # the server still answers
            assert client.get(f"/counter-data/{TAGS[0]}/").status_code < 500
    assert stored(engine) == points


def compacting(parent: int) -> list[int]:
    """The compaction passes ``parent`` runs: its child processes running ``compact_pass``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"compact_pass" in command:
            found.append(int(entry.name))
    return found


def test_a_pass_runs_in_a_process_of_its_own_and_halts_when_serve_stops(engine: Engine) -> None:
    points = written_history(engine)

    async def stop_mid_pass() -> list[int]:
        stop = asyncio.Event()
        compactor = Compactor(engine, settle_us=DAY_US)
        running = asyncio.create_task(compactor.run(stop))
        await asyncio.to_thread(wait_until, lambda: chunk_count(engine) > 0, 60, 0.002)
        passes = compacting(os.getpid())
        stop.set()
        await running
        return passes

    assert len(asyncio.run(stop_mid_pass())) == 1
    assert compacting(os.getpid()) == []
    assert 0 < chunk_count(engine) < len(TAGS) * DAYS  # halted after the day it was moving
    assert stored(engine) == points


def test_a_pass_is_started_only_with_days_to_move(engine: Engine) -> None:
    assert not has_closed_days(engine, settle_us=DAY_US)  # no rows
    with engine.begin() as conn:
        write_points(conn, [Point(1, DAY0 * DAY_US, 1.0)])
    assert not has_closed_days(engine, settle_us=DAY_US)  # a tag's newest row stays a row
    with engine.begin() as conn:
        write_points(conn, [Point(1, (DAY0 + 1) * DAY_US, 2.0), Point(2, now_us(), 1.0)])
    assert has_closed_days(engine, settle_us=DAY_US)
    assert not has_closed_days(engine, settle_us=now_us() - DAY0 * DAY_US)  # not closed yet


_COMPACTING = """
import asyncio, sys
from meterhub.db import make_engine
from meterhub.storage.compactor import Compactor
compactor = Compactor(make_engine(sys.argv[1]), settle_us=86_400_000_000)
asyncio.run(compactor.run(asyncio.Event()))
"""
"""A server's compactor alone, compacting until it is killed."""


def test_a_pass_halts_when_the_serving_process_is_killed(engine: Engine, database_url: str) -> None:
    points = written_history(engine)
    server = subprocess.Popen([sys.executable, "-c", _COMPACTING, database_url])
    wait_until(lambda: chunk_count(engine) > 0, timeout=60, interval=0.002)
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=30)
    counts = [chunk_count(engine)]
    while len(counts) < 3 or counts[-3] != counts[-1]:  # the same for a second
        time.sleep(0.5)
        counts.append(chunk_count(engine))
    assert counts[-1] < len(TAGS) * DAYS, counts  # the pass halted after its day
    assert stored(engine) == points


def test_sigkill_during_compaction_loses_and_doubles_nothing(
    engine: Engine, database_url: str
) -> None:
    points = written_history(engine)
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
    expected = written_history(engine)
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
