"""Billing end to end through the HTTP API with a token, checked to the cent.

A project in a DST zone (Europe/Berlin) is set up through the management API,
readings are pushed through ``/smt/data/set`` into the meters' register tags, a monthly
task is created with the seed's ``/api/v1/scheduler/task/``; the scheduler (clock
injected) and the manual run endpoint bill it, and ``/history/time/`` shows the bills.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from meterhub.billing.scheduler import BillingScheduler

READINGS = {
    "E1.kW": [
        ("2026-09-01T00:00:00+00:00", 1000.0, 0),
        ("2026-09-20T00:00:00+00:00", 1150.0, 0),
        ("2026-10-02T00:00:00+00:00", 1200.0, 0),
        ("2026-10-20T00:00:00+00:00", 1250.0, 0),
        ("2026-10-25T00:00:00+00:00", 3.0, 1),  # meter exchanged: register restarts
        ("2026-11-05T00:00:00+00:00", 13.0, 0),
    ],
    "W1.V": [("2026-09-01T00:00:00+00:00", 10.5, 0), ("2026-09-30T22:00:00+00:00", 22.75, 0)],
}
OCT_1 = "2026-10-01T00:00:00+02:00"  # summer time
NOV_1 = "2026-11-01T00:00:00+01:00"  # winter time
DEC_1 = "2026-12-01T00:00:00+01:00"


def us(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


def ok(answer: Any, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


def _estate(api: TestClient) -> int:
    project = ok(
        api.post(
            "/api/v1/projects/",
            json={"name": "Estate", "timezone": "Europe/Berlin", "currency": "CNY"},
        ),
        201,
    )["id"]
    house = ok(
        api.post(
            f"/api/v1/projects/{project}/houses/",
            json={
                "address": ["安心e家", "1", "2", "301", "空调房"],
                "residents": [{"name": "卢博腾", "cellphone": "13336915622"}],
            },
        ),
        201,
    )["id"]
    for device_id, kind, water_kind in (
        ("E1", "electricity", None),
        ("E2", "electricity", None),
        ("W1", "water", "tap"),
    ):
        ok(api.post("/api/v1/meters/", json={"device_id": device_id, "type": kind}), 201)
        body = {"device_id": device_id} | ({"water_kind": water_kind} if water_kind else {})
        ok(api.post(f"/api/v1/houses/{house}/devices/", json=body), 201)
    tiers = {
        "tiers": [
            {"up_to": "100", "price": "0.50"},
            {"up_to": "200", "price": "0.70"},
            {"up_to": None, "price": "1"},
        ],
        "fixed_charge": "5.00",
    }
    ok(api.put(f"/api/v1/projects/{project}/tariffs/electricity/", json=tiers))
    ok(
        api.put(
            f"/api/v1/projects/{project}/tariffs/water/",
            params={"water_kind": "tap"},
            json={"price": "3.20"},
        )
    )
    data = [
        {"tagId": tag, "data": [{"x": x, "y": y, "q": q} for x, y, q in rows]}
        for tag, rows in READINGS.items()
    ]
    assert ok(api.post("/smt/data/set", json={"data": data}))["written"] == 8
    return int(project)


def _task(api: TestClient, project: int, device_type: int) -> str:
    body = {
        "name": "monthly",
        "project_id": project,
        "device_type": device_type,
        "crontab": {"month": "*", "day": "1", "hour": "0", "minute": "0"},
    }
    return str(ok(api.post("/api/v1/scheduler/task/", json=body), 201)["data"]["natrual_key"])


def _bills(api: TestClient, project: int) -> dict[tuple[str, str], dict[str, Any]]:
    query: dict[str, str | int] = {
        "project_id": project,
        "device_type": 10,
        "start_date": "2026-10-1",
        "end_date": "2026-12-31",
    }
    rows = ok(api.get("/api/v1/scheduler/history/time/", params=query))["data"]
    return {(row["device_id"], row["to_time"]): row for row in rows}


def test_monthly_billing_through_the_api(api: TestClient, engine: Engine) -> None:
    project = _estate(api)
    power = _task(api, project, 2)
    water = _task(api, project, 1)

    run = ok(api.post(f"/api/v1/scheduler/tasks/{power}/run/", json={"at": OCT_1}))["data"]
    assert (run["billed"], run["skipped"]) == (1, [{"device_id": "E2", "reason": "no readings"}])
    ok(api.post(f"/api/v1/scheduler/tasks/{water}/run/", json={"at": OCT_1}))
    october = _bills(api, project)
    e1 = october[("E1", OCT_1)]
    # 1150 + 50 * 262 h / 288 h = 1195.486; 195.486 kWh: 100 * 0.50 + 95.486 * 0.70 + 5
    assert (e1["previous_reading_data"], e1["reading_data"], e1["charge"]) == (
        "1000.000",
        "1195.486",
        "121.84",
    )
    assert e1["device_type"] == 0
    assert e1["house_address"] == ["安心e家", "1", "2", "301", "空调房"]
    assert e1["residents"] == [{"name": "卢博腾", "cellphone": "13336915622"}]
    w1 = october[("W1", OCT_1)]  # 22.75 - 10.5 = 12.25 m3 at 3.20
    assert (w1["reading_data"], w1["charge"], w1["device_type"]) == ("22.750", "39.20", 1)

    # the scheduler, its clock at 00:05 on 1 December in Berlin, owes the fires since the
    # last run: 1 November and 1 December (winter time), each billed once
    clock = datetime.fromisoformat("2026-12-01T00:05:00+01:00")
    reports = BillingScheduler(engine, clock=lambda: clock).tick()
    assert sorted(report.scheduled_at for report in reports) == sorted(
        [us(NOV_1), us(NOV_1), us(DEC_1), us(DEC_1)]
    )
    assert all(r.run_id is None for r in BillingScheduler(engine, clock=lambda: clock).tick())
    bills = _bills(api, project)
    # 1195.486 to 1250 before the exchange, then 3 to 3 + 10 * 167 h / 264 h = 9.326:
    # 60.840 kWh * 0.50 + 5 = 35.42
    november = bills[("E1", NOV_1)]
    assert (november["reading_data"], november["charge"]) == ("9.326", "35.42")
    # 9.326 to 13 held past the last reading (estimated): 3.674 kWh * 0.50 + 5 = 6.837
    december = bills[("E1", DEC_1)]
    assert (december["previous_reading_data"], december["reading_data"]) == ("9.326", "13.000")
    assert december["charge"] == "6.84"
    again = ok(api.post(f"/api/v1/scheduler/tasks/{power}/run/", json={"at": OCT_1}))["data"]
    assert again["already_run"] is True
    assert len(_bills(api, project)) == 6  # E1 and W1 in October, November and December
