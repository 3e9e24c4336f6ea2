"""Short reads from the event loop on connections kept for them, outside SQLAlchemy.

A request that reads a few indexed rows (``/counter-data/``: the caller's token and a
meter's latest points) would spend most of its time around the query in SQLAlchemy (a pool
checkout, on PostgreSQL a ping and a rollback, the statement's cache key, result
processing) and in a hop to a worker thread. Here a read is one statement on a connection
the process keeps for such reads, run from the event loop:

- SQLite: one read-only connection (``query_only``), used in the event loop, where an
  indexed read of a few rows costs less than a thread hop would. Outside any transaction,
  so each statement sees every commit made before it (WAL: readers never wait on writers).
- PostgreSQL: up to ``CONNECTIONS`` connections in autocommit (no ``BEGIN``/``ROLLBACK``
  around a read, each statement sees every commit made before it), driven by libpq's
  non-blocking calls from the event loop, which serves other requests while a read waits.
  The reads of one statement asked for in the same turn of the event loop go to the server
  as one statement over their parameters (``unnest(...) WITH ORDINALITY`` joined to the
  statement, ``LATERAL``): one round trip and one execution for many requests, where the
  server's and the driver's costs per statement would otherwise exceed the request's own.
  Statements are prepared once per connection, with generic plans (a custom plan of the
  batched form would be planned anew at each execution). A read failing because its
  connection broke (the server restarted) is retried once on a new connection, as the
  pool's pre-ping would have hidden it.

Nothing read here is cached: each read is answered by a statement that starts after it was
asked for.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, cast

import psycopg
from psycopg import pq
from psycopg.errors import error_from_result
from sqlalchemy import Engine, PoolProxiedConnection, event

CONNECTIONS = 4
"""PostgreSQL connections a process keeps for short reads (each batch of reads holds one
for a round trip; more batches wait in the event loop)."""
MAX_BATCH = 256
"""Reads sent as one statement at most."""

Row = tuple[Any, ...]
Params = Sequence[str | None]


def text(value: bytes) -> str:
    return value.decode()


@dataclass(frozen=True, slots=True)
class Statement:
    """A read, its parameters written ``$1``, ``$2``... (PostgreSQL's form; SQLite reads them
    as ``?1``, ``?2``), all text, and how to read each column from PostgreSQL's text form
    (``int``, ``float``, ``text``); SQL ``NULL`` is ``None`` on both."""

    name: str
    sql: str
    columns: tuple[Callable[[bytes], Any], ...]
    sqlite_sql: str = field(init=False, repr=False)
    param_count: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sqlite_sql", re.sub(r"\$(\d+)", r"?\1", self.sql))
        numbers = [int(n) for n in re.findall(r"\$(\d+)", self.sql)]
        object.__setattr__(self, "param_count", max(numbers, default=0))


@cache
def batched(statement: Statement) -> Statement:
    """``statement`` over arrays of its parameters: each row is the reading's number (from 1)
    and a row of ``statement`` for that reading's parameters. The statement is planned as
    it stands and run once per reading (``OFFSET 0`` keeps the planner from merging it into
    a join over all the readings, which may scan a table where each reading seeks)."""
    numbers = range(1, statement.param_count + 1)
    arrays = ", ".join(f"CAST(${k} AS text[])" for k in numbers)
    names = "".join(f"p{k}, " for k in numbers)
    inner = re.sub(r"\$(\d+)", r"q.p\1", statement.sql)
    sql = (
        f"SELECT q.n, s.* FROM unnest({arrays}) WITH ORDINALITY AS q({names}n)"
        f" CROSS JOIN LATERAL (SELECT * FROM ({inner}) i OFFSET 0) s"
    )
    return Statement(f"{statement.name}_batch", sql, (int, *statement.columns))


def text_array(values: Sequence[str | None]) -> bytes:
    """PostgreSQL's text form of a ``text[]``."""
    items = (
        "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for v in values
    )
    return ("{" + ",".join(items) + "}").encode()


Pending = list[tuple[Params, "asyncio.Future[list[Row]]"]]


