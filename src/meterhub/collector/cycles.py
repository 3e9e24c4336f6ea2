"""What each collector shard did in its last cycle: one poll interval, or one sweep.

Each shard keeps one row, replaced at every cycle. Rows of shards at or beyond the current
shard count are left by an earlier configuration; readers filter them by ``shards``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Connection, Float, Integer, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.db import metadata

collector_cycles = Table(
    "collector_cycles",
    metadata,
    Column("shard", Integer, primary_key=True, autoincrement=False),
    Column("shards", Integer, nullable=False),
    Column("mode", String(8), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("due", Integer, nullable=False),
    Column("polls", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("readings", Integer, nullable=False),
    Column("points", Integer, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)


class CycleMode(StrEnum):
    RUN = "run"
    SWEEP = "sweep"


@dataclass(frozen=True, slots=True)
class CycleStats:
    """One cycle of shard ``shard`` of ``shards``; times in µs.

    ``due``: meters released for polling; ``polls``: polls completed, of which ``failures``
    failed and ``readings`` succeeded, handing ``points`` points to the writer. In ``run``
    mode ``duration_s`` spans the first poll start to the last poll end of the interval
    (0 without polls); in ``sweep`` mode it is the whole sweep.
    """

    shard: int
    shards: int
    mode: CycleMode
    started_at: int
    duration_s: float
    due: int
    polls: int
    failures: int
    readings: int
    points: int
    updated_at: int


def save_cycle(conn: Connection, stats: CycleStats) -> None:
    """Replace the row of ``stats.shard``."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(collector_cycles).values(asdict(stats))
    changed = {c.name: stmt.excluded[c.name] for c in collector_cycles.c if c.name != "shard"}
    conn.execute(stmt.on_conflict_do_update(index_elements=["shard"], set_=changed))


def latest_cycles(conn: Connection) -> list[CycleStats]:
    """The last cycle of every shard that ever reported, by shard (stale shards included)."""
    rows = conn.execute(select(collector_cycles).order_by(collector_cycles.c.shard))
    return [CycleStats(**{**row._mapping, "mode": CycleMode(row.mode)}) for row in rows]


class CycleCounter:
    """Counts one shard's polls and hands each cycle that ends to ``report``.

    ``start(at, window_us)`` begins counting: with a window, each window of that length
    from ``at`` is a ``run`` cycle, reported once an event (or ``tick``) falls past its end;
    without one, the cycle is a ``sweep``, reported by ``finish``. Events are placed by
    their wall time in µs, the time the poll log records.
    """

    def __init__(self, shard: int, shards: int, report: Callable[[CycleStats], None]) -> None:
        self._shard, self._shards = shard, shards
        self._report = report
        self._window: int | None = None
        self._begin(0)

    def start(self, at: int, window_us: int | None) -> None:
        self._window = window_us
        self._begin(at)

    def _begin(self, at: int) -> None:
        self._start = at
        self._due = self._polls = self._failures = self._readings = self._points = 0
        self._busy: tuple[int, int] | None = None  # first poll start, last poll end

    def released(self, at: int) -> None:
        """A meter was handed to the workers."""
        self.tick(at)
        self._due += 1

    def polled(self, at: int, duration_ms: float, points: int | None) -> None:
        """A poll ended at ``at``, handing ``points`` to the writer (``None``: it failed)."""
        self.tick(at)
        began = max(self._start, at - round(duration_ms * 1000))
        first, last = self._busy or (began, at)
        self._busy = (min(first, began), max(last, at))
        self._polls += 1
        if points is None:
            self._failures += 1
        else:
            self._readings += 1
            self._points += points

    def tick(self, at: int) -> None:
        """Report the window that ended at or before ``at`` and begin the one holding ``at``."""
        if self._window is None or at < self._start + self._window:
            return
        first, last = self._busy or (0, 0)
        self._send(CycleMode.RUN, (last - first) / 1e6, at)
        self._begin(self._start + (at - self._start) // self._window * self._window)

    def seconds_left(self, at: int) -> float:
        """Seconds from ``at`` to the end of the current window (infinite in a sweep)."""
        if self._window is None:
            return math.inf
        return (self._start + self._window - at) / 1e6

    def finish(self, at: int, mode: CycleMode = CycleMode.SWEEP) -> None:
        """Report the sweep (or, for a polling task, the ``run`` of its interval), which
        ends at ``at``."""
        if mode is CycleMode.SWEEP:
            self._send(mode, (at - self._start) / 1e6, at)
            return
        first, last = self._busy or (0, 0)
        self._send(mode, (last - first) / 1e6, at)

    def _send(self, mode: CycleMode, duration_s: float, at: int) -> None:
        counts = (self._due, self._polls, self._failures, self._readings, self._points)
        self._report(
            CycleStats(self._shard, self._shards, mode, self._start, duration_s, *counts, at)
        )
