"""Polling cut into tasks for workers: each poll interval's shards, and the claims that
let each meter be read and stored once per interval.

An interval starts at a whole multiple of ``poll_interval`` since the epoch. Its plan lists
the enabled meters in the order of their phase in the interval and cuts them into shards
of at most ``shard_size`` meters spanning at most ``shard_seconds`` of the interval, so a
shard's task is short (its span plus the poll timeout) whatever the fleet's size. Shard
``n`` is due at its first meter's phase. ``poll_shards`` records each shard once it is
published (whoever publishes an interval skips shards already there) and once a worker
has done it. ``poll_claims`` holds a row per (meter, interval) stored, written in the
same transaction as the reading: a shard run again (a worker died, the broker delivered
twice) skips the meters already claimed, and a reading whose claim another run won is
dropped.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.db import metadata
from meterhub.registry.tables import devices

poll_shards = Table(
    "poll_shards",
    metadata,
    Column("interval_start", BigInteger, nullable=False),
    Column("shard", Integer, nullable=False),
    Column("shards", Integer, nullable=False),
    Column("meters", Integer, nullable=False),
    Column("due_at", BigInteger, nullable=False),
    Column("published_at", BigInteger, nullable=False),
    Column("worker", String(255), nullable=True),
    Column("done_at", BigInteger, nullable=True),
    Column("polls", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),
    Column("duration_s", Float, nullable=False, default=0.0),
    PrimaryKeyConstraint("interval_start", "shard", name="pk_poll_shards"),
)

poll_claims = Table(
    "poll_claims",
    metadata,
    Column("interval_start", BigInteger, nullable=False),
    Column("device_pk", Integer, nullable=False),
    PrimaryKeyConstraint("interval_start", "device_pk", name="pk_poll_claims"),
    sqlite_with_rowid=False,
)


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``number`` of ``count`` of the interval starting at ``interval_start`` (µs):
    the meters ``pks``, the first due ``offset_s`` seconds into the interval."""

    interval_start: int
    number: int
    count: int
    offset_s: float
    pks: tuple[int, ...]

    @property
    def due_at(self) -> int:
        return self.interval_start + round(self.offset_s * 1e6)


def phase(device_id: str, interval: float) -> float:
    """A meter's stable offset in [0, interval): spreads meters evenly over the interval."""
    return zlib.crc32(device_id.encode()) / 2**32 * interval


def interval_start(at: int, interval: float) -> int:
    """The start (µs) of the interval holding ``at``."""
    length = round(interval * 1e6)
    return at - at % length


def plan(
    conn: Connection, start: int, interval: float, shard_size: int, shard_seconds: float
) -> list[Shard]:
    """The shards of the interval starting at ``start``: every enabled meter with an
    address, in phase order."""
    query = select(devices.c.id, devices.c.device_id).where(
        devices.c.enabled.is_(True), devices.c.port.is_not(None)
    )
    meters = sorted((phase(device_id, interval), pk) for pk, device_id in conn.execute(query))
    groups: list[list[tuple[float, int]]] = []
    for meter in meters:
        if (
            not groups
            or len(groups[-1]) >= shard_size
            or meter[0] - groups[-1][0][0] >= (shard_seconds)
        ):
            groups.append([])
        groups[-1].append(meter)
    return [
        Shard(start, n, len(groups), group[0][0], tuple(pk for _, pk in group))
        for n, group in enumerate(groups)
    ]


def sweep_plan(conn: Connection, at: int, shard_size: int) -> list[Shard]:
    """Every enabled meter with an address in shards of ``shard_size``, all due at ``at``
    (a sweep: each meter polled once, now; ``at`` keys its claims)."""
    query = (
        select(devices.c.id)
        .where(devices.c.enabled.is_(True), devices.c.port.is_not(None))
        .order_by(devices.c.id)
    )
    pks = list(conn.execute(query).scalars())
    cuts = range(0, len(pks), shard_size)
    return [
        Shard(at, n, len(cuts), 0.0, tuple(pks[i : i + shard_size])) for n, i in enumerate(cuts)
    ]


def mark_published(conn: Connection, shard: Shard, at: int) -> bool:
    """Record ``shard`` as published at ``at``; false if it already was (by anyone)."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    row = {
        "interval_start": shard.interval_start,
        "shard": shard.number,
        "shards": shard.count,
        "meters": len(shard.pks),
        "due_at": shard.due_at,
        "published_at": at,
    }
    stmt = dialect.insert(poll_shards).values(row).on_conflict_do_nothing()
    return bool(conn.execute(stmt).rowcount)


def unmark_published(conn: Connection, shard: Shard) -> None:
    """Take back the record of ``shard`` (its task could not be sent)."""
    conn.execute(
        delete(poll_shards).where(
            poll_shards.c.interval_start == shard.interval_start,
            poll_shards.c.shard == shard.number,
        )
    )


def published(conn: Connection, start: int) -> set[int]:
    """The shards of the interval starting at ``start`` already published."""
    query = select(poll_shards.c.shard).where(poll_shards.c.interval_start == start)
    return set(conn.execute(query).scalars())


def mark_done(
    conn: Connection,
    shard: Shard,
    worker: str,
    at: int,
    polls: int,
    failures: int,
    duration_s: float,
) -> None:
    """Record that ``worker`` finished ``shard`` at ``at`` (a run again overwrites it)."""
    query = update(poll_shards).where(
        poll_shards.c.interval_start == shard.interval_start, poll_shards.c.shard == shard.number
    )
    values = {"worker": worker, "done_at": at, "polls": polls, "failures": failures}
    conn.execute(query.values(**values, duration_s=duration_s))


def claimed(conn: Connection, start: int, pks: Collection[int]) -> set[int]:
    """The meters among ``pks`` already stored in the interval starting at ``start``."""
    query = select(poll_claims.c.device_pk).where(
        poll_claims.c.interval_start == start, poll_claims.c.device_pk.in_(list(pks))
    )
    return set(conn.execute(query).scalars())


def claim(conn: Connection, start: int, pks: Sequence[int]) -> set[int]:
    """Claim the meters ``pks`` for the interval starting at ``start``: those this call
    claimed (a meter claimed already, by anyone, is left out)."""
    if not pks:
        return set()
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = (
        dialect.insert(poll_claims)
        .values([{"interval_start": start, "device_pk": pk} for pk in pks])
        .on_conflict_do_nothing()
        .returning(poll_claims.c.device_pk)
    )
    return set(conn.execute(stmt).scalars())


def forget_before(conn: Connection, before: int) -> None:
    """Drop the shards and claims of intervals starting before ``before``."""
    conn.execute(delete(poll_claims).where(poll_claims.c.interval_start < before))
    conn.execute(delete(poll_shards).where(poll_shards.c.interval_start < before))
