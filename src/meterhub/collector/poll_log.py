"""Every poll of every meter (time, duration, outcome), kept for a few days, then folded
into hourly counts kept for the long run: health history.

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
from meterhub.times import HOUR_US

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

poll_hours = Table(
    "poll_hours",
    metadata,
    Column("start_us", BigInteger, nullable=False),  # the hour's start
    Column("total_ms", Float, nullable=False),
    Column("max_ms", Float, nullable=False),
    Column("device_pk", Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("polls", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    PrimaryKeyConstraint("device_pk", "start_us", name="pk_poll_hours"),
    sqlite_with_rowid=False,
)
"""Polls folded out of the log, by meter and hour."""

_failed = case((poll_log.c.ok, 0), else_=1)


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
    """Fold the polls of ``device_pks`` older than ``before_us`` into their hours of
    ``poll_hours`` and delete them from the log; returns how many."""
    pks = sorted(device_pks)
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    hour = (poll_log.c.ts // HOUR_US * HOUR_US).label("start_us")
    deleted = 0
    for first in range(0, len(pks), PRUNE_CHUNK):
        old = (
            poll_log.c.device_pk.in_(pks[first : first + PRUNE_CHUNK]),
            poll_log.c.ts < before_us,
        )
        folded = (
            select(
                poll_log.c.device_pk,
                hour,
                func.count(),
                func.sum(_failed),
                func.sum(poll_log.c.duration_ms),
                func.max(poll_log.c.duration_ms),
            )
            .where(*old)
            .group_by(poll_log.c.device_pk, hour)
        )
        columns = ["device_pk", "start_us", "polls", "failures", "total_ms", "max_ms"]
        stmt = dialect.insert(poll_hours).from_select(columns, folded)
        more = stmt.excluded
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[poll_hours.c.device_pk, poll_hours.c.start_us],
                set_={
                    "polls": poll_hours.c.polls + more.polls,
                    "failures": poll_hours.c.failures + more.failures,
                    "total_ms": poll_hours.c.total_ms + more.total_ms,
                    "max_ms": case(
                        (more.max_ms > poll_hours.c.max_ms, more.max_ms), else_=poll_hours.c.max_ms
                    ),
                },
            )
        )
        deleted += conn.execute(poll_log.delete().where(*old)).rowcount
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

    Buckets are ``bucket_width`` µs wide; those without polls are left out. Polls folded
    into hours count in the bucket holding their hour's start (from the span's start on).
    """
    width = bucket_width(start_us, end_us, buckets)
    logged = select(
        ((poll_log.c.ts - start_us) // width).label("bucket"),
        func.count(),
        func.sum(_failed),
        func.sum(poll_log.c.duration_ms),
        func.max(poll_log.c.duration_ms),
    ).where(poll_log.c.device_pk == device_pk, poll_log.c.ts >= start_us, poll_log.c.ts < end_us)
    hours = select(
        ((poll_hours.c.start_us - start_us) // width).label("bucket"),
        func.sum(poll_hours.c.polls),
        func.sum(poll_hours.c.failures),
        func.sum(poll_hours.c.total_ms),
        func.max(poll_hours.c.max_ms),
    ).where(
        poll_hours.c.device_pk == device_pk,
        poll_hours.c.start_us >= start_us,
        poll_hours.c.start_us < end_us,
    )
    found: dict[int, tuple[int, int, float, float]] = {}
    for query in (logged.group_by("bucket"), hours.group_by("bucket")):
        for bucket, polls, failures, total, peak in conn.execute(query):
            held = found.get(int(bucket), (0, 0, 0.0, peak))
            found[int(bucket)] = (
                held[0] + int(polls),
                held[1] + int(failures),
                held[2] + total,
                max(held[3], peak),
            )
    return [
        HealthBucket(start_us + bucket * width, polls, failures, total / polls, peak)
        for bucket, (polls, failures, total, peak) in sorted(found.items())
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
