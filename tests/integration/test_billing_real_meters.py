"""One billing run over a Modbus meter and an MQTT-fed meter, from real parts only.

The Modbus meter is a unit of a pymodbus simulated gateway, read three times by the real
collector (``run_shard``) into its ``kW`` register tag. The MQTT-fed meter is fed by a
Mosquitto of the test's own through a data source configured over the API; the app of the
``api`` fixture leads (SQLite: always; PostgreSQL: the advisory lock of its fresh database),
so its own MQTT supervisor subscribes and stores the readings, published at QoS 1 with
explicit times. Both meters are in one house of a project with a tiered tariff; a
(disabled, so never fired by the app's scheduler) monthly task is run by hand through the
API up to an instant between the Modbus meter's 2nd and 3rd polls.

Expected bills: the Modbus meter's from the readings stored (read back through
``/smt/data/get``), its end register interpolated between the two polls around the
instant; the MQTT meter's worked by hand. Running the task again for the same instant adds
no bill.

The simulated register grows in real time and is served as a float32 (steps of 1/512 to
1/16 kWh at its 10^4-10^5 kWh), so over the seconds of this test the Modbus meter consumes 0
or one step: its bill is checked against its stored readings, while the tiers, the rounding
and the interpolation are worked through on the MQTT meter's readings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from meterhub.collector.modbus_simulator import ModbusSimulator, ModbusSimulatorConfig
from meterhub.collector.service import run_shard
from meterhub.collector.simulated_values import meter_values
from meterhub.settings import Settings
from tests.mqtt_support import Broker, publish
from tests.support import free_port_block, started, wait_until

SECOND = 1_000_000
HOUR = 3600 * SECOND
CENT = Decimal("0.01")
MILLI = Decimal("0.001")
SEED = 5
MODBUS = "e-modbus"
MQTT = "e-mqtt"
TIERS = [(Decimal(10), Decimal("0.50")), (None, Decimal("0.85"))]
FIXED = Decimal("5.00")


def ok(answer: Any, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


def us(text: str) -> int:
    moment = datetime.fromisoformat(text) - datetime(1970, 1, 1, tzinfo=UTC)
    return (moment.days * 86_400 + moment.seconds) * SECOND + moment.microseconds


def iso(at: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=at)).isoformat()


def now_us() -> int:
    return time.time_ns() // 1000


def register(value: float) -> Decimal:
    """A stored register as billed: its shortest repr, half-up to 0.001."""
    return Decimal(repr(value)).quantize(MILLI, rounding=ROUND_HALF_UP)


def charge(kwh: Decimal) -> Decimal:
    """The tariff of the test by hand: each tier's share, plus the fixed charge, rounded
    half-up to cents once."""
    total, lower = FIXED, Decimal(0)
    for up_to, price in TIERS:
        upper = kwh if up_to is None else min(kwh, up_to)
        total += max(upper - lower, Decimal(0)) * price
        lower = max(lower, upper)
    return total.quantize(CENT, rounding=ROUND_HALF_UP)


@pytest.fixture
def gateway() -> Iterator[ModbusSimulator]:
    """One simulated SDM120 gateway with one unit, on a free port of 127.0.0.1."""
    with started(
        lambda: ModbusSimulator(
            ModbusSimulatorConfig(ports=free_port_block(1, first=27000), units=1, seed=SEED)
        )
    ) as sim:
        yield sim


def _estate(api: TestClient, sim: ModbusSimulator, broker: Broker) -> tuple[int, str]:
    """The project, its house with both meters, the tariff, the MQTT source and the task."""
    _meter, port, unit = sim.units[0]
    modbus = {"device_id": MODBUS, "host": "127.0.0.1", "port": port, "protocol": "modbus"}
    ok(api.post("/api/v1/meters/", json=modbus | {"unit_id": unit, "model": "SDM120"}), 201)
    ok(api.post("/api/v1/meters/", json={"device_id": MQTT}), 201)  # not polled: no port
    topics = [{"pattern": "site/{device}/energy", "channel": "kW"}]
    config = {"mqtt": {"url": broker.url, "topics": topics}}
    source = {"id": "gw", "name": "Site gateway", "config": config}
    ok(api.post("/api/v1/data-sources/", json=source), 201)

    body = {"name": "Estate", "timezone": "UTC", "currency": "EUR"}
    project = ok(api.post("/api/v1/projects/", json=body), 201)["id"]
    house = {"address": ["Estate", "1", "2", "301", ""], "residents": []}
    house_id = ok(api.post(f"/api/v1/projects/{project}/houses/", json=house), 201)["id"]
    for device_id in (MODBUS, MQTT):
        ok(api.post(f"/api/v1/houses/{house_id}/devices/", json={"device_id": device_id}), 201)
    tariff = {
        "tiers": [{"up_to": "10", "price": "0.50"}, {"up_to": None, "price": "0.85"}],
        "fixed_charge": "5.00",
    }
    ok(api.put(f"/api/v1/projects/{project}/tariffs/electricity/", json=tariff))
    task = {
        "name": "monthly",
        "project_id": project,
        "device_type": 2,
        "enabled": False,
        "crontab": {"month": "*", "day": "1", "hour": "0", "minute": "0"},
    }
    key = ok(api.post("/api/v1/scheduler/task/", json=task), 201)["data"]["natrual_key"]
    return int(project), str(key)


def _sweep(database_url: str) -> None:
    """One poll of every polled meter by the real collector, its readings written."""
    asyncio.run(run_shard(Settings(database_url=database_url, poll_timeout=1.0), 0, 1, None))


def _stored(api: TestClient, device_id: str, start: int, end: int) -> list[tuple[int, float]]:
    """The register readings stored in [start, end], through the history API."""
    params = {"tagId": f"{device_id}.kW", "from": start, "to": end, "actual": True}
    answer = ok(api.post("/smt/data/get", json={"params": params}))
    assert answer["error"]["id"] == 0, answer
    [history] = answer["data"]
    return [(point["x"], float(point["y"])) for point in history["data"]]


def _mqtt(api: TestClient) -> dict[str, Any]:
    found: dict[str, Any] = ok(api.get("/api/v1/data-sources/gw/"))["mqtt"]
    return found


def _bills(api: TestClient, project: int, at: int) -> list[dict[str, Any]]:
    day = datetime.fromtimestamp(at / SECOND, UTC).date()
    query: dict[str, str | int] = {
        "project_id": project,
        "device_type": 10,
        "start_date": (day - timedelta(days=1)).isoformat(),
        "end_date": (day + timedelta(days=1)).isoformat(),
    }
    answer = ok(api.get("/api/v1/scheduler/history/time/", params=query))
    found: list[dict[str, Any]] = answer["data"]
    return found


def test_a_modbus_meter_and_an_mqtt_fed_meter_are_billed_once(
    broker: Broker, gateway: ModbusSimulator, api: TestClient, database_url: str
) -> None:
    project, task = _estate(api, gateway, broker)
    began = now_us()
    _sweep(database_url)
    _sweep(database_url)
    polled = _stored(api, MODBUS, began, now_us())
    assert len(polled) == 2, polled
    at = (polled[1][0] // SECOND + 1) * SECOND  # the period end: the next whole second
    # the MQTT meter's readings, the last a second after the period end
    readings = [(at - 2 * HOUR, 1000.2505), (at - HOUR, 1010.0), (at - 3 * SECOND, 1014.051)]
    readings.append((at + SECOND, 1014.451))
    wait_until(lambda: now_us() > at + SECOND, 3, 0.02)
    _sweep(database_url)  # the Modbus meter's third reading, after the period end

    wait_until(lambda: _mqtt(api)["state"] == "connected", 10, 0.05)
    payloads = [f'{{"ts": {ts}, "value": {value}}}' for ts, value in readings]
    publish(broker, [(f"site/{MQTT}/energy", payload) for payload in payloads])
    wait_until(lambda: _mqtt(api)["messages_stored"] == len(readings), 10, 0.05)
    assert _mqtt(api)["bad_messages"] == 0
    assert _stored(api, MQTT, at - 3 * HOUR, at + HOUR) == readings

    # the Modbus readings are the simulator's (float32 registers), one per sweep
    modbus = _stored(api, MODBUS, began, now_us())
    assert len(modbus) == 3, modbus
    (t1, r1), (t2, r2), (t3, r3) = modbus
    assert t1 < t2 < at < t3
    meter = gateway.units[0][0]
    for ts, value in modbus:
        assert value == pytest.approx(meter_values(SEED, meter, ts / SECOND)[1], abs=0.05)

    run = ok(api.post(f"/api/v1/scheduler/tasks/{task}/run/", json={"at": iso(at)}))["data"]
    assert (run["billed"], run["skipped"], run["already_run"]) == (2, [], False)
    bills = _bills(api, project, at)
    assert sorted(bill["device_id"] for bill in bills) == [MODBUS, MQTT]
    by_meter = {bill["device_id"]: bill for bill in bills}

    # Modbus: from its first reading; at the end, the line between the 2nd and 3rd readings
    start = register(r1)
    share = Decimal(at - t2) / Decimal(t3 - t2)
    end = (Decimal(repr(r2)) + (Decimal(repr(r3)) - Decimal(repr(r2))) * share).quantize(
        MILLI, rounding=ROUND_HALF_UP
    )
    bill = by_meter[MODBUS]
    assert (us(bill["from_time"]), us(bill["to_time"])) == (t1, at)
    assert (bill["previous_reading_data"], bill["reading_data"]) == (str(start), str(end))
    assert bill["charge"] == str(charge(end - start))

    # MQTT: from its first reading, 1000.2505 half-up 1000.251; at the end, 3/4 of the way
    # from 1014.051 to 1014.451: 1014.351; 14.100 kWh: 10 * 0.50 + 4.100 * 0.85 + 5.00 =
    # 13.485, half-up 13.49
    bill = by_meter[MQTT]
    assert (us(bill["from_time"]), us(bill["to_time"])) == (at - 2 * HOUR, at)
    assert (bill["previous_reading_data"], bill["reading_data"]) == ("1000.251", "1014.351")
    assert bill["charge"] == "13.49"

    again = ok(api.post(f"/api/v1/scheduler/tasks/{task}/run/", json={"at": iso(at)}))["data"]
    assert (again["billed"], again["already_run"]) == (0, True)
    assert sorted(b["id"] for b in _bills(api, project, at)) == sorted(b["id"] for b in bills)
