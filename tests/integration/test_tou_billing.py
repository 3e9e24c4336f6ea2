"""Time-of-use bills on both databases, checked to the cent against hand-worked examples.

The tariff (Berlin time): peak 08:00-22:00 at 0.80, valley 22:00-08:00 at 0.40, 5.00 fixed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, func, select

from meterhub.billing.chunked import run_chunk, start_run
from meterhub.billing.consumption import REGISTER_STEP
from meterhub.billing.history import BillFilter, csv_text, iter_bills
from meterhub.billing.runs import bill_devices, run_task
from meterhub.billing.tables import bill_items, billing_runs, bills
from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import CENT
from meterhub.billing.tasks import create_task, get_task
from meterhub.billing.tou import TouTariff
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device, get_device
from meterhub.registry.projects import assign_device, create_house, create_project
from meterhub.storage import Point, Quality, write_points
from meterhub.storage.compactor import compact

BERLIN = ZoneInfo("Europe/Berlin")
DAILY = {"month": "*", "day": "*", "hour": "0", "minute": "0"}
GOOD, DROP = Quality.GOOD, Quality.REGISTER_DECREASED
MARCH_3 = "2026-03-03T00:00:00+01:00"


def tariff_json(**extra: Any) -> dict[str, Any]:
    return {
        "kind": "tou",
        "periods": [
            {
                "name": "peak",
                "price": "0.80",
                "windows": [{"days": "all", "from": "08:00", "to": "22:00"}],
            },
            {
                "name": "valley",
                "price": "0.40",
                "windows": [{"days": "all", "from": "22:00", "to": "08:00"}],
            },
        ],
        "fixed_charge": "5.00",
        **extra,
    }


def us(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


def estate(
    engine: Engine, meters: Mapping[str, Sequence[tuple[str, float, int]]], **extra: Any
) -> str:
    """A Berlin project with one house of electricity meters holding ``meters``' readings
    (time, value, quality), the TOU tariff, and a daily task: the task's key."""
    with engine.begin() as conn:
        project = create_project(conn, "Estate", "Europe/Berlin", "CNY")
        house = create_house(conn, project.id, ["Estate", "1", "1", "101", ""], [])
        for device_id, readings in meters.items():
            create_device(conn, device_id, DeviceType.ELECTRICITY)
            assign_device(conn, device_id, house, None)
            tag = channel_tags(conn, get_device(conn, device_id).pk)["kW"]
            write_points(conn, [Point(tag, us(t), value, q) for t, value, q in readings])
        tariff = TouTariff.from_json(tariff_json(**extra))
        set_tariff(conn, project.id, DeviceType.ELECTRICITY, tariff)
        return create_task(conn, project.id, "daily", DeviceType.ELECTRICITY, DAILY).key


