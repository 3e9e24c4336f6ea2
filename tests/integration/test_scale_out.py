"""Polling and billing by Celery workers over one PostgreSQL, with real brokers (Redis and
RabbitMQ) and real ``meterhub worker`` processes started as separate commands, as separate
hosts would run them, polling simulated meters.

The fault test kills one of three workers (its whole process group, as a host dying) in
the middle of an interval, starts it again, then stops the publishing server and starts
another: every meter still has exactly one reading in every interval, none missing, none
doubled.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

from meterhub.billing.chunked import EarlierRunPending, run_chunk, start_run
from meterhub.billing.runs import run_task
from meterhub.billing.tables import billing_runs, bills
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import create_device
from meterhub.registry.users import create_user
from meterhub.times import now_us
from tests.conftest import IN_CI, fresh_postgres
from tests.support import Server, billing_estate, simulator, wait_until

INTERVAL = 4.0
METERS = 40
BROKERS = {
    "redis": os.environ.get("METERHUB_TEST_REDIS", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("METERHUB_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//"),
}


def _broker_problem(url: str) -> str | None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        return f"broker {url} is unreachable: {exc}"
    return None


@pytest.fixture(params=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> str:
    url = BROKERS[request.param]
    problem = _broker_problem(url)
    if problem and IN_CI:
        pytest.fail(f"{problem} (CI=true requires it)")
    if problem:
        pytest.skip(f"{problem}; set CI=true to make this an error")
    return url


@pytest.fixture
def pg_url(postgres_admin: str) -> Iterator[str]:
    for url in fresh_postgres(postgres_admin):
        upgrade(url)
        yield url


@dataclass
class Site:
    """The shared settings of one test's servers and workers (a queue of its own)."""

    database_url: str
    broker_url: str
    tmp: Path
    queue: str = field(default_factory=lambda: f"meterhub-test-{uuid.uuid4().hex[:8]}")

    @property
    def env(self) -> dict[str, str]:
        return {
            "METERHUB_DATABASE_URL": self.database_url,
            "METERHUB_BROKER_URL": self.broker_url,
            "METERHUB_BROKER_QUEUE": self.queue,
            "METERHUB_POLL_INTERVAL": str(INTERVAL),
            "METERHUB_POLL_TIMEOUT": "0.5",
            "METERHUB_SHARD_SIZE": "5",
            "METERHUB_SHARD_SECONDS": "0.5",
            "METERHUB_BROKER_VISIBILITY_TIMEOUT": "1.5",
            "METERHUB_WORKER_HEARTBEAT": "0.5",
            "METERHUB_LEADER_RETRY": "0.5",
            "METERHUB_WRITE_FLUSH_INTERVAL": "0.2",
        }

    def server(self) -> Server:
        return Server(self.database_url, self.tmp, **self.env)

    def worker(self, name: str) -> Worker:
        return Worker(name, self.env, self.tmp / f"worker-{name}.log")


