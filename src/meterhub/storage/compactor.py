"""Compaction: each closed UTC day of a tag's rows becomes one compressed chunk.

A day is closed once it ended more than the settle window ago (``METERHUB_COMPACT_AFTER``).
A tag's newest row is never moved: the row table always holds each tag's latest point,
found by one seek (``points.latest_join``); a later row frees it to be moved in turn.
One (tag, day) is moved in one short transaction: its rows are deleted (which takes the
write lock on SQLite and the rows' locks on PostgreSQL), merged into the day's chunk (rows
win, as on every read) and the chunk is written back. A crash at any point rolls the whole
move back, so no point is lost or doubled; a write that arrives meanwhile waits for the
move or lands in the row table afterwards, where it wins over the chunk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from meterhub.aio import wait_for_event
from meterhub.storage import chunks, marks, rollups
from meterhub.storage.codec import Columns
from meterhub.storage.series import merge
from meterhub.storage.sqlite_pages import fill_order, page_size
from meterhub.times import DAY_US, now_us

log = logging.getLogger(__name__)

_TAGS_WITH_ROWS = text("""
WITH RECURSIVE t(id) AS (
  SELECT min(tag_id) FROM points
  UNION ALL
  SELECT (SELECT min(p.tag_id) FROM points p WHERE p.tag_id > t.id) FROM t WHERE t.id IS NOT NULL
)
SELECT t.id, (SELECT min(p.ts) FROM points p WHERE p.tag_id = t.id),
  (SELECT max(p.ts) FROM points p WHERE p.tag_id = t.id)
FROM t WHERE t.id IS NOT NULL
""")
"""Every tag holding rows with its oldest and newest row, by index seeks (a loose index scan)."""

_NEXT_ROW = text("SELECT min(ts) FROM points WHERE tag_id = :tag AND ts > :after")

_MOVABLE = (
    "tag_id = :tag AND ts >= :lo AND ts < :hi"
    " AND ts < (SELECT max(ts) FROM points WHERE tag_id = :tag)"
)
"""A (tag, day)'s rows but the tag's newest."""

_LOCK_ROWS = text(f"SELECT 1 FROM points WHERE {_MOVABLE} ORDER BY ts FOR UPDATE")
"""Locks the day's rows in ts order, the order writers lock them in (a bare DELETE may take
them in heap order and deadlock with a write rewriting two of them)."""

_MOVE_ROWS = text(f"DELETE FROM points WHERE {_MOVABLE} RETURNING ts, value, quality")

_LOCK_CLASS = 7_117  # the advisory lock class of compaction; its second key is the tag


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a compaction pass has got."""

    tags_done: int
    tags_total: int
    points_moved: int


def compact(
    engine: Engine,
    *,
    settle_us: int,
    now: int | None = None,
    stop: threading.Event | None = None,
    report: Callable[[Progress], None] | None = None,
    yielding: bool = False,
) -> int:
    """Move every closed day of every tag into its chunk; the number of points moved.

    Stops between two days when ``stop`` is set; ``report`` hears of each tag done.
    ``yielding`` (beside a server) on SQLite: after each day, wait as long as moving it took,
    so the server's writes, which retry the one write lock after sleeps of up to 100 ms,
    find it free half the time instead of in the instant between two days.
    """
    pace = yielding and engine.dialect.name == "sqlite"
    cutoff_day = _cutoff_day(settle_us, now)
    with engine.begin() as conn:
        spans = _closed_spans(conn, cutoff_day)
        newest = {tag: last for tag, _, last in spans}
        pending = [(tag, first) for tag, first, _ in spans]
        if conn.dialect.name == "sqlite" and pending:
            pending = _filling_pages(conn, pending)
    moved = 0
    for done, (tag, oldest) in enumerate(pending, start=1):
        next_ts: int | None = oldest
        while next_ts is not None and next_ts // DAY_US < cutoff_day and next_ts < newest[tag]:
            if stop is not None and stop.is_set():
                return moved
            day = next_ts // DAY_US
            started = time.monotonic()
            with engine.begin() as conn:
                moved += compact_day(conn, tag, day)
                next_ts = conn.execute(
                    _NEXT_ROW, {"tag": tag, "after": (day + 1) * DAY_US - 1}
                ).scalar()
            if pace:
                time.sleep(time.monotonic() - started)
        if report is not None:
            report(Progress(done, len(pending), moved))
    return moved