def bill_of(engine: Engine, device_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with engine.connect() as conn:
        bill = conn.execute(select(bills).where(bills.c.device_id == device_id)).mappings().one()
        query = select(bill_items).where(bill_items.c.bill_id == bill["id"])
        items = conn.execute(query.order_by(bill_items.c.seq)).mappings().all()
    return dict(bill), [dict(item) for item in items]


def brief(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Period, start and end register, consumption, price, charge (as text, to 0.001 and
    cents), estimated of each item."""
    return [
        (
            i["period"],
            *(str(Decimal(i[k]).quantize(REGISTER_STEP)) for k in REGISTER_FIELDS),
            i["price"],
            str(Decimal(i["charge"]).quantize(CENT)),
            bool(i["estimated"]),
        )
        for i in items
    ]


REGISTER_FIELDS = ("start_register", "end_register", "consumption")


def day(*rows: tuple[str, float, int]) -> list[tuple[str, float, int]]:
    """Readings of Monday 2 March 2026 (CET), by local time ``HH:MM`` (24:00: the next day)."""
    return [
        (MARCH_3 if t == "24:00" else f"2026-03-02T{t}:00+01:00", value, q) for t, value, q in rows
    ]


def test_boundaries_between_readings_are_interpolated(engine: Engine) -> None:
    readings = day(
        ("00:00", 100.0, GOOD),
        ("07:00", 107.0, GOOD),
        ("09:00", 111.5, GOOD),  # 08:00 lies between: 107 + 4.5 / 2 = 109.25
        ("21:00", 159.0, GOOD),
        ("23:00", 163.0, GOOD),  # 22:00: 161
        ("24:00", 164.0, GOOD),
    )
    key = estate(engine, {"E1": readings})
    with engine.begin() as conn:
        assert run_task(conn, key, us(MARCH_3)).billed == 1
    bill, items = bill_of(engine, "E1")
    # peak 161 - 109.25 = 51.75 * 0.80 = 41.40; valley 9.25 + 3 = 12.25 * 0.40 = 4.90; + 5
    assert brief(items) == [
        ("peak", "109.250", "161.000", "51.750", "0.80", "41.40", False),
        ("valley", "100.000", "164.000", "12.250", "0.40", "4.90", False),
    ]
    assert (bill["previous_reading"], bill["reading"]) == (Decimal("100.000"), Decimal("164.000"))
    assert (bill["consumption"], bill["charge"]) == (Decimal("64.000"), Decimal("51.30"))
    assert (bill["estimated"], bill["rule"]) == (False, None)


def test_register_drops_inside_a_period(engine: Engine) -> None:
    inside = day(
        ("00:00", 100.0, GOOD),
        ("08:00", 108.0, GOOD),
        ("12:00", 120.0, GOOD),
        ("14:00", 5.0, DROP),  # meter exchanged in the peak
        ("22:00", 21.0, GOOD),
        ("24:00", 23.0, GOOD),
    )
    after_boundary = day(
        ("00:00", 100.0, GOOD),
        ("08:00", 110.0, GOOD),
        ("21:00", 130.0, GOOD),
        ("23:00", 2.0, DROP),  # exchanged between 21:00 and 23:00: 22:00 held at 130
        ("24:00", 3.0, GOOD),
    )
    key = estate(engine, {"E1": inside, "E2": after_boundary})
    with engine.begin() as conn:
        assert run_task(conn, key, us(MARCH_3)).billed == 2
    bill, items = bill_of(engine, "E1")
    # peak (120 - 108) + (21 - 5) = 28 * 0.80 = 22.40; valley 8 + 2 = 10 * 0.40 = 4.00; + 5
    assert brief(items) == [
        ("peak", "108.000", "21.000", "28.000", "0.80", "22.40", False),
        ("valley", "100.000", "23.000", "10.000", "0.40", "4.00", False),
    ]
    assert (bill["consumption"], bill["charge"]) == (Decimal("38.000"), Decimal("31.40"))
    assert bill["rule"] == "register-reset"

    bill, items = bill_of(engine, "E2")
    # peak 130 - 110 = 20 * 0.80 = 16.00; valley 10 + (130 - 130) + (3 - 2) = 11 * 0.40 = 4.40
    assert brief(items) == [
        ("peak", "110.000", "130.000", "20.000", "0.80", "16.00", True),
        ("valley", "100.000", "3.000", "11.000", "0.40", "4.40", True),
    ]
    note = (
        "register dropped at 2026-03-02T23:00:00+01:00: "
        "held at 2026-03-02T22:00:00+01:00 from before the drop"
    )
    assert [i["note"] for i in items] == [note, note]
    assert (bill["consumption"], bill["charge"], bill["estimated"]) == (
        Decimal("31.000"),
        Decimal("25.40"),
        True,
    )


def test_a_run_bills_each_meter_as_it_bills_it_alone(engine: Engine) -> None:
    """Bills priced together (one batch) match each meter billed in a chunk of its own."""
    meters = {
        "plain": day(("00:00", 100.0, GOOD), ("09:00", 111.5, GOOD), ("24:00", 164.0, GOOD)),
        "drop": day(
            ("00:00", 100.0, GOOD),
            ("12:00", 120.0, GOOD),
            ("14:00", 5.0, DROP),
            ("24:00", 23.0, GOOD),
        ),
        "held": day(
            ("00:00", 100.0, GOOD),
            ("21:00", 130.0, GOOD),
            ("23:00", 2.0, DROP),
            ("24:00", 3.0, GOOD),
        ),
        "quiet": day(("00:00", 100.0, GOOD), ("12:00", 112.0, GOOD)),
        "falls": day(  # falls in the peak without a flag: billed 0 there
            ("00:00", 100.0, GOOD),
            ("08:00", 110.0, GOOD),
            ("22:00", 105.0, GOOD),
            ("24:00", 106.0, GOOD),
        ),
    }
    key = estate(engine, meters)
    with engine.connect() as conn, conn.begin() as together:
        assert run_task(conn, key, us(MARCH_3)).billed == len(meters)
        at_once = {device_id: priced(conn, device_id) for device_id in meters}
        together.rollback()
    with engine.begin() as conn:
        started = start_run(conn, key, us(MARCH_3), 1)
    assert started is not None
    run_id, chunks = started
    for chunk in chunks:
        with engine.begin() as conn:
            run_chunk(conn, run_id, chunk)
    with engine.connect() as conn:
        assert {device_id: priced(conn, device_id) for device_id in meters} == at_once
    assert at_once["falls"][0]["rule"] == "register-decreased-unexplained"
    assert [at_once[d][0]["rule"] for d in ("drop", "held")] == ["register-reset"] * 2


def priced(conn: Connection, device_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What the bill of ``device_id`` charges, and its items (without ids and times)."""
    bill = conn.execute(select(bills).where(bills.c.device_id == device_id)).mappings().one()
    query = select(bill_items).where(bill_items.c.bill_id == bill["id"])
    items = conn.execute(query.order_by(bill_items.c.seq)).mappings().all()
    own = ("id", "run_id", "created_at")
    return {k: v for k, v in bill.items() if k not in own}, [
        {k: v for k, v in item.items() if k != "bill_id"} for item in items
    ]


def test_a_boundary_after_the_last_reading_is_held_and_reported(engine: Engine) -> None:
    readings = day(("00:00", 100.0, GOOD), ("12:00", 112.0, GOOD))  # then the meter goes quiet
    key = estate(engine, {"E1": readings})
    with engine.begin() as conn:
        run_task(conn, key, us(MARCH_3))
    bill, items = bill_of(engine, "E1")
    # 08:00 interpolated 108; 22:00 and the end held at 112: peak 4 * 0.80, valley 8 * 0.40
    assert brief(items) == [
        ("peak", "108.000", "112.000", "4.000", "0.80", "3.20", True),
        ("valley", "100.000", "112.000", "8.000", "0.40", "3.20", True),
    ]
    last = "held from the last, at 2026-03-02T12:00:00+01:00"
    assert items[0]["note"] == f"no reading after 2026-03-02T22:00:00+01:00: {last}"
    assert items[1]["note"] == (
        f"no reading after 2026-03-02T22:00:00+01:00: {last}; "
        f"no reading after 2026-03-03T00:00:00+01:00: {last}"
    )
    assert (bill["charge"], bill["estimated"]) == (Decimal("11.40"), True)


@pytest.mark.parametrize("stored", ["rows", "compacted"])
@pytest.mark.parametrize(
    ("start", "end", "valley_hours"),
    [
        ("2026-03-28T22:00:00+01:00", "2026-03-29T22:00:00+02:00", 9),  # a 23-hour day
        ("2026-10-24T22:00:00+02:00", "2026-10-25T22:00:00+01:00", 11),  # a 25-hour day
    ],
)
def test_dst_days_bill_their_real_hours(
    engine: Engine, stored: str, start: str, end: str, valley_hours: int
) -> None:
    # A reading every 15 minutes, the register rising 0.25 kWh each: 1 kWh per real hour.
    first, last = us(start), us(end)
    quarter = 900_000_000
    readings = [
        (datetime.fromtimestamp(ts / 1e6, BERLIN).isoformat(), 1000 + (ts - first) / 3.6e9, GOOD)
        for ts in range(first, last + quarter, quarter)
    ]
    key = estate(engine, {"E1": readings})
    if stored == "compacted":
        moved = compact(engine, settle_us=0, now=last + 2 * 86_400_000_000)
        assert moved == len(readings) - 1  # the newest reading stays a row
    with engine.begin() as conn:
        run_task(conn, key, last)
    bill, items = bill_of(engine, "E1")
    hours = 14 + valley_hours
    peak_end = Decimal(1000 + valley_hours + 14).quantize(Decimal("0.001"))
    assert [(i["period"], Decimal(i["consumption"])) for i in items] == [
        ("peak", Decimal(14)),
        ("valley", Decimal(valley_hours)),
    ]
    assert Decimal(items[0]["end_register"]) == peak_end
    # 14 * 0.80 = 11.20 + valley * 0.40 + 5
    charge = Decimal("11.20") + valley_hours * Decimal("0.40") + 5
    assert (bill["consumption"], bill["charge"]) == (Decimal(hours), charge)


def test_tiers_add_a_surcharge_on_the_total(engine: Engine) -> None:
    tiers = [{"up_to": "50", "price": "0"}, {"up_to": None, "price": "0.10"}]
    readings = day(("00:00", 100.0, GOOD), ("08:00", 112.0, GOOD), ("22:00", 160.0, GOOD))
    key = estate(engine, {"E1": [*readings, (MARCH_3, 164.0, GOOD)]}, tiers=tiers)
    with engine.begin() as conn:
        run_task(conn, key, us(MARCH_3))
    bill, _ = bill_of(engine, "E1")
    # peak 48 * 0.80 = 38.40; valley 16 * 0.40 = 6.40; 14 above 50 * 0.10 = 1.40; + 5
    assert (bill["consumption"], bill["charge"]) == (Decimal("64.000"), Decimal("51.20"))


def test_billed_once_with_items_once_and_exported(engine: Engine) -> None:
    readings = day(("00:00", 100.0, GOOD), ("08:00", 108.0, GOOD), ("22:00", 150.0, GOOD))
    key = estate(engine, {"E1": [*readings, (MARCH_3, 151.5, GOOD)]})
    with engine.begin() as conn:
        first = run_task(conn, key, us(MARCH_3))
        assert run_task(conn, key, us(MARCH_3)).run_id is None
        # the same run's devices billed again (a chunk run twice): nothing is added
        assert first.run_id is not None
        bill_devices(conn, get_task(conn, key), first.run_id, us(MARCH_3))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(bills)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(bill_items)).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(billing_runs)).scalar_one() == 1
        project_id = conn.execute(select(bills.c.project_id)).scalar_one()
        text = "".join(csv_text(iter_bills(conn, BillFilter(project_id)), BERLIN))
    rows = list(csv.DictReader(io.StringIO(text)))
    # peak 42 * 0.80 = 33.60; valley 9.5 * 0.40 = 3.80; + 5
    assert [(r["device_id"], r["charge"], r["item_period"], r["item_charge"]) for r in rows] == [
        ("E1", "42.40", "", ""),
        ("E1", "", "peak", "33.60"),
        ("E1", "", "valley", "3.80"),
    ]


