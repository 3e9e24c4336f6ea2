"""Billing runs on both databases, checked to the cent against hand-computed bills."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import Connection, Engine, func, select, update

from meterhub.billing.runs import RunReport, run_task
from meterhub.billing.scheduler import BillingScheduler
from meterhub.billing.tables import billing_runs, billing_tasks, bills
from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tasks import create_task
from meterhub.db import make_engine
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device, get_device
from meterhub.registry.projects import assign_device, create_house, create_project
from meterhub.storage import Point, Quality, write_points
from meterhub.storage.compactor import compact
from meterhub.storage.retention import drop_before
from meterhub.times import DAY_US

MONTHLY = {"month": "*", "day": "1", "hour": "0", "minute": "0"}
NOV_1 = "2026-10-31T23:00:00+00:00"  # 1 November 00:00 in Berlin (CET)
DEC_1 = "2026-11-30T23:00:00+00:00"
ADDRESS = ["安心e家", "1", "2", "301", "空调房"]
PEOPLE = [("卢博腾", "13336915622"), ("高帅", "13336919098")]


def us(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


def _readings(
    conn: Connection, device_id: str, channel: str, rows: list[tuple[str, float, int]]
) -> None:
    tag = channel_tags(conn, _pk(conn, device_id))[channel]
    points = [Point(tag, us(when), value, quality) for when, value, quality in rows]
    write_points(conn, points)


def _pk(conn: Connection, device_id: str) -> int:
    return get_device(conn, device_id).pk


@pytest.fixture(params=["rows", "compacted"])
def estate(engine: Engine, request: pytest.FixtureRequest) -> dict[str, str]:
    """A Berlin project: 2 electricity and 2 water meters in one house, tiered and flat tariffs;
    its readings as rows, or compacted into day chunks (every bill must come out the same)."""
    with engine.begin() as conn:
        project = create_project(conn, "Estate", "Europe/Berlin", "CNY")
        house = create_house(conn, project.id, ADDRESS, PEOPLE)
        for device_id, kind, water_kind in (
            ("E1", DeviceType.ELECTRICITY, None),
            ("E2", DeviceType.ELECTRICITY, None),
            ("W1", DeviceType.WATER, "tap"),
            ("W2", DeviceType.WATER, "purified"),
        ):
            create_device(conn, device_id, kind)
            assign_device(conn, device_id, house, water_kind)
        tiers = [
            (Decimal(100), Decimal("0.50")),
            (Decimal(200), Decimal("0.70")),
            (None, Decimal(1)),
        ]
        set_tariff(conn, project.id, DeviceType.ELECTRICITY, Tariff.tiered(tiers, Decimal(5)))
        set_tariff(conn, project.id, DeviceType.WATER, Tariff.flat(Decimal("3.20")), "tap")
        set_tariff(conn, project.id, DeviceType.WATER, Tariff.flat(Decimal("8.00")), "purified")
        good, reset = Quality.GOOD, Quality.REGISTER_DECREASED
        _readings(
            conn,
            "E1",
            "kW",
            [
                ("2026-10-01T00:00:00+00:00", 1000.0, good),
                ("2026-10-20T00:00:00+00:00", 1150.0, good),
                ("2026-11-02T00:00:00+00:00", 1200.0, good),
                ("2026-11-20T00:00:00+00:00", 1250.0, good),
                ("2026-11-25T00:00:00+00:00", 3.0, reset),  # meter exchanged: register restarts
                ("2026-12-05T00:00:00+00:00", 13.0, good),
            ],
        )
        _readings(
            conn,
            "W1",
            "V",
            [
                ("2026-10-01T00:00:00+00:00", 10.5, good),
                (NOV_1, 22.75, good),
            ],
        )
        _readings(
            conn,
            "W2",
            "V",
            [
                ("2026-10-10T00:00:00+00:00", 5.0, good),
                ("2026-10-25T00:00:00+00:00", 7.5, good),
            ],
        )
        power = create_task(conn, project.id, "power", DeviceType.ELECTRICITY, MONTHLY)
        water = create_task(conn, project.id, "water", DeviceType.WATER, MONTHLY)
    if request.param == "compacted":
        moved = compact(engine, settle_us=0, now=us("2027-01-01T00:00:00+00:00"))
        assert moved == 10 - 3  # each of the three meters' newest reading stays a row
    return {"power": power.key, "water": water.key}


def _bills(engine: Engine) -> dict[tuple[str, int], dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(select(bills)).mappings()
        return {(row["device_id"], row["to_time"]): dict(row) for row in rows}


def test_monthly_bills_to_the_cent(engine: Engine, estate: dict[str, str]) -> None:
    with engine.begin() as conn:
        power = run_task(conn, estate["power"], us(NOV_1))
        water = run_task(conn, estate["water"], us(NOV_1))
    assert power.billed == 1
    assert power.skipped == [{"device_id": "E2", "reason": "no readings"}]
    assert water.billed == 2
    found = _bills(engine)

    e1 = found[("E1", us(NOV_1))]
    # 1150 + 50 * 287 h / 312 h = 1195.99359 -> 1195.994; 195.994 kWh:
    # 100 * 0.50 + 95.994 * 0.70 + 5.00 fixed = 122.1958 -> 122.20
    assert e1["from_time"] == us("2026-10-01T00:00:00+00:00")
    assert (e1["previous_reading"], e1["reading"]) == (Decimal("1000.000"), Decimal("1195.994"))
    assert (e1["consumption"], e1["charge"]) == (Decimal("195.994"), Decimal("122.20"))
    assert e1["estimated"] is False
    assert json.loads(str(e1["house_address"])) == ADDRESS
    assert json.loads(str(e1["residents"])) == [
        {"name": name, "cellphone": phone} for name, phone in PEOPLE
    ]

    w1 = found[("W1", us(NOV_1))]  # 22.75 - 10.5 = 12.25 m3 at 3.20 = 39.20
    assert (w1["consumption"], w1["charge"], w1["estimated"]) == (
        Decimal("12.250"),
        Decimal("39.20"),
        False,
    )
    w2 = found[("W2", us(NOV_1))]  # last reading 7.5 held to the end: estimated; 2.5 at 8.00
    assert (w2["reading"], w2["charge"], w2["estimated"]) == (
        Decimal("7.500"),
        Decimal("20.00"),
        True,
    )


def test_next_period_starts_at_previous_end_and_survives_a_register_reset(
    engine: Engine, estate: dict[str, str]
) -> None:
    with engine.begin() as conn:
        run_task(conn, estate["power"], us(NOV_1))
        december = run_task(conn, estate["power"], us(DEC_1))
    assert december.billed == 1
    e1 = _bills(engine)[("E1", us(DEC_1))]
    # from 1195.994 (the November bill's end) up to 1250 before the exchange: 54.006,
    # then 3 -> 3 + 10 * 143 h / 240 h = 8.958: 5.958; 59.964 kWh * 0.50 + 5 = 34.982 -> 34.98
    assert e1["from_time"] == us(NOV_1)
    assert (e1["previous_reading"], e1["reading"]) == (Decimal("1195.994"), Decimal("8.958"))
    assert (e1["consumption"], e1["charge"]) == (Decimal("59.964"), Decimal("34.98"))


def test_a_period_starting_past_the_raw_retention_is_not_billed(
    engine: Engine, estate: dict[str, str]
) -> None:
    with engine.begin() as conn:
        assert run_task(conn, estate["power"], us(NOV_1)).billed == 1
    compact(engine, settle_us=0, now=us("2027-01-01T00:00:00+00:00"))
    drop_before(engine, us("2026-11-10T00:00:00+00:00") // DAY_US)
    with engine.begin() as conn:
        december = run_task(conn, estate["power"], us(DEC_1))
    gone = "the period starts before the raw retention horizon: its readings are gone"
    assert december.billed == 0
    assert {"device_id": "E1", "reason": gone} in december.skipped


def test_a_period_is_billed_exactly_once(engine: Engine, estate: dict[str, str]) -> None:
    with engine.begin() as conn:
        first = run_task(conn, estate["power"], us(NOV_1))
    with engine.begin() as conn:
        again = run_task(conn, estate["power"], us(NOV_1))
    assert first.run_id is not None
    assert again.run_id is None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(bills)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(billing_runs)).scalar_one() == 1


def test_a_failed_run_leaves_nothing_behind(engine: Engine, estate: dict[str, str]) -> None:
    def run_then_fail() -> None:
        with engine.begin() as conn:
            run_task(conn, estate["power"], us(NOV_1))
            raise RuntimeError("killed before commit")

    with pytest.raises(RuntimeError):
        run_then_fail()
    with engine.begin() as conn:
        assert run_task(conn, estate["power"], us(NOV_1)).billed == 1
    assert len(_bills(engine)) == 1


def _created_in_september(engine: Engine, *keys: str) -> None:
    """Make the tasks as old as September, so the scheduler owes their later fires."""
    with engine.begin() as conn:
        query = update(billing_tasks).where(billing_tasks.c.natrual_key.in_(keys))
        conn.execute(query.values(create_time=us("2026-09-15T00:00:00+00:00")))


def _clock(text: str) -> Callable[[], datetime]:
    return lambda: datetime.fromisoformat(text)


def test_scheduler_bills_missed_monthly_fires_once_in_the_project_timezone(
    engine: Engine, estate: dict[str, str]
) -> None:
    _created_in_september(engine, estate["power"])
    with engine.begin() as conn:
        query = update(billing_tasks).where(billing_tasks.c.natrual_key == estate["water"])
        conn.execute(query.values(enabled=False))
    scheduler = BillingScheduler(engine, clock=_clock("2026-12-01T00:30:00+01:00"))
    reports = scheduler.tick()
    # 1 October 00:00 CEST, 1 November 00:00 CET and 1 December 00:00 CET, in UTC:
    assert [r.scheduled_at for r in reports] == [
        us("2026-09-30T22:00:00+00:00"),
        us(NOV_1),
        us(DEC_1),
    ]
    assert reports[0].skipped == [
        {"device_id": "E1", "reason": "no reading before the period end"},
        {"device_id": "E2", "reason": "no readings"},
    ]
    found = _bills(engine)
    assert sorted(found) == [("E1", us(NOV_1)), ("E1", us(DEC_1))]
    assert [found[k]["charge"] for k in sorted(found, key=lambda k: k[1])] == [
        Decimal("122.20"),
        Decimal("34.98"),
    ]
    assert all(r.run_id is None for r in scheduler.tick())  # nothing is billed twice
    assert len(_bills(engine)) == 2
    with engine.connect() as conn:
        power = billing_tasks.c.natrual_key == estate["power"]
        last = conn.execute(select(billing_tasks.c.last_run_at).where(power)).scalar_one()
    assert last == us(DEC_1)


def test_two_schedulers_racing_bill_each_period_once(
    database_url: str, engine: Engine, estate: dict[str, str]
) -> None:
    _created_in_september(engine, estate["power"], estate["water"])
    engines = [make_engine(database_url) for _ in range(2)]
    clock = _clock("2026-12-01T00:30:00+01:00")
    barrier = threading.Barrier(2)

    def race(own: Engine) -> list[RunReport]:
        barrier.wait()
        return BillingScheduler(own, clock=clock).tick()

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(race, engines))
    for own in engines:
        own.dispose()
    claimed = [r for reports in results for r in reports if r.run_id is not None]
    assert len(claimed) == 6  # 3 fires x 2 tasks, each run by exactly one scheduler
    assert len(_bills(engine)) == 2 + 2 * 2  # E1 twice; W1 and W2 in November and December