class Worker:
    """``meterhub worker`` in a process group of its own (a host: killed whole)."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        command = [sys.executable, "-m", "meterhub.cli", "worker", "--name", name]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, "--concurrency", "1"],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:  # a warm stop: the tasks in hand are finished
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _register(engine: Engine, ports: range) -> None:
    with engine.begin() as conn:
        for port in ports:
            create_device(conn, str(port), DeviceType.ELECTRICITY, host="127.0.0.1", port=port)


def _unclaimed(engine: Engine, first: int, last: int) -> dict[int, list[int]]:
    """For each interval from ``first`` to ``last``, the meters not polled in it (a poll is
    stored with its claim of the meter in the interval, at most one by the table's key)."""
    length = round(INTERVAL * 1e6)
    with engine.connect() as conn:
        meters = set(conn.execute(text("SELECT id FROM devices")).scalars())
        query = text("SELECT interval_start, device_pk FROM poll_claims")
        claimed: dict[int, set[int]] = {}
        for start, device in conn.execute(query):
            claimed.setdefault(start, set()).add(device)
    missing = {s: sorted(meters - claimed.get(s, set())) for s in range(first, last + 1, length)}
    return {start: pks for start, pks in missing.items() if pks}


def _readings_unlike_claims(engine: Engine) -> dict[int, tuple[int, int]]:
    """Meters whose register readings are not as many as their claims: (readings, claims).
    Every poll a worker stores is one reading with one claim (of the meter in its interval,
    one at most by the table's key), so a reading stored twice shows here."""
    query = text(
        "SELECT d.id, (SELECT count(*) FROM points p JOIN tags t ON t.id = p.tag_id "
        "WHERE t.device_pk = d.id AND t.channel = 'kW'), "
        "(SELECT count(*) FROM poll_claims c WHERE c.device_pk = d.id) FROM devices d"
    )
    with engine.connect() as conn:
        counts = {device: (readings, claims) for device, readings, claims in conn.execute(query)}
    return {device: pair for device, pair in counts.items() if pair[0] != pair[1]}


def _wait_for_interval_offset(offset: float) -> int:
    """Sleep until ``offset`` seconds into the next interval; that interval's start."""
    length = round(INTERVAL * 1e6)
    now = now_us()
    start = now - now % length + length
    time.sleep(max(0.0, (start + offset * 1e6 - now) / 1e6))
    return start


@pytest.mark.postgres
def test_workers_poll_each_meter_once_an_interval_whatever_dies(
    pg_url: str, broker: str, tmp_path: Path
) -> None:
    site = Site(pg_url, broker, tmp_path)
    engine = make_engine(pg_url)
    workers: list[Worker] = []
    with simulator(METERS) as sim, site.server() as standby:
        _register(engine, sim.config.ports)
        leader = site.server()
        leader.start()
        try:
            with standby.client() as client:
                idle = client.get("/api/v1/workers/health")
            assert (idle.status_code, idle.json()) == (503, {"status": "no-worker", "alive": 0})
            workers = [site.worker(f"w{n}") for n in range(3)]
            wait_until(lambda: _alive(standby) == 3, 60)
            first = _wait_for_interval_offset(0.0)
            # one of three dies early in an interval (Redis hands its task out again after
            # the visibility timeout, within the interval), and comes back later
            _wait_for_interval_offset(INTERVAL * 0.2)
            workers[1].kill()
            _wait_for_interval_offset(0.0)
            workers[1] = site.worker("w1")
            # the publishing server stops in the middle of an interval; the standby takes over
            _wait_for_interval_offset(INTERVAL * 0.3)
            leader.stop()
            _wait_for_interval_offset(0.0)
            last = _wait_for_interval_offset(0.0)
            _wait_for_interval_offset(INTERVAL * 0.9)
            with standby.client() as client:
                health = client.get("/api/v1/workers/health")
                listed = client.get("/api/v1/workers/").json()
            with httpx.Client(base_url=standby.url) as browser:
                with engine.begin() as conn:
                    create_user(conn, "operator", "correct horse", is_admin=True)
                browser.post("/login", data={"username": "operator", "password": "correct horse"})
                overview = browser.get("/").text
        finally:
            for worker in workers:
                worker.stop()
            leader.__exit__()
    try:
        unclaimed = _unclaimed(engine, first, last)
        doubled = _readings_unlike_claims(engine)
    finally:
        engine.dispose()
    assert not unclaimed, f"meters not polled, by interval: {unclaimed}"
    assert not doubled, f"readings against claims, by meter: {doubled}"
    assert health.status_code == 200, health.text
    assert "workers" in listed, listed
    assert {worker["name"].split("@")[-1] for worker in listed["workers"]} == {"w0", "w1", "w2"}
    assert all(worker["alive"] for worker in listed["workers"])
    assert listed["interval"]["shards"] > 1
    assert '<h2 id="workers">Workers</h2>' in overview
    assert all(f"celery@w{n}</td>" in overview for n in range(3)), overview


def _alive(server: Server) -> int:
    with server.client() as client:
        return int(client.get("/api/v1/workers/health").json()["alive"])


@pytest.mark.postgres
def test_billing_runs_in_chunks_on_workers_as_one_run(
    pg_url: str, broker: str, tmp_path: Path
) -> None:
    """A due task is billed in chunks by two workers; a chunk sent twice bills once; bills
    equal those of a run in one piece of the same devices."""
    site = Site(pg_url, broker, tmp_path)
    engine = make_engine(pg_url)
    day = 86_400_000_000
    month_start = now_us() - now_us() % day - 40 * day

    def readings(i: int) -> list[tuple[int, float]]:
        return [(month_start + d * day, 100.0 + i + d * (1 + i % 7) * 0.5) for d in range(40)]

    key = billing_estate(engine, 23, readings)
    with engine.begin() as conn:  # created before the readings began: its fires are due
        created = {"created": month_start}
        conn.execute(text("UPDATE billing_tasks SET create_time = :created"), created)
    env = {**site.env, "METERHUB_BILL_CHUNK_SIZE": "4", "METERHUB_SCHEDULER_INTERVAL": "0.5"}
    workers = [Worker(f"b{n}", env, tmp_path / f"b{n}.log") for n in range(2)]
    try:
        with Server(pg_url, tmp_path, **env):
            wait_until(lambda: _runs(engine, key) == (True, True), 60)
    finally:
        for worker in workers:
            worker.stop()
    bill = select(bills.c.device_pk, bills.c.to_time, bills.c.consumption, bills.c.charge)
    with engine.begin() as conn:
        runs = conn.execute(
            select(billing_runs)
            .where(billing_runs.c.task_key == key)
            .order_by(billing_runs.c.scheduled_at)
        ).all()
        chunked = conn.execute(bill.where(bills.c.task_key == key)).all()
        for run in runs:  # one record per run, its counts those of its chunks
            billed = conn.execute(select(func.count()).where(bills.c.run_id == run.id))
            assert billed.scalar_one() == run.billed, json.loads(run.skipped)
        # a chunk sent again after it was done bills nothing
        assert run_chunk(conn, runs[0].id, 0) == (0, 0)
        # the same runs in one piece each, as a reference
        conn.execute(bills.delete())
        conn.execute(text("DELETE FROM billing_run_chunks"))
        conn.execute(billing_runs.delete())
        for run in runs:
            run_task(conn, key, run.scheduled_at)
        reference = conn.execute(bill.where(bills.c.task_key == key)).all()
    engine.dispose()
    assert sorted(chunked) == sorted(reference)
    assert len({row.device_pk for row in reference}) == 23


def _runs(engine: Engine, key: str) -> tuple[bool, bool]:
    """Whether the task has runs, and whether all of them are finished."""
    with engine.connect() as conn:
        query = select(func.count(), func.count(billing_runs.c.finished_at)).where(
            billing_runs.c.task_key == key
        )
        runs, finished = conn.execute(query).one()
    return runs > 0, runs == finished


def test_sqlite_with_workers_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "METERHUB_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    env["METERHUB_BROKER_URL"] = "redis://127.0.0.1:6379/0"
    command = [sys.executable, "-m", "meterhub.cli", "worker"]
    done = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode != 0
    assert b"PostgreSQL" in done.stderr, done.stderr


def test_a_chunk_waits_while_an_earlier_run_of_its_task_bills(database_url: str) -> None:
    """Two runs of one task sent out together (fires caught up): a chunk of the later run
    waits for the earlier run, so its periods begin where the earlier bills end."""
    engine = make_engine(database_url)
    day = 86_400_000_000
    nov, dec = 1_793_491_200_000_000, 1_796_083_200_000_000  # 2026-11-01, 2026-12-01 UTC
    key = billing_estate(
        engine, 6, lambda i: [(nov - 5 * day + d * day, 10.0 * d + i) for d in range(40)]
    )
    with engine.begin() as conn:
        first, later = start_run(conn, key, nov, 4), start_run(conn, key, dec, 4)
    assert first is not None
    assert later is not None
    with engine.begin() as conn, pytest.raises(EarlierRunPending):
        run_chunk(conn, later[0], 0)
    for run_id, chunks in (first, later):
        for chunk in chunks:
            with engine.begin() as conn:
                run_chunk(conn, run_id, chunk)
    with engine.connect() as conn:
        periods = conn.execute(
            select(bills.c.device_pk, bills.c.from_time, bills.c.to_time).order_by(
                bills.c.device_pk, bills.c.to_time
            )
        ).all()
    engine.dispose()
    assert [(p.from_time == nov - 5 * day, p.to_time) for p in periods[::2]] == [(True, nov)] * 6
    assert [(p.from_time, p.to_time) for p in periods[1::2]] == [(nov, dec)] * 6


def test_a_poll_whose_meter_another_run_stored_in_the_interval_is_dropped(
    database_url: str,
) -> None:
    """Two runs of one shard (a task handed out twice): the second's polls of meters the
    first already stored in the interval are not stored; its others are, with their claims."""
    from meterhub.collector.health import Health, succeeded
    from meterhub.collector.intervals import claim, claimed
    from meterhub.collector.writer import BatchWriter
    from meterhub.storage import Point

    engine = make_engine(database_url)
    with engine.begin() as conn:
        pks = [
            create_device(conn, f"m{n}", DeviceType.ELECTRICITY, host="127.0.0.1", port=9000 + n).pk
            for n in range(2)
        ]
        tags_of: dict[int, list[int]] = {pk: [] for pk in pks}
        for tag_id, pk in conn.execute(text("SELECT id, device_pk FROM tags")):
            tags_of[pk].append(tag_id)
        claim(conn, 60_000_000, [pks[0]])  # the first run stored meter 0
    writer = BatchWriter(engine, 5000, 0.1, 7.0, claims=60_000_000)
    for pk in pks:
        health = succeeded(Health(), f"m{pk}", 61_000_000, 5.0)
        writer.add(pk, health, [Point(tag, 61_000_000, 1.0) for tag in tags_of[pk]])

    async def write() -> None:
        running = asyncio.create_task(writer.run())
        await writer.close()
        await running

    asyncio.run(write())
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT t.device_pk FROM points p JOIN tags t ON t.id = p.tag_id")
        )
        owners = set(stored.scalars())
        assert claimed(conn, 60_000_000, pks) == set(pks)
    engine.dispose()
    assert owners == {pks[1]}
