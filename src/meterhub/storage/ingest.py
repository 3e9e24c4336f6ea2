"""Committing pushed points: the one write path of ``/smt/data/set`` and MQTT ingest."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
from psycopg.errors import UniqueViolation
from sqlalchemy import Connection, Engine

from meterhub.errors import NotKept
from meterhub.storage.points import PointColumns, write_columns
from meterhub.storage.retention import not_kept, retention_day
from meterhub.times import DAY_US


def check_kept(batch: PointColumns, counts: list[int], retention_days: float | None) -> None:
    """``NotKept`` naming the first point (``data[i].data[j].x``) the raw retention would
    drop unseen: one before the first UTC day it keeps. ``counts`` holds how many points
    each record of the batch has, in order."""
    if retention_days is None or not len(batch.ts):
        return
    horizon = retention_day(round(retention_days * DAY_US)) * DAY_US
    if batch.ts.min() >= horizon:
        return
    n = int(np.argmax(batch.ts < horizon))
    i = int(np.searchsorted(np.cumsum(counts), n, "right"))
    name = f"data[{i}].data[{n - sum(counts[:i])}].x"
    raise NotKept.field(name, not_kept(horizon))


def commit_points(
    conn: Connection, batch: PointColumns, also: Callable[[Connection], None] | None = None
) -> int:
    """Write ``batch`` in ``conn``'s open transaction, run ``also`` in it, and commit; the
    number of points written. Nothing may have been written in the transaction before.

    On SQLite the write and its commit hold the process's write lock (``_writing``). On
    PostgreSQL the points are copied without a savepoint; a batch rewriting stored points
    (a unique violation) is rolled back and written again as an upsert."""
    with _writing(conn.engine):
        try:
            written = write_columns(conn, batch, rewrite=False)
        except UniqueViolation:
            conn.rollback()
            conn.begin()
            written = write_columns(conn, batch, rewrite=True)
        if also is not None:
            also(conn)
        conn.commit()
    return written


def _writing(engine: Engine) -> AbstractContextManager[object]:
    """SQLite writes one transaction at a time: a writer waiting for another here starts as
    soon as that one commits, where SQLite's own wait (``busy_timeout``) would poll in
    sleeps of growing length. PostgreSQL writers run side by side."""
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    with _LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(engine, threading.Lock())


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
