"""The Celery workers as the database sees them: each renews its row while it runs, and the
shards it finished (``collector.intervals.poll_shards``) say what it did."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Connection, Integer, String, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.collector.intervals import interval_start, poll_shards
from meterhub.db import metadata

workers = Table(
    "workers",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
)

ALIVE_BEATS = 3
"""Heartbeats a worker may miss before it is shown as dead."""
FORGET_AFTER_US = 86_400_000_000
"""A worker silent this long (a day) is dropped from the list."""


def heartbeat(
    conn: Connection, name: str, host: str, pid: int, concurrency: int, started: int, at: int
) -> None:
    """Worker ``name`` is alive at ``at``."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    row = {
        "name": name,
        "host": host,
        "pid": pid,
        "concurrency": concurrency,
        "started_at": started,
        "heartbeat_at": at,
    }
    stmt = dialect.insert(workers).values(row)
    changed = {key: stmt.excluded[key] for key in row if key != "name"}
    conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=changed))
    conn.execute(delete(workers).where(workers.c.heartbeat_at < at - FORGET_AFTER_US))


def forget_worker(conn: Connection, name: str) -> None:
    """Worker ``name`` stopped cleanly."""
    conn.execute(delete(workers).where(workers.c.name == name))


@dataclass(frozen=True, slots=True)
class WorkerState:
    """One worker; ``shards_done`` and ``polls_per_second`` are of the last whole interval."""

    name: str
    host: str
    pid: int
    concurrency: int
    started_at: int
    heartbeat_at: int
    alive: bool
    shards_done: int
    polls_per_second: float


@dataclass(frozen=True, slots=True)
class IntervalState:
    """The current poll interval: shards published and done so far, and its lag: how long
    after its start its last shard was done, or, while shards are outstanding, how long it
    has been running (``None`` before anything was published)."""

    start: int
    shards: int
    published: int
    done: int
    lag_s: float | None


def list_workers(
    conn: Connection, now: int, interval: float, heartbeat_s: float
) -> list[WorkerState]:
    """Every worker heard from in the last day, by name."""
    last = interval_start(now, interval) - round(interval * 1e6)
    done = (
        select(
            poll_shards.c.worker,
            func.count().label("shards"),
            func.coalesce(func.sum(poll_shards.c.polls), 0).label("polls"),
        )
        .where(poll_shards.c.interval_start == last, poll_shards.c.done_at.is_not(None))
        .group_by(poll_shards.c.worker)
    )
    by_worker = {row.worker: (row.shards, row.polls) for row in conn.execute(done)}
    alive_after = now - round(ALIVE_BEATS * heartbeat_s * 1e6)
    found = []
    for row in conn.execute(select(workers).order_by(workers.c.name)):
        shards, polls = by_worker.get(row.name, (0, 0))
        found.append(
            WorkerState(
                name=row.name,
                host=row.host,
                pid=row.pid,
                concurrency=row.concurrency,
                started_at=row.started_at,
                heartbeat_at=row.heartbeat_at,
                alive=row.heartbeat_at >= alive_after,
                shards_done=shards,
                polls_per_second=round(polls / interval, 2),
            )
        )
    return found


def current_interval(conn: Connection, now: int, interval: float) -> IntervalState:
    """Where the interval holding ``now`` stands."""
    start = interval_start(now, interval)
    query = select(
        func.max(poll_shards.c.shards),
        func.count(),
        func.count(poll_shards.c.done_at),
        func.max(poll_shards.c.done_at),
    ).where(poll_shards.c.interval_start == start)
    shards, published, done, last_done = conn.execute(query).one()
    if not published:
        return IntervalState(start, 0, 0, 0, None)
    end = last_done if done == shards else now
    return IntervalState(start, shards, published, done, (end - start) / 1e6)
