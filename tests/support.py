"""Helpers for tests that run the real server and real simulated meters."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import httpx
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.exc import OperationalError

from meterhub.billing.tables import billing_runs
from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tasks import create_task
from meterhub.collector.simulator import Faults, Simulator, SimulatorConfig
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import create_project
from meterhub.registry.tables import devices as meters
from meterhub.registry.tables import houses, tags
from meterhub.registry.users import create_user, issue_token
from meterhub.storage import Point, write_points


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _block_is_free(ports: range) -> bool:
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_block(size: int, first: int = 20000) -> range:
    """A run of ``size`` consecutive free ports within the meters' 9000-65000."""
    start = first + (os.getpid() % 50) * 100
    while start + size <= 32000:
        block = range(start, start + size)
        if _block_is_free(block):
            return block
        start += size
    raise RuntimeError("no free port block")


SimulatorT = TypeVar("SimulatorT", bound=Simulator)


@contextmanager
def simulator(
    size: int, faults: Faults | None = None, record: Path | None = None
) -> Iterator[Simulator]:
    """Real simulated meters on a free block; ids equal ports."""
    with started(
        lambda: Simulator(
            SimulatorConfig(
                ports=free_port_block(size), seed=7, faults=faults or Faults(), record=record
            )
        )
    ) as sim:
        yield sim


@contextmanager
def started(make: Callable[[], SimulatorT]) -> Iterator[SimulatorT]:
    """A simulator ``make`` gives, started; made again (on other free ports) when a port it
    chose was taken meanwhile."""
    for _attempt in range(5):
        sim = make()
        try:
            sim.start()
        except RuntimeError:
            continue
        try:
            yield sim
        finally:
            sim.stop()
        return
    raise RuntimeError("could not start the simulator")


class Server:
    """``meterhub serve`` in a subprocess, on a free port."""

    def __init__(self, database_url: str, tmp: Path, **env: str) -> None:
        self.port = 0  # chosen by the server itself: no other process can take it first
        self.url = ""
        self._flags: list[str] = []
        self.log = tmp / f"server-{uuid.uuid4().hex[:8]}.log"
        self._env = {
            **os.environ,
            "METERHUB_DATABASE_URL": database_url,
            "METERHUB_POLL_INTERVAL": "1",
            "METERHUB_POLL_TIMEOUT": "0.5",
            "METERHUB_WRITE_FLUSH_INTERVAL": "0.2",
            **env,
        }
        self._process: subprocess.Popen[bytes] | None = None
        self.token = ""

    def start(self) -> None:
        upgrade(self._env["METERHUB_DATABASE_URL"])
        self.token = admin_token(self._env["METERHUB_DATABASE_URL"])
        command = [sys.executable, "-m", "meterhub.cli", "serve", "--port", "0"]
        command += self._flags
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(
                command, env=self._env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            # printed once every worker accepts connections
            found = re.search(
                r"^meterhub serving on http://127\.0\.0\.1:(\d+)", self.log.read_text(), re.M
            )
            if found:
                self.port = int(found.group(1))
                self.url = f"http://127.0.0.1:{self.port}"
                return
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def verbose(self) -> Server:
        """Serve with ``--verbose``: migrations, startup and every request in ``log``."""
        self._flags.append("--verbose")
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def wait(self, timeout: float) -> int:
        """The exit code, once the server has ended by itself."""
        assert self._process is not None
        return self._process.wait(timeout=timeout)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def client(self) -> httpx.Client:
        """An HTTP client of this server, authenticated as an administrator."""
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=10)

    def kill(self) -> None:
        """SIGKILL, as a power cut or the kernel's OOM killer would."""
        assert self._process is not None
        self._process.kill()
        assert self._process.wait(timeout=30) == -signal.SIGKILL  # it was still running

    def stop(self) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)
        try:
            return self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            raise

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process and self._process.poll() is None:
            self.stop()


def admin_token(database_url: str) -> str:
    """A token of a new administrator in the (migrated) database."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        user = create_user(conn, f"admin-{uuid.uuid4().hex[:8]}", "correct horse", is_admin=True)
        token = issue_token(conn, user.id)
    engine.dispose()
    return token


def billing_estate(
    engine: Engine, devices: int, readings: Callable[[int], list[tuple[int, float]]]
) -> str:
    """``devices`` electricity meters (ids 1..devices, not polled), one house each, their
    register readings ``readings(id)`` as ``(µs, kWh)``, a tiered tariff and a monthly
    billing task; returns the task's key."""
    with engine.begin() as conn:
        project = create_project(conn, "Estate", "UTC", "EUR")
        tiers = [(Decimal(10), Decimal("0.3")), (None, Decimal("0.45"))]
        set_tariff(conn, project.id, DeviceType.ELECTRICITY, Tariff.tiered(tiers, Decimal(2)))
        monthly = {"month": "*", "day": "1", "hour": "0", "minute": "0"}
        task = create_task(conn, project.id, "monthly", DeviceType.ELECTRICITY, monthly)
        address = json.dumps(["E", "", "", "", ""])
        ids = range(1, devices + 1)
        conn.execute(
            insert(houses),
            [{"id": i, "project_id": project.id, "address": address, "created_at": 0} for i in ids],
        )
        conn.execute(
            insert(meters),
            [
                {"id": i, "device_id": f"e{i}", "type": "electricity", "enabled": False}
                | {"created_at": 0, "house_id": i}
                for i in ids
            ],
        )
        conn.execute(
            insert(tags),
            [
                {"id": i, "key": f"e{i}.kW", "device_pk": i, "channel": "kW"}
                | {"kind": "register", "unit": "kWh", "created_at": 0}
                for i in ids
            ],
        )
        write_points(conn, [Point(i, ts, kwh) for i in ids for ts, kwh in readings(i)])
        if conn.dialect.name == "postgresql":  # the sequences go on after the ids given
            for table in ("houses", "devices", "tags"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
    return task.key


class _Probe(Exception):
    """Rolls the probe's own insert back."""


def claim_probe(database_url: str) -> Engine:
    """An engine for ``run_holds_its_claim``: it never waits for a lock."""
    return create_engine(
        database_url, connect_args={"timeout": 0} if "sqlite" in database_url else {}
    )


def run_holds_its_claim(probe: Engine, key: str, at: int) -> bool:
    """Whether a billing run's transaction has claimed (task ``key``, period end ``at``) and
    not committed yet: the probe tries to claim the same period without waiting (a lock
    error: the run holds it; success: it has not claimed yet, and the probe rolls back)."""
    try:
        with probe.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL lock_timeout = '20ms'"))
            row = {"task_key": key, "scheduled_at": at, "started_at": 0, "billed": 0}
            conn.execute(insert(billing_runs).values(**row, skipped="[]"))
            raise _Probe
    except _Probe:
        return False
    except OperationalError:  # SQLite: locked; PostgreSQL: lock timeout
        return True


def wait_until(predicate: object, timeout: float, interval: float = 0.2) -> None:
    """Poll ``predicate()`` until true or fail after ``timeout`` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
