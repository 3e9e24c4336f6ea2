"""One leader among the servers sharing a database: on PostgreSQL, whoever holds a
session-level advisory lock; on SQLite (one server by design), the server itself.

The leader publishes the polling tasks, fires billing tasks and compacts. The lock lives
with its connection: a leader that stops, crashes or is killed frees it as its connection
closes, and another server takes it on its next try (every ``retry`` seconds). The session
asks PostgreSQL to probe its socket with TCP keepalives, so a leader whose host vanished
without closing the socket is dropped within about ``retry`` seconds too. A leader whose
own connection fails stops leading at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from meterhub.aio import wait_for_event

log = logging.getLogger("meterhub.leadership")

LOCK_KEY = 0x6D65_7465_7268_7562  # "meterhub": one key for every server of a database
"""The advisory lock's key (a 64-bit integer)."""

Duties = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""What the leader does until the event is set (stop, or leadership lost)."""


async def lead(database_url: str, duties: Duties, stop: asyncio.Event, retry: float = 5.0) -> None:
    """Run ``duties`` whenever this process leads, until ``stop``."""
    if database_url.startswith("sqlite"):
        await duties(stop)
        return
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        while not stop.is_set():
            conn = await asyncio.to_thread(_try_lock, engine, retry)
            if conn is None:
                await wait_for_event(stop, retry)
                continue
            log.info("leading: polls published, billing fired, compaction, MQTT subscriptions")
            try:
                await _while_held(conn, duties, stop, retry)
            finally:
                await asyncio.to_thread(_release, conn)
    finally:
        engine.dispose()


def _try_lock(engine: Engine, retry: float) -> Connection | None:
    """A connection holding the lock, or ``None`` (another server holds it, or no server)."""
    try:
        conn = engine.connect()
    except Exception as exc:  # the database is away: try again later
        log.warning("cannot reach the database to lead: %s", exc)
        return None
    try:
        probe = max(1, round(retry / 3))
        conn.exec_driver_sql(f"SET tcp_keepalives_idle = {probe}")
        conn.exec_driver_sql(f"SET tcp_keepalives_interval = {probe}")
        conn.exec_driver_sql("SET tcp_keepalives_count = 3")
        held = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _signed(LOCK_KEY)})
        got = bool(held.scalar())
        conn.commit()
    except Exception:
        conn.close()
        raise
    if not got:
        conn.close()
        return None
    return conn


async def _while_held(conn: Connection, duties: Duties, stop: asyncio.Event, retry: float) -> None:
    """Run ``duties`` until ``stop``, or until the lock's connection stops answering."""
    done = asyncio.Event()
    working = asyncio.create_task(duties(done))
    try:
        while not await wait_for_event(stop, retry):
            if working.done() or not await asyncio.to_thread(_alive, conn):
                break
    finally:
        if not working.done() and not stop.is_set():  # the connection stopped answering
            log.error("lost the leader's lock connection; stepping down")
        done.set()
        await working


def _alive(conn: Connection) -> bool:
    try:
        conn.exec_driver_sql("SELECT 1")
        conn.commit()
    except Exception:
        return False
    return True


def _release(conn: Connection) -> None:
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _signed(LOCK_KEY)})
        conn.commit()
    except Exception:  # the connection is gone: so is the lock
        pass
    finally:
        conn.close()


def _signed(key: int) -> int:
    """``key`` as PostgreSQL's signed bigint."""
    return key - (1 << 64) if key >= 1 << 63 else key