def _cutoff_day(settle_us: int, now: int | None) -> int:
    """The first UTC day not closed yet."""
    return ((now_us() if now is None else now) - settle_us) // DAY_US


def _closed_spans(conn: Connection, cutoff_day: int) -> list[tuple[int, int, int]]:
    """(tag, oldest row, newest row) of each tag with rows to move before ``cutoff_day``."""
    return [
        (tag, first, last)
        for tag, first, last in conn.execute(_TAGS_WITH_ROWS)
        if first // DAY_US < cutoff_day and first < last  # more than the newest row
    ]


def has_closed_days(engine: Engine, *, settle_us: int) -> bool:
    """Whether a pass would move anything now."""
    with engine.begin() as conn:
        return bool(_closed_spans(conn, _cutoff_day(settle_us, None)))


_LAST_SIZES = text(
    "SELECT c.tag_id, length(c.ts_blob) + length(c.value_blob) + length(c.quality_blob)"
    " FROM json_each(:pending) q JOIN chunks c"
    " ON c.tag_id = json_extract(q.value, '$[0]') AND c.day = json_extract(q.value, '$[1]')"
)


def _filling_pages(conn: Connection, pending: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``pending`` (tags with their oldest row) in the order whose chunks fill SQLite's pages
    (``sqlite_pages``), each sized as the tag's chunk of the day before: a tag's days
    differ little. Tags without that chunk come last, in tag order."""
    days = json.dumps([(tag, oldest // DAY_US - 1) for tag, oldest in pending])
    sizes: dict[int, int] = dict(conn.execute(_LAST_SIZES, {"pending": days}).all())
    known = [item for item in pending if item[0] in sizes]
    order = fill_order([chunks.ROW_BYTES + sizes[tag] for tag, _ in known], page_size(conn))
    return [known[i] for i in order] + [item for item in pending if item[0] not in sizes]


def compact_day(conn: Connection, tag_id: int, day: int) -> int:
    """Move the rows of ``tag_id`` on UTC ``day`` into its chunk, and roll the day up again;
    the number of rows moved."""
    params = {"tag": tag_id, "lo": day * DAY_US, "hi": (day + 1) * DAY_US}
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:cls, :tag)"), {"cls": _LOCK_CLASS, "tag": tag_id}
        )
        conn.execute(_LOCK_ROWS, params)
    found = conn.execute(_MOVE_ROWS, params).all()
    if not found:
        return 0
    rows = Columns.of(sorted(found))
    held = chunks.load_day(conn, tag_id, day, for_update=True)
    columns = rows if held is None else merge(held, rows)
    stamp = chunks.write(conn, tag_id, day, columns, held=held is not None)
    marks.put_day(conn, tag_id, day, rollups.write(conn, tag_id, day, stamp, columns))
    return len(found)


_UNROLLED = text("""
SELECT c.tag_id, c.day, c.stamp FROM chunks c
LEFT JOIN rollups r ON r.tag_id = c.tag_id AND r.day = c.day
WHERE r.stamp IS NULL OR r.stamp != c.stamp
""")


def roll_up_unrolled(engine: Engine, *, stop: threading.Event | None = None) -> int:
    """Make the rollups of chunks written before rollups existed (a database upgraded from
    an earlier version); the number of chunks rolled up."""
    with engine.begin() as conn:
        pending = conn.execute(_UNROLLED).all()
    for tag, day, stamp in pending:
        if stop is not None and stop.is_set():
            break
        with engine.begin() as conn:
            columns = chunks.load_day(conn, tag, day, for_update=True)
            if columns is not None:
                marks.put_day(conn, tag, day, rollups.write(conn, tag, day, stamp, columns))
    return len(pending)


_UNMARKED = """
SELECT DISTINCT c.tag_id, {block} FROM chunks c
LEFT JOIN hour_marks m ON m.tag_id = c.tag_id AND m.block = {block}
WHERE m.tag_id IS NULL ORDER BY 1, 2
"""


def mark_unmarked(engine: Engine, *, stop: threading.Event | None = None) -> int:
    """Make the hour marks of blocks compacted before marks existed (a database upgraded
    from an earlier version); the number of blocks marked."""
    of_day = marks.BLOCK_OF_DAY[engine.dialect.name].format(day="c.day")
    with engine.begin() as conn:
        pending = conn.execute(text(_UNMARKED.format(block=of_day))).all()
    by_block: dict[int, list[int]] = {}
    for tag, block in pending:
        by_block.setdefault(block, []).append(tag)
    for block, tags in by_block.items():
        for first in range(0, len(tags), _MARKED_TOGETHER):
            if stop is not None and stop.is_set():
                return len(pending)
            with engine.begin() as conn:
                marks.make(conn, block, tags[first : first + _MARKED_TOGETHER])
    return len(pending)


_MARKED_TOGETHER = 200
"""Tags whose marks of a block one transaction makes, from rollups read by one statement."""


_SIZE = text(
    "SELECT relpages, reltuples, current_setting('block_size')::integer FROM pg_class"
    " WHERE oid = 'points'::regclass"
)

_PG_ROW_BYTES = 52
"""A row of ``points`` in a PostgreSQL heap page: tuple header, columns, item pointer."""


def reclaim(engine: Engine) -> None:
    """Give the space of moved rows back: SQLite's file shrinks; PostgreSQL reuses it, and
    rewrites the row table when its rows fill under a tenth of its pages. Each tag's newest
    row stays, written last: after a whole history is compacted it keeps the table from
    being cut short, and the planner, seeing a few rows spread over that many pages, would
    scan them all rather than the key."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("VACUUM")
            return
        conn.exec_driver_sql("VACUUM ANALYZE points, chunks, rollups")
        pages, rows, page_bytes = conn.execute(_SIZE).one()
        if pages > 128 and max(rows, 0) * _PG_ROW_BYTES * 10 < pages * page_bytes:
            conn.exec_driver_sql("VACUUM FULL ANALYZE points")


class Compactor:
    """Compacts in the background of ``serve``: a pass when it starts and then every
    ``interval`` seconds, each followed by dropping the points past ``retain_us`` when set.

    A pass with days to move (or a retention to keep) runs in a process of its own
    (``compact_pass``), in a session of its own: compaction is CPU work in Python, and in a
    thread of the serving process it held the interpreter lock against every request (a read
    answering in about 1.5 ms took 15 ms on SQLite and 17 ms on PostgreSQL at the 95th
    percentile while a backlog was compacted); Ctrl-C in a terminal reaches the server
    alone. Whether there is anything to move is asked first, by index seeks, so a server
    with nothing closed starts no process. The pass stops after the day it is moving when
    ``serve`` stops, or when the serving process is gone."""

    def __init__(
        self,
        engine: Engine,
        *,
        settle_us: int,
        retain_us: int | None = None,
        interval: float = 600.0,
    ) -> None:
        self._engine = engine
        self._settle_us = settle_us
        self._retain_us = retain_us
        self._interval = interval
        self._halt = threading.Event()

    def _pass(self) -> None:
        if self._retain_us is None and not has_closed_days(self._engine, settle_us=self._settle_us):
            return
        command = [sys.executable, "-m", "meterhub.storage.compact_pass", str(self._settle_us)]
        if self._retain_us is not None:
            command.append(str(self._retain_us))
        url = self._engine.url.render_as_string(hide_password=False)
        env = {**os.environ, "METERHUB_DATABASE_URL": url}
        pipe = subprocess.PIPE
        with subprocess.Popen(
            command, env=env, stdin=pipe, stdout=pipe, start_new_session=True
        ) as process:
            assert process.stdin is not None
            assert process.stdout is not None
            while process.poll() is None:
                if self._halt.wait(0.2):
                    process.stdin.close()  # the pass stops after the day it is moving
                    process.wait()
            answer = process.stdout.read()
        if process.returncode:
            log.error("compaction pass ended with code %d", process.returncode)
            return
        done = json.loads(answer)
        if done["moved"]:
            log.info("compacted %d points into day chunks", done["moved"])
        if done["dropped"]:
            log.info("dropped %d points past the raw retention", done["dropped"])

    async def run(self, stop: asyncio.Event) -> None:
        """Compact until ``stop``; a pass in progress ends after the day it is moving."""
        watcher = asyncio.create_task(self._relay(stop))
        try:
            while not stop.is_set():
                try:
                    await asyncio.to_thread(self._pass)
                except Exception:
                    log.exception("compaction pass failed; retrying in %.0f s", self._interval)
                await wait_for_event(stop, self._interval)
        finally:
            watcher.cancel()

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._halt.set()