def put(api: TestClient, body: dict[str, Any]) -> Any:
    project = api.post(
        "/api/v1/projects/", json={"name": "P", "timezone": "Asia/Shanghai", "currency": "CNY"}
    )
    return api.put(f"/api/v1/projects/{project.json()['id']}/tariffs/electricity/", json=body)


def test_api_takes_a_tou_tariff_and_names_bad_fields(api: TestClient) -> None:
    answer = put(api, tariff_json())
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["kind"] == "tou"
    assert shown["periods"][1] == {
        "name": "valley",
        "price": "0.40",
        "windows": [{"days": "all", "from": "22:00", "to": "08:00"}],
    }
    bad = tariff_json()
    bad["periods"][1]["windows"][0]["from"] = "23:00"
    bad["periods"][0]["windows"][0]["to"] = 2200
    answer = put(api, bad)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()["errors"]) == {"periods[0].windows[0].to"}
    bad["periods"][0]["windows"][0]["to"] = "22:00"
    answer = put(api, bad)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()["errors"]) == {"periods"}  # 22:00-23:00 is in no period
    answer = put(api, {**tariff_json(), "price": "1"})
    assert set(answer.json()["errors"]) == {"price"}


def test_chunked_runs_bill_time_of_use_alike(engine: Engine) -> None:
    readings = day(("00:00", 100.0, GOOD), ("08:00", 108.0, GOOD), ("22:00", 150.0, GOOD))
    rest = [*readings, (MARCH_3, 151.5, GOOD)]
    key = estate(engine, {"E1": rest, "E2": rest})
    with engine.begin() as conn:
        started = start_run(conn, key, us(MARCH_3), 1)
    assert started is not None
    run_id, chunks = started
    for chunk in [*chunks, chunks[0]]:  # the first chunk sent twice
        with engine.begin() as conn:
            run_chunk(conn, run_id, chunk)
    for device_id in ("E1", "E2"):
        bill, items = bill_of(engine, device_id)
        assert bill["charge"] == Decimal("42.40")
        assert [i["period"] for i in items] == ["peak", "valley"]


