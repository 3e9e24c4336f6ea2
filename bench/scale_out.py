"""Polling and billing by Celery workers (``meterhub worker``) against the same work done
in-process, on PostgreSQL with the Redis broker (``--broker rabbitmq``: RabbitMQ).

Serves 56,001 simulated meters (ports 9000-65000), registers them once, and measures each
sweep on a fresh copy of that database:

1. the reference: one full sweep by the in-process collector (``sweep_once``) with 1, 2
   and 4 processes (2 is the reference);
2. the same sweep by one ``meterhub worker --concurrency N`` (N = 1, 2, 4): the shards of
   ``sweep_plan`` (``--shard-size`` meters) published with phased=False, timed from
   planning to the last meter's claim stored (a claim is written in the transaction of the
   poll's reading), and its ratio to the in-process sweep with as many processes;
3. a fault run: three workers of one process each, one killed (SIGKILL of its process
   group) once a third of the claims are stored, against the same sweep without a kill;
   each meter must have exactly one claim and one new register reading;
4. a monthly billing run of 100,000 devices (the estate of ``bench.billing``) in chunks
   (``start_run``, ``send_bill_chunk``) on 1 and 2 workers of one process, timed until the
   run is finished, against ``run_task`` in-process and against the same chunks billed
   one after another in this process (each on a fresh copy of the estate; a reference
   that fails is reported as such).

The meters hold the kernel's ephemeral ports, so the script re-runs itself in a private
network namespace with PostgreSQL and the brokers bridged in (``bench.netns``; needs root,
unshare and socat) and polls from 127.0.0.2. Every wait has a timeout (``--timeout``).
Usage: .venv/bin/python -m bench.scale_out [--broker rabbitmq] [--shard-size 1000]
    [--visibility-timeout 10] [--devices 100000] [--bill-chunk 5000] [--last 65000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from kombu import Queue
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from bench.billing import MONTH_1_END, MONTH_2_END, populate, timed_run
from bench.databases import scratch_postgres
from bench.netns import bridged, isolated
from bench.poll_sweep import Timing
from meterhub.billing.chunked import run_chunk, start_run
from meterhub.billing.runs import REGISTER_CHANNEL
from meterhub.billing.tables import billing_runs, bills
from meterhub.celery_app import app, configure, send_bill_chunk, send_shard
from meterhub.collector.intervals import mark_published, poll_claims, sweep_plan
from meterhub.collector.simulator import Simulator, SimulatorConfig
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.device_import import DeviceRow, RowNames, import_devices
from meterhub.settings import Settings
from meterhub.times import HOUR_US, now_us
from meterhub.workers import workers as worker_rows

BROKERS = {
    "redis": "redis://127.0.0.1:6379/2",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
}
SERVICES = (5432, 6379, 5672)
"""PostgreSQL, Redis and RabbitMQ on the host's 127.0.0.1, bridged into the namespace."""
SOURCE = "127.0.0.2"
POLL_TIMEOUT = 5.0
GOAL = 1.25
STEP = 0.1
"""Seconds between two looks at the database while waiting."""
PRUNE_MINUTES_US = 120_000_000
START_SECONDS = 60.0
STOP_SECONDS = 30.0


@dataclass(frozen=True)
class Bench:
    """What every measurement shares: the server, the broker and its queue, the options."""

    admin_url: str
    broker_url: str
    queue: str
    shard_size: int
    visibility_timeout: float
    timeout: float
    logs: Path

    def settings(self, database_url: str, **more: Any) -> Settings:
        values = {
            "database_url": database_url,
            "broker_url": self.broker_url,
            "broker_queue": self.queue,
            "broker_visibility_timeout": self.visibility_timeout,
            "source_address": SOURCE,
            "poll_timeout": POLL_TIMEOUT,
            "shard_size": self.shard_size,
            **more,
        }
        return Settings(**values)

    def env(self, settings: Settings) -> dict[str, str]:
        """``settings`` as the environment of a worker command."""
        given = settings.model_dump(exclude_unset=True, mode="json")
        return {f"METERHUB_{name.upper()}": str(value) for name, value in given.items()}


