"""Every poll of every meter (time, duration, outcome), kept for a few days: health history.

The primary key (device, time) clusters a meter's polls together (SQLite keeps the table
WITHOUT ROWID), so history, failures and pruning of one meter are index range reads.
Columns are ordered widest first, as in ``points``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    case,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.collector.health import Health, Status
from meterhub.collector.health_store import existing_devices
from meterhub.db import metadata

PRUNE_CHUNK = 500
"""Devices per prune statement."""

poll_log = Table(
    "poll_log",
    metadata,
    Column("ts", BigInteger, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("device_pk", Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    PrimaryKeyConstraint("device_pk", "ts", name="pk_poll_log"),
    sqlite_with_rowid=False,
)


@dataclass(frozen=True, slots=True)
class PollEntry:
    """One poll of one meter as the log stores it; ``error`` may be the warning of a good poll."""

    device_pk: int
    ts: int
    duration_ms: float
    ok: bool
    error: str | None


@dataclass(frozen=True, slots=True)
class PollRecord:
    """One logged poll of a known meter (µs, ms)."""

    ts: int
    duration_ms: float
    error: str | None


@dataclass(frozen=True, slots=True)
class HealthBucket:
    """Polls of one meter in ``[start_us, start_us + width)``; durations in ms."""

    start_us: int
    polls: int
    failures: int
    mean_ms: float
    max_ms: float


def poll_entry(device_pk: int, health: Health) -> PollEntry:
    """The poll that produced ``health``, i.e. its last attempt."""
    ts, duration = health.last_attempt, health.last_duration_ms
    if ts is None or duration is None:
        raise ValueError("health of a meter that was never polled")
    error = health.last_error if health.last_error_at == ts else None
    return PollEntry(device_pk, ts, duration, health.status is Status.ONLINE, error)


def save_poll_log(conn: Connection, rows: Sequence[PollEntry]) -> None:
    """Insert ``rows``, skipping devices deleted meanwhile and (device, ts) already logged."""
    if not rows:
        return
    alive = existing_devices(conn, {row.device_pk for row in rows})
    params = [asdict(row) for row in rows if row.device_pk in alive]
    if not params:
        return
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(poll_log).on_conflict_do_nothing(
        index_elements=[poll_log.c.device_pk, poll_log.c.ts]
    )
    conn.execute(stmt, params)


def prune_poll_log(conn: Connection, device_pks: Collection[int], before_us: int) -> int:
    """Delete the polls of ``device_pks`` older than ``before_us``; returns how many."""
    pks = sorted(device_pks)
    deleted = 0
    for first in range(0, len(pks), PRUNE_CHUNK):
        chunk = pks[first : first + PRUNE_CHUNK]
        query = poll_log.delete().where(poll_log.c.device_pk.in_(chunk), poll_log.c.ts < before_us)
        deleted += conn.execute(query).rowcount
    return deleted


def bucket_width(start_us: int, end_us: int, buckets: int) -> int:
    """µs per bucket when ``[start_us, end_us)`` is cut into ``buckets``: rounded up."""
    if buckets < 1 or end_us <= start_us:
        raise ValueError("need at least one bucket and end_us after start_us")
    return -(-(end_us - start_us) // buckets)


def poll_history(
    conn: Connection, device_pk: int, start_us: int, end_us: int, buckets: int
) -> list[HealthBucket]:
    """Polls of one meter in ``[start_us, end_us)`` in ``buckets`` equal buckets, oldest first.

    Buckets are ``bucket_width`` µs wide; those without polls are left out.
    """
    width = bucket_width(start_us, end_us, buckets)
    in_span = (
        select(
            ((poll_log.c.ts - start_us) // width).label("bucket"),
            poll_log.c.ok,
            poll_log.c.duration_ms,
        )
        .where(
            poll_log.c.device_pk == device_pk,
            poll_log.c.ts >= start_us,
            poll_log.c.ts < end_us,
        )
        .subquery()
    )
    query = (
        select(
            in_span.c.bucket,
            func.count(),
            func.sum(case((in_span.c.ok, 0), else_=1)),
            func.avg(in_span.c.duration_ms),
            func.max(in_span.c.duration_ms),
        )
        .group_by(in_span.c.bucket)
        .order_by(in_span.c.bucket)
    )
    return [
        HealthBucket(start_us + int(bucket) * width, int(polls), int(failures), mean, peak)
        for bucket, polls, failures, mean, peak in conn.execute(query)
    ]


def recent_failures(conn: Connection, device_pk: int, limit: int = 20) -> list[PollRecord]:
    """The last ``limit`` failed polls of one meter, newest first."""
    query = (
        select(poll_log.c.ts, poll_log.c.duration_ms, poll_log.c.error)
        .where(poll_log.c.device_pk == device_pk, poll_log.c.ok.is_(False))
        .order_by(poll_log.c.ts.desc())
        .limit(limit)
    )
    return [PollRecord(*row) for row in conn.execute(query)]