class ShortReads:
    """Short reads of one engine's database, from the event loop (see the module)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._sqlite_conn: tuple[PoolProxiedConnection, sqlite3.Connection] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(CONNECTIONS)
        self._idle: list[_Link] = []
        self._pending: dict[Statement, Pending] = {}
        self._batches: set[asyncio.Task[None]] = set()
        self._generation = 0
        event.listen(engine, "engine_disposed", self._disposed)

    async def fetch(self, statement: Statement, params: Params) -> list[Row]:
        """The rows of ``statement`` with ``params``."""
        if self._sqlite:
            return self._sqlite_connection().execute(statement.sqlite_sql, params).fetchall()
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests start one per client): new connections
            self.close()
            self._loop, self._slots, self._pending = loop, asyncio.Semaphore(CONNECTIONS), {}
        pending = self._pending.get(statement)
        if pending is None:  # the first read of this turn: the batch leaves at the next
            pending = self._pending[statement] = []
            loop.call_soon(self._send, statement)
        answer: asyncio.Future[list[Row]] = loop.create_future()
        pending.append((params, answer))
        return await answer

    def close(self) -> None:
        """Close the connections (idle ones; reads in flight close theirs when they end).
        A later read opens new ones."""
        if self._sqlite_conn is not None:
            raw, conn = self._sqlite_conn
            conn.close() if raw.driver_connection is None else raw.close()  # detached, or not
            self._sqlite_conn = None
        self._generation += 1  # no connection in use now is taken back
        while self._idle:
            self._idle.pop().close()

    def _disposed(self, _engine: Engine) -> None:
        self.close()

    def _sqlite_connection(self) -> sqlite3.Connection:
        if self._sqlite_conn is None:
            raw = self._engine.raw_connection()  # the engine's pragmas (busy timeout, WAL)
            conn = cast(sqlite3.Connection, raw.driver_connection)
            if self._engine.url.database not in (None, "", ":memory:"):  # else: shared
                raw.detach()  # ours alone, not a place in the pool
                conn.execute("PRAGMA query_only = ON")
            self._sqlite_conn = (raw, conn)
        return self._sqlite_conn[1]

    def _send(self, statement: Statement) -> None:
        pending = self._pending.pop(statement, [])
        loop = asyncio.get_running_loop()
        for start in range(0, len(pending), MAX_BATCH):
            batch = pending[start : start + MAX_BATCH]
            task = loop.create_task(self._answer(statement, batch))
            self._batches.add(task)  # a reference, until it ends
            task.add_done_callback(self._batches.discard)

    async def _answer(self, statement: Statement, batch: Pending) -> None:
        """Run ``batch``'s reads as one statement; answer each (or fail them all)."""
        try:
            arrays = [text_array([p[k] for p, _ in batch]) for k in range(statement.param_count)]
            async with self._slots:
                rows = await self._pg_fetch(batched(statement), arrays)
        except asyncio.CancelledError:
            for _, answer in batch:
                answer.cancel()
            raise
        except Exception as exc:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        found: dict[int, list[Row]] = {}
        for row in rows:
            found.setdefault(row[0], []).append(row[1:])
        for number, (_, answer) in enumerate(batch, 1):
            if not answer.done():  # not cancelled meanwhile
                answer.set_result(found.get(number, []))

    async def _pg_fetch(self, statement: Statement, params: Sequence[bytes | None]) -> list[Row]:
        loop = asyncio.get_running_loop()
        while True:
            reused = bool(self._idle)
            link = self._idle.pop() if reused else await self._connect(loop)
            try:
                rows = await link.fetch(statement, params)
            except psycopg.Error:
                if link.usable:  # the statement failed, the connection is fine
                    self._give_back(link)
                    raise
                link.close()
                if reused:  # broken while idle (a server restart): once more, anew
                    continue
                raise
            except BaseException:  # cancelled mid-read: the connection's state is unknown
                link.close()
                raise
            self._give_back(link)
            return rows

    def _give_back(self, link: _Link) -> None:
        if link.generation == self._generation and link.loop is self._loop:
            self._idle.append(link)
        else:  # closed meanwhile, or its loop is gone
            link.close()

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Link:
        dialect = self._engine.dialect
        args, kwargs = dialect.create_connect_args(self._engine.url)
        conn = await psycopg.AsyncConnection.connect(*args, **kwargs, autocommit=True)
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        return _Link(conn, loop, self._generation)


class _Link:
    """One PostgreSQL connection in autocommit, driven by libpq's non-blocking calls. Its
    socket stays registered with the event loop while it is open (registering it for each
    read would cost two more system calls a read)."""

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], loop: asyncio.AbstractEventLoop, generation: int
    ) -> None:
        self._conn = conn  # owns the libpq connection
        self._pgconn = conn.pgconn
        self._pgconn.nonblocking = 1
        self._encoding = conn.info.encoding
        self._fd = self._pgconn.socket
        self._prepared: set[bytes] = set()
        self._waiter: asyncio.Future[None] | None = None
        self.loop = loop
        self.generation = generation
        loop.add_reader(self._fd, self._readable)

    @property
    def usable(self) -> bool:
        pgconn = self._pgconn
        return (
            pgconn.status == pq.ConnStatus.OK
            and pgconn.transaction_status == pq.TransactionStatus.IDLE
        )

    def close(self) -> None:
        if self._fd >= 0 and not self.loop.is_closed():
            self.loop.remove_reader(self._fd)
        self._fd = -1
        self._pgconn.finish()

    async def fetch(self, statement: Statement, params: Sequence[bytes | None]) -> list[Row]:
        pgconn = self._pgconn
        name = statement.name.encode()
        if name not in self._prepared:
            pgconn.send_prepare(name, statement.sql.encode())
            await self._result(pq.ExecStatus.COMMAND_OK)
            self._prepared.add(name)
        pgconn.send_query_prepared(name, params)
        result = await self._result(pq.ExecStatus.TUPLES_OK)
        columns = list(enumerate(statement.columns))
        return [
            tuple(None if (v := result.get_value(r, c)) is None else read(v) for c, read in columns)
            for r in range(result.ntuples)
        ]

    async def _result(self, expected: pq.ExecStatus) -> pq.abc.PGresult:
        """The result of the statement just sent, once all of it has arrived."""
        pgconn = self._pgconn
        while pgconn.flush():  # the rest waits for room in the socket (rare: reads are small)
            await self._writable()
        found: pq.abc.PGresult | None = None
        while True:
            while pgconn.is_busy():
                self._waiter = self.loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                break
            if found is None or found.status == expected:
                found = result  # the first error stays
        if found is None:
            raise psycopg.OperationalError("no result from the server")
        if found.status != expected:
            raise error_from_result(found, self._encoding)
        return found

    def _readable(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
            return
        try:  # between reads: a notice, or the server closing (read, or the loop spins)
            self._pgconn.consume_input()
        except psycopg.Error:
            self.close()  # the next read on it fails at once, and is retried on a new one

    async def _writable(self) -> None:
        ready = self.loop.create_future()
        self.loop.add_writer(self._fd, _resolve, ready)
        try:
            await ready
        finally:
            self.loop.remove_writer(self._fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