class Worker:
    """``meterhub worker`` as a separate command, in a process group of its own (a host)."""

    def __init__(self, name: str, processes: int, env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        command = [sys.executable, "-m", "meterhub.cli", "worker", "--name", name]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, "--concurrency", str(processes)],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.killed = False

    def check(self) -> None:
        """Raise with its log if it ended though nobody killed it."""
        if not self.killed and self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"worker {self.name} exited ({self.process.returncode}):\n{tail}")

    def cpu(self) -> float:
        """CPU seconds of the processes of its group (the worker and its pool) so far."""
        return 0.0 if self.killed else group_cpu(self.process.pid)

    def kill(self) -> None:
        """SIGKILL its whole process group, as a host dying."""
        self.killed = True
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_SECONDS)

    def stop(self) -> None:
        """A warm stop (SIGTERM: the task in hand is finished); SIGKILL after a while, and
        to whatever is left of its group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                print(f"  worker {self.name} did not stop in {STOP_SECONDS:.0f} s; killing it")
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_SECONDS)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) of the live processes of process group ``pgid``."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_until(done: Callable[[], bool], seconds: float, what: str, *workers: Worker) -> None:
    """Wait (at most ``seconds``) until ``done``; meanwhile a worker may not die."""
    deadline = time.monotonic() + seconds
    while not done():
        for worker in workers:
            worker.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {seconds:.0f} s")
        time.sleep(STEP)


@contextmanager
def database(bench: Bench, name: str, template: str) -> Iterator[tuple[str, Engine]]:
    """A fresh copy of the database ``template``, and an engine on it."""
    with scratch_postgres(bench.admin_url, name, template) as url:
        engine = make_engine(url)
        try:
            yield url, engine
        finally:
            engine.dispose()


@contextmanager
def running(
    bench: Bench, settings: Settings, engine: Engine, sizes: list[int]
) -> Iterator[list[Worker]]:
    """One worker command a size (its processes), all ready (their heartbeat stored), on
    the run's queue (emptied first); every one stopped at the end."""
    configure(app, settings)  # this process publishes with the workers' settings
    stale = purge_queue()
    if stale:
        print(f"  ({stale} stale tasks purged from {bench.queue})")
    env = bench.env(settings)
    started: list[Worker] = []
    try:
        for n, size in enumerate(sizes):
            started.append(
                Worker(f"w{n}", size, env, bench.logs / f"worker-{uuid.uuid4().hex[:6]}.log")
            )
        wait_until(
            lambda: _alive(engine) == len(sizes), START_SECONDS, "workers starting", *started
        )
        yield started
    finally:
        for worker in started:
            worker.stop()


def _alive(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(worker_rows)).scalar_one())


def purge_queue() -> int:
    """Declare the run's queue (as Celery does) and empty it: the tasks dropped."""
    queue: Queue = app.amqp.queues[app.conf.task_default_queue]
    with app.connection_for_write() as conn:
        bound = queue.bind(conn.default_channel)
        bound.declare()
        return int(bound.purge() or 0)


def drop_queue() -> None:
    """Delete the run's queue and its exchange from the broker (declared first: kombu
    deletes what the connection knows)."""
    queue: Queue = app.amqp.queues[app.conf.task_default_queue]
    with app.connection_for_write() as conn:
        bound = queue.bind(conn.default_channel)
        bound.declare()
        bound.delete()
        bound.exchange.delete()


class Check(NamedTuple):
    """Of the enabled meters: those without a claim of the sweep (when it claims) or
    without a new register reading, and those with more than one."""

    meters: int
    missing: int
    doubled: int

    def __str__(self) -> str:
        return f"{self.missing} missing, {self.doubled} doubled"


