"""A sweep of 10,000 simulated Modbus meters by the collector, against a plain pymodbus loop.

Two layouts: 100 gateways x 100 unit ids, and 10,000 single-meter gateways (SDM120 maps,
pymodbus servers from ``meterhub simulate --modbus``'s simulator). For each, the meters
are registered in a fresh SQLite database, then the run times `sweep_once` (the
collector: drivers, lanes, decoding, batched writes) and, in the same run, a plain
pymodbus loop (one AsyncModbusTcpClient per gateway, 256 gateways at a time, each unit's
registers read in the same requests, values decoded but not stored). Prints both and the
ratio.

The gateways listen on ports 10000-19999, below the kernel's ephemeral range, and every
client binds 127.0.0.2 as its source address (as a real run beside ephemeral ports must).
Usage: .venv/bin/python -m bench.modbus_sweep [--first 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

from meterhub.api.meter_rows import import_csv
from meterhub.collector.modbus_simulator import ModbusSimulator, ModbusSimulatorConfig
from meterhub.collector.registers import model_values, plan_reads
from meterhub.collector.service import sweep_once
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.settings import Settings

CONCURRENCY = 256
SOURCE = "127.0.0.2"
LAYOUTS = ((100, 100), (10_000, 1))


async def pymodbus_sweep(sim: ModbusSimulator) -> tuple[int, int]:
    """Every unit of every gateway read once by plain pymodbus clients: (ok, failed)."""
    model = sim.config.meter_model()
    blocks = plan_reads(model)
    by_port: dict[int, list[int]] = {}
    for _meter, port, unit in sim.units:
        by_port.setdefault(port, []).append(unit)
    gate = asyncio.Semaphore(CONCURRENCY)
    counts = [0, 0]

    async def gateway(port: int, units: list[int]) -> None:
        async with gate:
            client = AsyncModbusTcpClient(
                sim.config.host,
                port=port,
                source_address=(SOURCE, 0),
                retries=0,
                reconnect_delay=0,
                timeout=5,
            )
            try:
                if not await client.connect():
                    counts[1] += len(units)
                    return
                for unit in units:
                    answers = {}
                    for block in blocks:
                        response = await client.read_input_registers(
                            block.address, count=block.count, device_id=unit
                        )
                        answers[block] = response.registers
                    model_values(model, blocks, answers)
                    counts[0] += 1
            finally:
                client.close()

    await asyncio.gather(*(gateway(port, units) for port, units in by_port.items()))
    return counts[0], counts[1]


def run_layout(first: int, gateways: int, units: int, workdir: Path) -> None:
    config = ModbusSimulatorConfig(ports=range(first, first + gateways), units=units, seed=1)
    began = time.perf_counter()
    with ModbusSimulator(config) as sim:
        started = time.perf_counter() - began
        url = f"sqlite:///{workdir / f'modbus-{gateways}x{units}.db'}"
        upgrade(url)
        settings = Settings(database_url=url, source_address=SOURCE, poll_timeout=5)
        engine = make_engine(url)
        with engine.begin() as conn:
            import_csv(conn, sim.meters_csv().encode(), settings, bounded=False)
        engine.dispose()
        meters = len(sim.units)
        t0 = time.perf_counter()
        result = sweep_once(settings)
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ok, failed = asyncio.run(pymodbus_sweep(sim))
        plain = time.perf_counter() - t0
    print(
        f"{gateways} gateways x {units} units ({meters} meters; simulator up in {started:.1f} s)\n"
        f"  collector sweep : {ours:6.2f} s  {meters / ours:8.0f} polls/s  "
        f"({result.polled} read, {result.failed} failed, {result.points_written} points stored)\n"
        f"  plain pymodbus  : {plain:6.2f} s  {meters / plain:8.0f} polls/s  "
        f"({ok} read, {failed} failed, nothing stored)\n"
        f"  ratio collector/plain: {ours / plain:.2f}x the time",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=10000, help="first gateway port")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for gateways, units in LAYOUTS:
            run_layout(args.first, gateways, units, Path(tmp))


if __name__ == "__main__":
    main()