def test_bills_api_shows_items(api: TestClient, engine: Engine) -> None:
    readings = day(("00:00", 100.0, GOOD), ("08:00", 108.0, GOOD), ("22:00", 150.0, GOOD))
    key = estate(engine, {"E1": [*readings, (MARCH_3, 151.5, GOOD)]})
    with engine.begin() as conn:
        run_task(conn, key, us(MARCH_3))
        project_id = conn.execute(select(bills.c.project_id)).scalar_one()
    page = api.get("/api/v1/scheduler/history/", params={"project_id": project_id})
    assert page.status_code == 200, page.text
    [bill] = page.json()["data"]["results"]
    assert bill["charge"] == "42.40"
    assert bill["items"] == [
        {
            "period": "peak",
            "start_reading": "108.000",
            "end_reading": "150.000",
            "consumption": "42.000",
            "price": "0.80",
            "charge": "33.60",
            "estimated": False,
            "note": None,
        },
        {
            "period": "valley",
            "start_reading": "100.000",
            "end_reading": "151.500",
            "consumption": "9.500",
            "price": "0.40",
            "charge": "3.80",
            "estimated": False,
            "note": None,
        },
    ]
    dates = {"project_id": project_id, "start_date": "2026-3-1", "end_date": "2026-3-3"}
    [dated] = api.get("/api/v1/scheduler/history/time/", params=dates).json()["data"]
    assert dated["items"] == bill["items"]