REGISTERS = " OR ".join(
    f"(d.type = '{kind.value}' AND t.channel = '{channel}')"
    for kind, channel in REGISTER_CHANNEL.items()
)
CHECK = text(f"""
WITH readings AS (
  SELECT t.device_pk, count(*) AS n FROM points p
  JOIN tags t ON t.id = p.tag_id JOIN devices d ON d.id = t.device_pk
  WHERE p.ts >= :since AND ({REGISTERS}) GROUP BY t.device_pk)
SELECT count(*),
  count(*) FILTER (WHERE (:claims AND c.device_pk IS NULL) OR coalesce(r.n, 0) = 0),
  count(*) FILTER (WHERE r.n > 1)
FROM devices d
LEFT JOIN poll_claims c ON c.device_pk = d.id AND c.interval_start = :at
LEFT JOIN readings r ON r.device_pk = d.id
WHERE d.enabled AND d.port IS NOT NULL
""")


def check(engine: Engine, since: int, at: int | None = None) -> Check:
    """How the meters came out of the sweep begun at ``since`` (claiming with key ``at``)."""
    params = {"since": since, "at": at or 0, "claims": at is not None}
    with engine.connect() as conn:
        return Check(*conn.execute(CHECK, params).one())


class Sweep(NamedTuple):
    timing: Timing
    check: Check
    killed: tuple[float, int] | None = None
    """When one worker was killed: seconds into the sweep, claims stored then."""


SWEEP = """
import json
from bench.poll_sweep import timed
from meterhub.collector.service import sweep_once
from meterhub.settings import Settings
timing, done = timed(lambda: sweep_once(Settings()))
print(json.dumps([timing.wall, timing.cpu, *done]))
"""
"""``sweep_once`` timed in a command of its own, on the settings of its environment: its
spawned processes then import the collector, not this module and all it imports."""


def in_process_sweep(bench: Bench, template: str, processes: int) -> Sweep:
    """``sweep_once`` with ``processes`` collector processes on a fresh copy."""
    with database(bench, f"scale_sweep_{processes}", template) as (url, engine):
        env = bench.env(bench.settings(url, collector_processes=processes))
        since = now_us()
        wall, cpu, *_ = json.loads(command([sys.executable, "-c", SWEEP], env, bench.timeout))
        return Sweep(Timing(wall, cpu), check(engine, since))


def command(argv: list[str], env: dict[str, str], timeout: float) -> str:
    """Run ``argv`` in a process group of its own (killed whole if it fails or takes
    longer than ``timeout``); its output."""
    child = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = child.communicate(timeout=timeout)
    finally:
        _signal_group(child.pid, signal.SIGKILL)
        child.wait(STOP_SECONDS)
    if child.returncode:
        raise RuntimeError(f"{argv[:2]} failed ({child.returncode}):\n{err[-4000:]}")
    return out


def celery_sweep(
    bench: Bench, template: str, meters: int, sizes: list[int], kill_at: float | None = None
) -> Sweep:
    """The sweep's shards published to worker commands of ``sizes`` processes, timed until
    every meter's claim is stored; with ``kill_at``, the second worker is killed once that
    share of the claims is stored."""
    name = f"scale_celery_{'_'.join(map(str, sizes))}{'_kill' if kill_at else ''}"
    with database(bench, name, template) as (url, engine):
        with running(bench, bench.settings(url), engine, sizes) as workers:
            cpu = sum(worker.cpu() for worker in workers)
            began, since = time.perf_counter(), now_us()
            # ``at`` keys the claims; kept out of an hour's first minutes, where each shard
            # done also folds the poll log (once-an-hour work, not part of a sweep)
            at = since + PRUNE_MINUTES_US if since % HOUR_US < PRUNE_MINUTES_US else since
            with engine.begin() as conn:
                shards = sweep_plan(conn, at, bench.shard_size)
                for shard in shards:
                    mark_published(conn, shard, now_us())
            expires = now_us() + round(bench.timeout * 1e6)
            for shard in shards:
                send_shard(shard, False, expires)
            killed = None
            deadline = time.monotonic() + bench.timeout
            while (stored := claims(engine, at)) < meters:
                if kill_at is not None and killed is None and stored >= kill_at * meters:
                    workers[1].kill()
                    killed = (time.perf_counter() - began, stored)
                for worker in workers:
                    worker.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{stored} of {meters} claims after {bench.timeout:.0f} s")
                time.sleep(STEP)
            wall = time.perf_counter() - began
            cpu = sum(worker.cpu() for worker in workers) - cpu
        return Sweep(Timing(wall, cpu), check(engine, since, at), killed)


