"""A real collector against simulated meters, some faulty: its poll log and cycle counts."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from sqlalchemy import Engine, func, select

from meterhub.collector.cycles import CycleMode, CycleStats, latest_cycles, save_cycle
from meterhub.collector.health_store import meter_status
from meterhub.collector.poll_log import poll_log
from meterhub.collector.service import SweepResult, run_shard
from meterhub.collector.simulator import Faults, Simulator
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import create_device
from meterhub.settings import Settings
from tests.support import simulator

INTERVAL = 0.5
FAULTS = Faults(timeout=0.2, garbage=0.2, wrong_id=0.1)
CHANNELS = 2  # an electricity meter reads A and kW


def register(engine: Engine, sim: Simulator) -> None:
    with engine.begin() as conn:
        for meter_id, port in sim.meters:
            create_device(conn, str(meter_id), DeviceType.ELECTRICITY, host="127.0.0.1", port=port)


def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        poll_interval=INTERVAL,
        poll_timeout=0.2,
        poll_max_backoff=INTERVAL,  # failing meters are retried every interval
        write_flush_interval=0.1,
    )


async def run_for(config: Settings, seconds: float) -> SweepResult:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return await run_shard(config, 0, 1, stop)


def test_run_logs_every_poll_and_counts_each_interval(database_url: str, engine: Engine) -> None:
    with simulator(12, faults=FAULTS) as sim:
        register(engine, sim)
        result = asyncio.run(run_for(settings(database_url), 2.3))

    with engine.connect() as conn:
        status = {row.device_pk: row for row in conn.execute(select(meter_status))}
        logged = conn.execute(select(poll_log)).all()
        [stats] = latest_cycles(conn)

    assert len(status) == 12
    polls = Counter(row.device_pk for row in logged)
    failures = Counter(row.device_pk for row in logged if not row.ok)
    for pk, health in status.items():
        assert (polls[pk], failures[pk]) == (health.polls, health.failures)
        last = max((row for row in logged if row.device_pk == pk), key=lambda row: row.ts)
        assert (last.ts, last.duration_ms) == (health.last_attempt, health.last_duration_ms)
        assert last.ok == (health.status == "online")
    assert all((row.error is None) == row.ok for row in logged)  # no reset fault: no warnings
    assert sum(failures.values()) == result.failed > 0
    assert len(logged) - sum(failures.values()) == result.polled > 0

    window = round(INTERVAL * 1e6)
    in_window = [row for row in logged if stats.started_at <= row.ts < stats.started_at + window]
    assert (stats.shard, stats.shards, stats.mode) == (0, 1, CycleMode.RUN)
    assert stats.polls == len(in_window) == stats.readings + stats.failures
    assert stats.failures == sum(not row.ok for row in in_window) > 0
    assert stats.points == CHANNELS * stats.readings > 0
    # a slot released late (a busy machine) can share a window with the meter's next slot
    assert 0 < stats.due <= 2 * 12
    assert 0 < stats.duration_s <= INTERVAL
    assert stats.started_at + window <= stats.updated_at < stats.started_at + 2 * window


def test_sweep_counts_the_whole_pass_per_shard(database_url: str, engine: Engine) -> None:
    stale = CycleStats(2, 3, CycleMode.RUN, 1, 1.0, 5, 5, 0, 5, 10, 2)
    with engine.begin() as conn:
        save_cycle(conn, stale)  # left by an earlier run with three shards
    config = settings(database_url)

    async def sweep_two_shards() -> list[SweepResult]:
        return await asyncio.gather(*(run_shard(config, shard, 2, None) for shard in (0, 1)))

    with simulator(10, faults=FAULTS) as sim:
        register(engine, sim)
        began = time.monotonic()
        results = asyncio.run(sweep_two_shards())
        took = time.monotonic() - began

    with engine.connect() as conn:
        cycles = latest_cycles(conn)
        logged = conn.execute(select(func.count()).select_from(poll_log)).scalar_one()

    assert cycles[2] == stale
    current = [c for c in cycles if c.shards == 2]
    assert [c.shard for c in current] == [0, 1]
    for stats, result in zip(current, results, strict=True):
        assert stats.mode is CycleMode.SWEEP
        assert stats.due == stats.polls == result.polled + result.failed
        assert (stats.readings, stats.failures) == (result.polled, result.failed)
        assert stats.points == result.points_written == CHANNELS * stats.readings
        assert 0 < stats.duration_s <= took
    assert sum(c.due for c in current) == logged == 10
