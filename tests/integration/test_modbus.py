"""Modbus TCP meters end to end: pymodbus simulated gateways (several units behind one,
single ones, faulty ones) polled by the collector into tags, read back over the API."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from meterhub.collector.health_store import meter_status
from meterhub.collector.modbus_simulator import ModbusSimulator, ModbusSimulatorConfig
from meterhub.collector.poller import Poller
from meterhub.collector.service import run_shard
from meterhub.collector.simulated_values import meter_values
from meterhub.collector.simulator import Faults
from meterhub.collector.writer import BatchWriter
from meterhub.db import make_engine
from meterhub.registry.tables import devices
from meterhub.settings import Settings
from meterhub.storage.tables import points
from tests.support import free_port_block, started

TIMEOUT = 0.3
FAULTS_TIMEOUT = 1.0
"""The faults test's poll timeout: only its silent units are meant to reach it (at 0.3 s a
unit answering with an exception once timed out under load)."""


@contextmanager
def gateways(ports: int, units: int, **options: Any) -> Iterator[ModbusSimulator]:
    """Simulated gateways on a free block of ports, each with ``units`` units."""

    def make() -> ModbusSimulator:
        block = free_port_block(ports, first=25000)
        seeds = range(1000) if "faults" in options else [3]
        configs = (
            ModbusSimulatorConfig(ports=block, units=units, seed=seed, **options) for seed in seeds
        )
        # with faults, a seed giving these ports every kind of fault and none
        return ModbusSimulator(
            next(c for c in configs if "faults" not in options or _every_fault(c))
        )

    with started(make) as sim:
        yield sim


def _every_fault(config: ModbusSimulatorConfig) -> bool:
    kinds = {
        config.fault(port, unit) for port in config.ports for unit in range(1, 1 + config.units)
    }
    return kinds == {None, "timeout", "garbage", "wrong_id", "reset"}


def register(api: TestClient, sim: ModbusSimulator) -> None:
    for meter, port, unit in sim.units:
        body = {"device_id": str(meter), "port": port, "protocol": "modbus"}
        body |= {"unit_id": unit, "model": sim.config.model}
        api.post("/api/v1/meters/", json=body).raise_for_status()


def sweep(database_url: str, timeout: float = TIMEOUT) -> None:
    settings = Settings(database_url=database_url, poll_timeout=timeout, source_address="127.0.0.2")
    asyncio.run(run_shard(settings, 0, 1, None))


def health(engine: Engine) -> dict[str, dict[str, Any]]:
    query = select(devices.c.device_id, meter_status).join(
        meter_status, meter_status.c.device_pk == devices.c.id
    )
    with engine.connect() as conn:
        return {row.device_id: dict(row._mapping) for row in conn.execute(query)}


def test_gateways_with_many_units_and_single_ones_are_read_into_tags(
    api: TestClient, database_url: str, engine: Engine
) -> None:
    with gateways(3, 4, model="SDM630") as sim:
        register(api, sim)
        sweep(database_url)
        sweep(database_url)
    found = health(engine)
    assert {m["status"] for m in found.values()} == {"online"}
    assert all(m["polls"] == 2 for m in found.values())
    meter, _port, unit = sim.units[5]
    latest = api.get(f"/api/v1/meters/{meter}/").json()
    assert (latest["protocol"], latest["unit_id"], latest["model"]) == ("modbus", unit, "SDM630")
    values = latest["last_reading"]["values"]
    assert set(values) == {"A", "kW", "A2", "A3", "U1", "U2", "U3", "P"}
    amps, kwh = meter_values(3, meter, time.time())
    assert values["kW"] == pytest.approx(kwh, rel=1e-5)
    assert values["A"] == pytest.approx(amps, rel=0.5)
    assert values["U2"] == pytest.approx(230.0)
    assert values["P"] == pytest.approx(values["A"] * 0.23, rel=1e-5)
    archive = api.get("/counter-archive/", params={"counter_id": meter}).json()
    assert len(archive) == 2
    assert archive[0]["kW"] <= archive[1]["kW"]
    assert api.get(f"/counter-data/{meter}/").json()["kW"] == archive[1]["kW"]


def test_faults_are_reported_and_do_not_stall_other_gateways(
    api: TestClient, database_url: str, engine: Engine
) -> None:
    faults = Faults(timeout=0.25, garbage=0.15, wrong_id=0.15, reset=0.15)
    with gateways(6, 3, faults=faults) as sim:
        kinds = {str(meter): sim.config.fault(port, unit) for meter, port, unit in sim.units}
        assert set(kinds.values()) == {None, "timeout", "garbage", "wrong_id", "reset"}
        register(api, sim)
        for _ in range(3):
            sweep(database_url, FAULTS_TIMEOUT)
    found = health(engine)
    expected = {
        "timeout": "timed out",
        "garbage": "Modbus exception 4 (device failure)",
        "wrong_id": "answer from unit",
        "reset": "went backwards",
    }
    for device_id, kind in kinds.items():
        meter = found[device_id]
        if kind is None:
            assert meter["status"] == "online", (device_id, meter)
            assert meter["last_error"] is None
            # good units never waited out a timeout, whatever their gateway's others did
            assert meter["last_duration_ms"] < FAULTS_TIMEOUT * 1000
        elif kind == "reset":
            assert meter["status"] == "online"
            assert expected[kind] in meter["last_error"]
        else:
            assert meter["status"] == "offline", (device_id, meter)
            assert expected[kind] in meter["last_error"], (device_id, meter)
    with engine.connect() as conn:
        flagged = conn.execute(select(points.c.quality).where(points.c.quality != 0)).all()
    assert flagged  # the dropped registers are stored, flagged REGISTER_DECREASED


def test_a_gateway_that_drops_its_connection_is_read_again(
    api: TestClient, database_url: str, engine: Engine
) -> None:
    settings = Settings(database_url=database_url, poll_timeout=TIMEOUT)

    with gateways(1, 2) as sim:
        register(api, sim)

        async def three_sweeps() -> list[str]:
            store = make_engine(database_url)
            writer = BatchWriter(store, 100, 0.1, 7)
            poller = Poller(settings, store, writer)
            statuses = []
            for step in range(3):
                if step == 1:
                    sim.stop()  # the gateway restarts: its connections are gone
                    sim.start()
                await poller.sweep()
                statuses.append(str(poller.failures))
            await writer.close()
            store.dispose()
            return statuses

        failures = asyncio.run(three_sweeps())
    assert failures == ["0", "0", "0"]  # a dropped connection is opened again at once
    assert {m["polls"] for m in health(engine).values()} == {3}


def test_bad_modbus_meters_are_refused_naming_the_field(api: TestClient) -> None:
    base = {"device_id": "m-1", "port": 502, "protocol": "modbus", "unit_id": 1}
    for body, field in [
        ({**base, "model": "SDM9"}, "model"),
        ({**base, "unit_id": 0, "model": "SDM120"}, "unit_id"),
        ({**base, "unit_id": 248, "model": "SDM120"}, "unit_id"),
        ({**base, "type": "water", "model": "SDM120"}, "model"),
        ({**base}, "model"),
        ({"device_id": "h-1", "port": 9001, "model": "SDM120"}, "model"),
        ({"device_id": "h-2", "port": 502}, "port"),
    ]:
        answer = api.post("/api/v1/meters/", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert field in answer.json()["errors"], (body, answer.text)
    ok = api.post("/api/v1/meters/", json={**base, "model": "SDM120"})
    assert ok.status_code == 201, ok.text
    second = api.post(
        "/api/v1/meters/", json={**base, "device_id": "m-2", "unit_id": 2, "model": "SDM120"}
    )
    assert second.status_code == 201, second.text
    taken = api.post("/api/v1/meters/", json={**base, "device_id": "m-3", "model": "SDM120"})
    assert taken.status_code == 400
    assert "unit 1" in taken.json()["errors"]["port"][0]
    csv = "device_id,port,protocol,unit_id,model\r\n" + "".join(
        f"m-{n},502,modbus,3,SDM630\r\n" for n in (4, 5)
    )
    bulk = api.post("/api/v1/meters/import.csv", content=csv.encode())
    assert bulk.status_code == 400
    assert "line 2: port" in bulk.json()["errors"]


def test_meter_models_are_managed_over_the_api(api: TestClient) -> None:
    names = [m["name"] for m in api.get("/api/v1/meter-models/").json()]
    assert names == ["SDM120", "SDM630"]
    doc = {
        "name": "flow-1",
        "device_type": "water",
        "channels": {"V": {"address": 0, "type": "uint32", "scale": 0.001}},
    }
    assert api.post("/api/v1/meter-models/", json=doc).status_code == 201
    bad = api.post("/api/v1/meter-models/", json={**doc, "name": "flow-2", "channels": {}})
    assert bad.status_code == 400
    assert "channels" in bad.json()["errors"]
    assert api.post("/api/v1/meter-models/", json=doc).json()["errors"]["name"]
    meter = {"device_id": "w-9", "type": "water", "port": 502, "protocol": "modbus"}
    assert (
        api.post("/api/v1/meters/", json={**meter, "unit_id": 4, "model": "flow-1"}).status_code
        == 201
    )
    assert api.delete("/api/v1/meter-models/flow-1/").status_code == 400  # in use
    assert api.delete("/api/v1/meter-models/SDM120/").status_code == 400  # built in
    renamed = {
        **doc,
        "channels": {
            "V": {"address": 0, "type": "uint32"},
            "T": {"address": 2, "type": "int16", "unit": "°C"},
        },
    }
    assert api.put("/api/v1/meter-models/flow-1/", json=renamed).json()["errors"]["channels"]
    fixed = {**doc, "channels": {"V": {"address": 4, "type": "uint32"}}}
    assert api.put("/api/v1/meter-models/flow-1/", json=fixed).status_code == 200
    assert api.get("/api/v1/meter-models/nope/").status_code == 404


def established(ports: range) -> int:
    """TCP connections of this process to ``ports`` that are open (ESTABLISHED), client
    side (tests running beside this one, in other processes, may connect to them too)."""
    wanted = {f"{port:04X}" for port in ports}
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):  # closed meanwhile
            mine.add(os.readlink(f"/proc/self/fd/{fd}"))
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(
        1
        for row in rows
        if row[2].rsplit(":", 1)[1] in wanted and row[3] == "01" and f"socket:[{row[9]}]" in mine
    )


async def sweeps_watched(settings: Settings, ports: range, count: int) -> tuple[int, list[int]]:
    """``count`` sweeps by one poller: its failures, and the open connections to ``ports``
    sampled every millisecond meanwhile (and once after)."""
    store = make_engine(settings.database_url)
    writer = BatchWriter(store, 100, 0.1, 7)
    poller = Poller(settings, store, writer)
    seen: list[int] = []

    async def sample() -> None:
        while True:
            seen.append(established(ports))
            await asyncio.sleep(0.001)

    sampler = asyncio.create_task(sample())
    for _ in range(count):
        await poller.sweep()
    sampler.cancel()
    await asyncio.sleep(0.05)  # closed sockets go at the loop's next turns
    seen.append(established(ports))
    await writer.close()
    store.dispose()
    return poller.failures, seen


def test_open_gateway_connections_stay_under_the_cap(
    api: TestClient, database_url: str, engine: Engine
) -> None:
    cap = 2
    # no meter here is meant to time out: a timeout well above a busy machine's stalls
    uncapped = Settings(database_url=database_url, poll_timeout=5.0, poll_concurrency=cap)
    capped = uncapped.model_copy(update={"modbus_max_connections": cap})
    with gateways(5, 2) as sim:
        register(api, sim)
        ports = sim.config.ports
        failures, seen = asyncio.run(sweeps_watched(capped, ports, 3))
        _, without_cap = asyncio.run(sweeps_watched(uncapped, ports, 1))
    assert failures == 0
    assert len(seen) > 10
    assert 0 < max(seen) <= cap, seen  # never more open than the cap, at any sample
    assert seen[-1] == 0  # a sweep closes its connections when it ends
    assert max(without_cap) > cap  # the default cap (512) keeps all five open
    found = health(engine)
    assert len(found) == 10
    assert {(m["status"], m["polls"]) for m in found.values()} == {("online", 4)}