def claims(engine: Engine, at: int) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(poll_claims.c.interval_start == at)
        return int(conn.execute(query).scalar_one())


def register(url: str, meters: list[tuple[int, int]]) -> float:
    """Register the simulated meters in one bulk import; its seconds."""
    rows = [
        DeviceRow(n, str(meter_id), {"host": "127.0.0.1", "port": port})
        for n, (meter_id, port) in enumerate(meters)
    ]
    engine = make_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        import_devices(conn, rows, names=RowNames("[{}]", "[{}].{}"), default_host="127.0.0.1")
    engine.dispose()
    return time.perf_counter() - started


def sweep_line(meters: int, timing: Timing) -> str:
    return f"{timing.wall:6.2f} s {meters / timing.wall:6.0f} polls/s  CPU {timing.cpu:5.1f} s"


def polling(bench: Bench, args: argparse.Namespace) -> None:
    ports = range(args.first, args.last + 1)
    with scratch_postgres(bench.admin_url, "scale_fleet") as fleet:
        upgrade(fleet)
        template = fleet.rsplit("/", 1)[1]
        started = time.perf_counter()
        with Simulator(SimulatorConfig(ports=ports)) as simulator:
            bound = time.perf_counter() - started
            registration = register(fleet, simulator.meters)
            meters = len(simulator.meters)
            shards = -(-meters // bench.shard_size)
            print(
                f"Polling {meters} simulated meters (ports {args.first}-{args.last}; bound in "
                f"{bound:.1f} s, registered in {registration:.1f} s) on PostgreSQL, broker "
                f"{bench.broker_url}; polls from {SOURCE}, timeout {POLL_TIMEOUT:g} s, 256 in "
                "flight a process; every sweep on a fresh copy of the registered database."
            )
            print(
                f"Celery: one `meterhub worker --concurrency N`, the sweep's {shards} shards of "
                f"{bench.shard_size} meters published with phased=False, timed from planning to "
                "the last claim stored. Ratio: Celery time / in-process time with the same "
                f"number of processes (goal <= {GOAL}x). Stored: meters without a claim (Celery)"
                " or a new kW reading, and with more than one."
            )
            print(f"  processes  {'in-process sweep_once':<37}{'Celery':<37}ratio")
            reference = None
            for processes in args.processes:
                local = in_process_sweep(bench, template, processes)
                remote = celery_sweep(bench, template, meters, [processes])
                reference = local if processes == 2 else reference
                ratio = remote.timing.wall / local.timing.wall
                print(
                    f"  {processes:>9}  {sweep_line(meters, local.timing):<37}"
                    f"{sweep_line(meters, remote.timing):<37}{ratio:.2f}x"
                    f" ({'met' if ratio <= GOAL else 'missed'})"
                )
                print(f"  {'stored':>9}  {local.check!s:<37}{remote.check}")
            if reference is not None:
                print(
                    f"Reference (in-process, 2 processes): {reference.timing.wall:.2f} s, "
                    f"{meters / reference.timing.wall:.0f} polls/s"
                )
            fault_run(bench, template, meters, args.kill_at)


def fault_run(bench: Bench, template: str, meters: int, kill_at: float) -> None:
    redelivery = (
        f"Redis visibility timeout {bench.visibility_timeout:g} s"
        if bench.broker_url.startswith("redis")
        else "RabbitMQ redelivers as the connection drops"
    )
    print(f"Fault run: 3 workers of 1 process each ({redelivery}):")
    calm = celery_sweep(bench, template, meters, [1, 1, 1])
    print(f"  without a kill: {sweep_line(meters, calm.timing)}; stored: {calm.check}")
    hit = celery_sweep(bench, template, meters, [1, 1, 1], kill_at)
    at, stored = hit.killed or (0.0, 0)
    print(
        f"  one worker killed (SIGKILL of its process group) {at:.2f} s in, {stored} of "
        f"{meters} claims stored: done in {hit.timing.wall:.2f} s, "
        f"{hit.timing.wall / calm.timing.wall:.2f}x the sweep without a kill "
        f"({hit.timing.wall - calm.timing.wall:+.2f} s); stored: {hit.check}"
    )


def billing(bench: Bench, devices: int, chunk: int) -> None:
    with scratch_postgres(bench.admin_url, "scale_estate") as estate:
        upgrade(estate)
        engine = make_engine(estate)
        started = time.perf_counter()
        task_key = populate(engine, devices)
        setup = time.perf_counter() - started
        first, _ = bill_in_chunks(engine, task_key, MONTH_1_END, chunk)
        engine.dispose()
        template = estate.rsplit("/", 1)[1]
        print(
            f"Billing {devices} devices with 61 daily readings (the estate of bench.billing, "
            f"built in {setup:.0f} s, its first month billed in {first:.1f} s): the monthly "
            "run (from the last bill), each on a fresh copy of the estate. Celery: start_run, "
            f"chunks of {chunk} devices sent with send_bill_chunk, timed until the run's "
            "finished_at is set. Ratio: Celery time / in-process time."
        )
        references: dict[str, tuple[float, tuple[Any, ...]]] = {}
        with database(bench, "scale_bill_task", template) as (_, engine):
            try:
                seconds, billed = timed_run(engine, task_key, MONTH_2_END)
            except DBAPIError as exc:
                print(
                    f"  in-process run_task (1 process): failed: {type(exc.orig).__name__}: "
                    f"{exc.orig}"
                )
            else:
                references["run_task"] = (seconds, bill_totals(engine, task_key))
                print(f"  in-process run_task (1 process): {seconds:6.2f} s, {billed} bills")
        with database(bench, "scale_bill_chunks", template) as (_, engine):
            seconds, chunks = bill_in_chunks(engine, task_key, MONTH_2_END, chunk)
            references["in-process chunks"] = (seconds, bill_totals(engine, task_key))
        print(
            f"  in-process, its {chunks} chunks one after another (start_run, run_chunk; 1 "
            f"process): {seconds:6.2f} s, {references['in-process chunks'][1][0]} bills"
        )
        for count in (1, 2):
            took, _, totals = celery_billing(bench, template, task_key, count, chunk)
            ratios = ", ".join(
                f"{took / local:.2f}x to {name}" for name, (local, _) in references.items()
            )
            same = all(totals == reference for _, reference in references.values())
            print(
                f"  Celery, {count} worker{'s' if count > 1 else ''} of 1 process: {took:6.2f} s, "
                f"ratio {ratios} ({count} process{'es' if count > 1 else ''} against 1); "
                f"bills (count, sums) {'equal' if same else f'differ: {totals}'}"
            )


def claimed_in_chunks(engine: Engine, task_key: str, end: int, chunk: int) -> tuple[int, list[int]]:
    """The run of ``task_key`` at ``end`` claimed and cut into chunks: the run and its chunks."""
    with engine.begin() as conn:
        started = start_run(conn, task_key, end, chunk)
    if started is None:
        raise RuntimeError("the run was claimed already")
    return started


def bill_in_chunks(engine: Engine, task_key: str, end: int, chunk: int) -> tuple[float, int]:
    """The run at ``end`` claimed and billed in chunks one after another, each in its own
    transaction as a worker bills it: its seconds and chunks."""
    began = time.perf_counter()
    run_id, chunks = claimed_in_chunks(engine, task_key, end, chunk)
    for number in chunks:
        with engine.begin() as conn:
            run_chunk(conn, run_id, number)
    return time.perf_counter() - began, len(chunks)


def celery_billing(
    bench: Bench, template: str, task_key: str, count: int, chunk: int
) -> tuple[float, int, tuple[Any, ...]]:
    """The monthly run claimed here and billed in chunks by ``count`` workers of one
    process, timed until it is finished: its seconds, chunks and bill totals."""
    with database(bench, f"scale_bill_{count}", template) as (url, engine):
        settings = bench.settings(url, bill_chunk_size=chunk)
        with running(bench, settings, engine, [1] * count) as workers:
            began = time.perf_counter()
            run_id, chunks = claimed_in_chunks(engine, task_key, MONTH_2_END, chunk)
            for number in chunks:
                send_bill_chunk(run_id, number)
            wait_until(lambda: finished(engine, run_id), bench.timeout, "billing", *workers)
            took = time.perf_counter() - began
        return took, len(chunks), bill_totals(engine, task_key)


def finished(engine: Engine, run_id: int) -> bool:
    with engine.connect() as conn:
        query = select(billing_runs.c.finished_at).where(billing_runs.c.id == run_id)
        return conn.execute(query).scalar_one() is not None


def bill_totals(engine: Engine, task_key: str) -> tuple[Any, ...]:
    """Count and sums of the bills of the monthly run."""
    query = select(func.count(), func.sum(bills.c.consumption), func.sum(bills.c.charge)).where(
        bills.c.task_key == task_key, bills.c.to_time == MONTH_2_END
    )
    with engine.connect() as conn:
        return tuple(conn.execute(query).one())


def main(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    broker = args.broker_url or BROKERS[args.broker]
    with tempfile.TemporaryDirectory(prefix="meterhub-scale-") as logs, bridged():
        bench = Bench(
            args.postgres,
            broker,
            f"meterhub-bench-{uuid.uuid4().hex[:8]}",
            args.shard_size,
            args.visibility_timeout,
            args.timeout,
            Path(logs),
        )
        configure(app, bench.settings(Settings(database_url=args.postgres).database_url))
        try:
            if not args.skip_polling:
                polling(bench, args)
            if args.devices:
                billing(bench, args.devices, args.bill_chunk)
        finally:
            try:
                drop_queue()
            except Exception as exc:  # the broker may be what failed
                print(f"could not delete the queue {bench.queue}: {exc}", file=sys.stderr)
            app.close()


def _processes(text: str) -> list[int]:
    return [int(n) for n in text.split(",")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=list(BROKERS), default="redis")
    parser.add_argument("--broker-url", help="instead of the --broker's default URL")
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--first", type=int, default=9000)
    parser.add_argument("--last", type=int, default=65000)
    parser.add_argument("--processes", type=_processes, default=[1, 2, 4], help="e.g. 1,2,4")
    parser.add_argument("--shard-size", type=int, default=1000, help="meters a polling task")
    parser.add_argument("--visibility-timeout", type=float, default=10.0, help="Redis, seconds")
    parser.add_argument("--kill-at", type=float, default=1 / 3, help="share of claims stored")
    parser.add_argument("--devices", type=int, default=100_000, help="billing; 0: no billing")
    parser.add_argument("--bill-chunk", type=int, default=5000, help="devices a billing task")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait, seconds")
    parser.add_argument("--skip-polling", action="store_true")
    parser.add_argument("--no-isolate", dest="isolate", action="store_false")
    options = parser.parse_args()
    if options.isolate:
        isolated(SERVICES)
    main(options)
