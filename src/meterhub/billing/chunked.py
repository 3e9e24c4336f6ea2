"""A billing run cut into chunks of devices, for workers to bill in parallel.

``start_run`` claims the run (the same unique (task, scheduled time) row as a run in one
piece) and records its chunks, in one transaction. ``run_chunk`` bills one chunk's devices
in the caller's transaction and marks the chunk done in it: a chunk run twice, or by two
workers at once, bills once (the chunk row is locked, a done chunk is left alone, and the
bills' unique (task, device, period end) key stands behind that). The last chunk done
completes the run's record (billed, skipped, finished). Runs of one task are billed in
order: a chunk waits while an earlier run of its task is not finished (each period
begins where the last bill ended). A chunk whose task was lost before
any worker took it is sent again (``unfinished``).
"""

from __future__ import annotations

import json

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)

from meterhub.billing.runs import REGISTER_CHANNEL, bill_devices, claim_run, finish_run
from meterhub.billing.tables import billing_runs
from meterhub.billing.tasks import get_task
from meterhub.db import metadata
from meterhub.registry.tables import devices, houses, tags
from meterhub.times import now_us

billing_run_chunks = Table(
    "billing_run_chunks",
    metadata,
    Column("run_id", Integer, ForeignKey("billing_runs.id", ondelete="CASCADE"), nullable=False),
    Column("chunk", Integer, nullable=False),
    Column("first_pk", Integer, nullable=False),
    Column("last_pk", Integer, nullable=False),
    Column("sent_at", BigInteger, nullable=False),
    Column("done_at", BigInteger, nullable=True),
    Column("billed", Integer, nullable=False, default=0),
    Column("skipped", Text, nullable=False, default="[]"),  # JSON [{device_id, reason}]
    PrimaryKeyConstraint("run_id", "chunk", name="pk_billing_run_chunks"),
)


def start_run(
    conn: Connection, task_key: str, scheduled_at: int, size: int
) -> tuple[int, list[int]] | None:
    """Claim the run of ``task_key`` at ``scheduled_at`` and cut its devices into chunks of
    ``size``: the run and its chunks' numbers to send, or ``None`` if the run was claimed
    before."""
    task = get_task(conn, task_key)
    run_id = claim_run(conn, task, scheduled_at)
    if run_id is None:
        return None
    register = (tags.c.device_pk == devices.c.id) & (
        tags.c.channel == REGISTER_CHANNEL[task.device_type]
    )
    query = (
        select(devices.c.id)
        .join(houses, houses.c.id == devices.c.house_id)
        .join(tags, register)
        .where(houses.c.project_id == task.project_id, devices.c.type == task.device_type.value)
        .order_by(devices.c.id)
    )
    pks = list(conn.execute(query).scalars())
    if not pks:
        finish_run(conn, run_id, 0, [])
        return run_id, []
    sent = now_us()
    rows = [
        {
            "run_id": run_id,
            "chunk": n,
            "first_pk": pks[i],
            "last_pk": pks[min(i + size, len(pks)) - 1],
            "sent_at": sent,
            "billed": 0,
            "skipped": "[]",
        }
        for n, i in enumerate(range(0, len(pks), size))
    ]
    conn.execute(insert(billing_run_chunks), rows)
    return run_id, [row["chunk"] for row in rows]


class EarlierRunPending(Exception):
    """An earlier run of the same task is not finished: its bills end where this run's
    periods begin, so this chunk must wait for them."""


def run_chunk(conn: Connection, run_id: int, chunk: int) -> tuple[int, int]:
    """Bill chunk ``chunk`` of run ``run_id`` unless it is done: (billed, skipped).
    ``EarlierRunPending`` while an earlier run of the task is still billing."""
    where = (billing_run_chunks.c.run_id == run_id) & (billing_run_chunks.c.chunk == chunk)
    row = conn.execute(select(billing_run_chunks).where(where).with_for_update()).first()
    if row is None or row.done_at is not None:
        return 0, 0
    run = conn.execute(select(billing_runs).where(billing_runs.c.id == run_id)).one()
    runs = billing_runs.c
    earlier = select(func.count()).where(
        runs.task_key == run.task_key,
        runs.scheduled_at < run.scheduled_at,
        runs.finished_at.is_(None),
    )
    if conn.execute(earlier).scalar_one():
        raise EarlierRunPending(f"run {run_id} waits for an earlier run of {run.task_key}")
    task = get_task(conn, run.task_key)
    span = (row.first_pk, row.last_pk)
    billed, skipped = bill_devices(conn, task, run_id, run.scheduled_at, span)
    conn.execute(
        update(billing_run_chunks)
        .where(where)
        .values(done_at=now_us(), billed=billed, skipped=json.dumps(skipped))
    )
    _complete(conn, run_id)
    return billed, len(skipped)


def _complete(conn: Connection, run_id: int) -> None:
    """Complete the run's record once every chunk is done. The run row is locked first, so
    of chunks finishing together exactly one sees all done; ``FOR NO KEY UPDATE`` leaves
    the key-share locks other chunks' bills hold on it alone (no deadlock)."""
    run = select(billing_runs.c.id).where(billing_runs.c.id == run_id)
    conn.execute(run.with_for_update(key_share=True))  # FOR NO KEY UPDATE
    of_run = billing_run_chunks.c.run_id == run_id
    left = conn.execute(
        select(func.count()).where(of_run, billing_run_chunks.c.done_at.is_(None))
    ).scalar_one()
    if left:
        return
    chunks = select(billing_run_chunks).where(of_run).order_by(billing_run_chunks.c.chunk)
    billed, skipped = 0, []
    for chunk in conn.execute(chunks):
        billed += chunk.billed
        skipped.extend(json.loads(chunk.skipped))
    finish_run(conn, run_id, billed, skipped)


def unfinished(conn: Connection, sent_before: int) -> list[tuple[int, int]]:
    """Chunks sent before ``sent_before`` and not done, as (run, chunk); marked sent now."""
    stale = billing_run_chunks.c.done_at.is_(None) & (billing_run_chunks.c.sent_at < sent_before)
    query = select(billing_run_chunks.c.run_id, billing_run_chunks.c.chunk).where(stale)
    found = [(row.run_id, row.chunk) for row in conn.execute(query)]
    if found:
        conn.execute(update(billing_run_chunks).where(stale).values(sent_at=now_us()))
    return found
