"""The scheduled-billing API of the third seed, through the real app on both databases."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, delete, insert, update

from meterhub.billing.history import ITEM_COLUMNS, BillFilter, csv_text, iter_bills
from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import Tariff
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device, get_device
from meterhub.registry.projects import assign_device, create_house, create_project
from meterhub.registry.tables import houses, residents
from meterhub.registry.users import create_user, issue_token
from meterhub.storage import Point, write_points

MONTHLY = {"month": "*", "day": "1", "hour": "0", "minute": "0"}
SEP_1 = "2026-09-01T00:00:00+00:00"
OCT_1 = "2026-10-01T00:00:00+02:00"  # midnight in Berlin (CEST)
NOV_1 = "2026-11-01T00:00:00+01:00"  # midnight in Berlin (CET)
ADDRESS = ["安心e家", "", "", "", "空调房"]
PEOPLE = [("卢博腾", "13336915622"), ("高帅", "13336919098")]
TASK_FIELDS = {
    "name",
    "crontab",
    "natrual_key",
    "project_id",
    "device_type",
    "last_run_at",
    "enabled",
    "update_time",
    "create_time",
    "description",
}


def us(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


def ok(response: httpx2.Response, status: int = 200) -> Any:
    """The ``data`` of a successful envelope."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"meta", "data"}
    assert body["meta"]["code"] == 0
    return body["data"]


def refused(response: httpx2.Response, status: int, field: str) -> str:
    """The error envelope's message, which must name ``field``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["data"] is None
    assert body["meta"]["code"] != 0
    message: str = body["meta"]["message"]
    assert field in message
    return message


def _readings(
    conn: Connection, device_id: str, channel: str, rows: list[tuple[str, float]]
) -> None:
    tag = channel_tags(conn, get_device(conn, device_id).pk)[channel]
    write_points(conn, [Point(tag, us(when), value, 0) for when, value in rows])


@pytest.fixture
def estate(engine: Engine) -> dict[str, int]:
    """A Berlin project with one house: E1 (electricity), W1 (tap), W2 (purified water).

    Readings fall on the fire times, so bills are exact: E1 127.58 kWh in September at 0.50
    (63.79), 72.42 in October (36.21); W1 12.25 m3 at 3.20 (39.20), then 7.25 (23.20);
    W2 2.5 m3 at 8.00 (20.00), then nothing new (0.00, estimated).
    """
    with engine.begin() as conn:
        project = create_project(conn, "Estate", "Europe/Berlin", "CNY")
        other = create_project(conn, "Elsewhere", "Asia/Shanghai", "CNY")
        house = create_house(conn, project.id, ADDRESS, PEOPLE)
        for device_id, kind, water_kind in (
            ("E1", DeviceType.ELECTRICITY, None),
            ("W1", DeviceType.WATER, "tap"),
            ("W2", DeviceType.WATER, "purified"),
        ):
            create_device(conn, device_id, kind)
            assign_device(conn, device_id, house, water_kind)
        set_tariff(conn, project.id, DeviceType.ELECTRICITY, Tariff.flat(Decimal("0.50")))
        set_tariff(conn, project.id, DeviceType.WATER, Tariff.flat(Decimal("3.20")), "tap")
        set_tariff(conn, project.id, DeviceType.WATER, Tariff.flat(Decimal("8.00")), "purified")
        _readings(conn, "E1", "kW", [(SEP_1, 1000.0), (OCT_1, 1127.58), (NOV_1, 1200.0)])
        _readings(conn, "W1", "V", [(SEP_1, 10.5), (OCT_1, 22.75), (NOV_1, 30.0)])
        _readings(conn, "W2", "V", [("2026-09-10T00:00:00+00:00", 5.0), (OCT_1, 7.5)])
    return {"project": project.id, "other": other.id, "house": house}


def _create(api: TestClient, project_id: int, device_type: int = 1, **extra: Any) -> Any:
    body = {
        "name": "每月出账",
        "project_id": project_id,
        "crontab": MONTHLY,
        "device_type": device_type,
        **extra,
    }
    return ok(api.post("/api/v1/scheduler/task/", json=body), 201)


def _task_url(key: str, tail: str = "") -> str:
    return f"/api/v1/scheduler/tasks/{key}/{tail}"


@pytest.fixture
def billed(api: TestClient, estate: dict[str, int]) -> dict[str, int]:
    """The estate with both tasks run for September (to 1 Oct) and October (to 1 Nov)."""
    for device_type in (2, 1):
        key = _create(api, estate["project"], device_type)["natrual_key"]
        for at in (OCT_1, NOV_1):
            ok(api.post(_task_url(key, "run/"), json={"at": at}))
    return estate


# --- tasks ---------------------------------------------------------------------------------


def test_create_answers_the_seed_fields(api: TestClient, estate: dict[str, int]) -> None:
    body = {
        "name": "每月出账",
        "project_id": estate["project"],
        "crontab": {"month": "*", "day": "1", "hour": "1", "minute": "0"},
        "device_type": 1,
        "enabled": True,
        "description": "定时出账",
    }
    response = api.post("/api/v1/scheduler/task/", json=body)
    assert response.status_code == 201
    assert response.json()["meta"] == {"code": 0, "message": "create crontab ok."}
    task = ok(response, 201)
    assert set(task) == TASK_FIELDS
    assert task["name"] == "每月出账"
    assert task["crontab"] == {"month": "*", "day": "1", "hour": "1", "minute": "0"}
    assert task["project_id"] == estate["project"]
    assert task["device_type"] == 1
    assert task["enabled"] is True
    assert task["description"] == "定时出账"
    assert task["last_run_at"] is None
    assert len(task["natrual_key"]) == 32
    created = datetime.fromisoformat(task["create_time"])
    assert created.utcoffset() == datetime.now(ZoneInfo("Europe/Berlin")).utcoffset()
    assert abs(datetime.now(created.tzinfo) - created) < timedelta(minutes=1)
    assert task["update_time"] == task["create_time"]


def test_defaults_and_integer_cron_fields(api: TestClient, estate: dict[str, int]) -> None:
    body = {
        "name": "power",
        "project_id": estate["project"],
        "crontab": {"month": "*", "day": 1, "hour": 0, "minute": "*/15"},
        "device_type": 2,
    }
    task = ok(api.post("/api/v1/scheduler/task/", json=body), 201)
    assert (task["enabled"], task["description"], task["device_type"]) == (True, "", 2)
    assert task["crontab"] == {"month": "*", "day": "1", "hour": "0", "minute": "*/15"}


def test_get_update_status_delete(api: TestClient, estate: dict[str, int]) -> None:
    created = _create(api, estate["project"], description="old")
    key = created["natrual_key"]

    response = api.get(_task_url(key))
    assert response.json()["meta"]["message"] == "task info"
    assert ok(response) == created

    change = {
        "name": "每月2号出账",
        "crontab": {"month": "1-6", "day": "2", "hour": "1", "minute": "30"},
        "enabled": False,
        "description": "new",
    }
    response = api.put(_task_url(key), json=change)
    assert response.json()["meta"]["message"] == "task update ok."
    updated = ok(response)
    assert {k: updated[k] for k in change} == change
    assert (updated["project_id"], updated["device_type"]) == (estate["project"], 1)
    assert updated["create_time"] == created["create_time"]
    assert datetime.fromisoformat(updated["update_time"]) >= datetime.fromisoformat(
        created["update_time"]
    )
    assert ok(api.get(_task_url(key))) == updated

    response = api.put(_task_url(key, "status/"), json={"enabled": True})
    assert response.json() == {"meta": {"code": 0, "message": "update ok."}, "data": {}}
    assert ok(api.get(_task_url(key)))["enabled"] is True
    ok(api.put(_task_url(key, "status/"), json={"enabled": False}))
    assert ok(api.get(_task_url(key)))["enabled"] is False

    response = api.delete(_task_url(key))
    assert response.status_code == 200
    assert response.json() == {"meta": {"code": 0, "message": "delete ok."}, "data": {}}
    refused(api.get(_task_url(key)), 404, key)


def test_update_needs_every_field(api: TestClient, estate: dict[str, int]) -> None:
    key = _create(api, estate["project"])["natrual_key"]
    change = {"name": "x", "crontab": MONTHLY, "enabled": True}
    refused(api.put(_task_url(key), json=change), 400, "description")
    refused(api.put(_task_url(key, "status/"), json={}), 400, "enabled")


def test_list_paginates(api: TestClient, estate: dict[str, int]) -> None:
    project = estate["project"]
    names = [f"task {n}" for n in range(5)]
    for n, name in enumerate(names):
        _create(api, project, 1 if n < 3 else 2, name=name)
    _create(api, estate["other"], name="elsewhere")

    def page(number: int, **params: Any) -> Any:
        query = {"project_id": project, "device_type": 0, "page_size": 2, "page": number}
        response = api.get("/api/v1/scheduler/tasks/", params={**query, **params})
        assert response.json()["meta"]["message"] == "task list info"
        return ok(response)

    pages = [page(n) for n in (1, 2, 3)]
    assert [(p["count"], p["page_size"], p["next"], p["previous"]) for p in pages] == [
        (5, 2, True, False),
        (5, 2, True, True),
        (5, 2, False, True),
    ]
    assert [t["name"] for p in pages for t in p["results"]] == names
    assert all(set(t) == TASK_FIELDS for p in pages for t in p["results"])
    assert page(4)["results"] == []

    electricity = page(1, device_type=2, page_size=10)
    assert (electricity["count"], [t["name"] for t in electricity["results"]]) == (2, names[3:])
    water = page(1, device_type=1, page_size=10)
    assert {t["device_type"] for t in water["results"]} == {1}
    assert water["count"] == 3
    default = ok(api.get("/api/v1/scheduler/tasks/", params={"project_id": project}))
    assert (default["count"], default["page_size"], len(default["results"])) == (5, 10, 5)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": 101}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"page": 0}, "page"),
        ({"device_type": 3}, "device_type"),
        ({"project_id": "x"}, "project_id"),
    ],
)
def test_list_refuses_bad_parameters(
    api: TestClient, estate: dict[str, int], params: dict[str, Any], field: str
) -> None:
    query = {"project_id": estate["project"], **params}
    refused(api.get("/api/v1/scheduler/tasks/", params=query), 400, field)


def test_list_needs_a_project(api: TestClient, estate: dict[str, int]) -> None:
    refused(api.get("/api/v1/scheduler/tasks/"), 400, "project_id")
    refused(api.get("/api/v1/scheduler/tasks/", params={"project_id": 999}), 404, "999")


@pytest.mark.parametrize(
    ("crontab", "field"),
    [
        ({**MONTHLY, "day": "32"}, "crontab.day"),
        ({**MONTHLY, "month": "2", "day": "31"}, "crontab.day"),
        ({**MONTHLY, "minute": "*/0"}, "crontab.minute"),
        ({**MONTHLY, "hour": "1-"}, "crontab.hour"),
        ({**MONTHLY, "month": ""}, "crontab.month"),
        ({"month": "*", "day": "1", "minute": "0"}, "crontab.hour"),
        ({**MONTHLY, "second": "0"}, "crontab.second"),
    ],
)
def test_cron_errors_name_the_field(
    api: TestClient, estate: dict[str, int], crontab: dict[str, str], field: str
) -> None:
    body = {"name": "t", "project_id": estate["project"], "crontab": crontab, "device_type": 1}
    refused(api.post("/api/v1/scheduler/task/", json=body), 400, field)
    key = _create(api, estate["project"])["natrual_key"]
    change = {"name": "t", "crontab": crontab, "enabled": True, "description": ""}
    refused(api.put(_task_url(key), json=change), 400, field)
    assert ok(api.get(_task_url(key)))["crontab"] == MONTHLY


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"device_type": 3}, "device_type"),
        ({"device_type": 0}, "device_type"),
        ({"name": ""}, "name"),
        ({"project_id": None}, "project_id"),
        ({"crontab": None}, "crontab"),
    ],
)
def test_task_body_errors_name_the_field(
    api: TestClient, estate: dict[str, int], change: dict[str, Any], field: str
) -> None:
    body = {"name": "t", "project_id": estate["project"], "crontab": MONTHLY, "device_type": 1}
    body = {k: v for k, v in {**body, **change}.items() if v is not None}
    refused(api.post("/api/v1/scheduler/task/", json=body), 400, field)


def test_create_in_an_unknown_project_is_404(api: TestClient, estate: dict[str, int]) -> None:
    body = {"name": "t", "project_id": 999, "crontab": MONTHLY, "device_type": 1}
    refused(api.post("/api/v1/scheduler/task/", json=body), 404, "999")


@pytest.mark.parametrize(
    ("method", "tail", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"name": "n", "crontab": MONTHLY, "enabled": True, "description": ""}),
        ("DELETE", "", None),
        ("PUT", "status/", {"enabled": True}),
        ("POST", "run/", None),
        ("GET", "preview/", None),
    ],
)
def test_unknown_task_is_404(
    api: TestClient, estate: dict[str, int], method: str, tail: str, body: Any
) -> None:
    key = "0" * 32
    refused(api.request(method, _task_url(key, tail), json=body), 404, key)


def test_preview_lists_the_next_five_fires_in_project_time(
    api: TestClient, estate: dict[str, int]
) -> None:
    key = _create(api, estate["project"])["natrual_key"]
    preview = ok(api.get(_task_url(key, "preview/")))
    assert preview["timezone"] == "Europe/Berlin"
    fires = [datetime.fromisoformat(text) for text in preview["fires"]]
    assert len(fires) == 5
    assert fires == sorted(fires)
    assert fires[0] > datetime.now(fires[0].tzinfo)
    for fire in fires:  # local midnight of the 1st, CET or CEST
        assert (fire.day, fire.hour, fire.minute) == (1, 0, 0)
        assert fire.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert len({(f.year, f.month) for f in fires}) == 5


# --- runs ----------------------------------------------------------------------------------


def test_manual_run_bills_once(api: TestClient, estate: dict[str, int]) -> None:
    key = _create(api, estate["project"], 2)["natrual_key"]
    first = ok(api.post(_task_url(key, "run/"), json={"at": "2026-10-01T00:00:00"}))
    assert first["run_id"] is not None
    assert first == {
        "run_id": first["run_id"],
        "scheduled_at": OCT_1,
        "billed": 1,
        "skipped": [],
        "already_run": False,
    }
    assert ok(api.get(_task_url(key)))["last_run_at"] == OCT_1

    again = ok(api.post(_task_url(key, "run/"), json={"at": "2026-09-30T22:00:00Z"}))
    assert again == {
        "run_id": None,
        "scheduled_at": OCT_1,
        "billed": 0,
        "skipped": [],
        "already_run": True,
    }
    history = ok(api.get("/api/v1/scheduler/history/", params={"project_id": estate["project"]}))
    assert history["count"] == 1
    assert history["results"][0]["charge"] == "63.79"


def test_run_reports_skipped_devices(
    api: TestClient, engine: Engine, estate: dict[str, int]
) -> None:
    with engine.begin() as conn:
        create_device(conn, "E9", DeviceType.ELECTRICITY)
        assign_device(conn, "E9", estate["house"])
    key = _create(api, estate["project"], 2)["natrual_key"]
    report = ok(api.post(_task_url(key, "run/"), json={"at": OCT_1}))
    assert report["billed"] == 1
    assert report["skipped"] == [{"device_id": "E9", "reason": "no readings"}]


def test_run_without_an_instant_bills_up_to_this_minute(
    api: TestClient, estate: dict[str, int]
) -> None:
    key = _create(api, estate["project"], 1)["natrual_key"]
    report = ok(api.post(_task_url(key, "run/")))
    at = datetime.fromisoformat(report["scheduled_at"])
    assert (at.second, at.microsecond) == (0, 0)
    assert timedelta(0) <= datetime.now(at.tzinfo) - at < timedelta(minutes=2)
    assert report["billed"] == 2
    again = ok(api.post(_task_url(key, "run/"), json={}))
    assert again["billed"] == (0 if again["already_run"] else 2)


@pytest.mark.parametrize("at", ["next tuesday", "2026-13-01", "2999-01-01T00:00:00Z"])
def test_run_refuses_a_bad_or_future_instant(
    api: TestClient, estate: dict[str, int], at: str
) -> None:
    key = _create(api, estate["project"], 2)["natrual_key"]
    refused(api.post(_task_url(key, "run/"), json={"at": at}), 400, "at")
    history = ok(api.get("/api/v1/scheduler/history/", params={"project_id": estate["project"]}))
    assert history["count"] == 0


# --- history -------------------------------------------------------------------------------


def test_history_lists_bills_newest_first(api: TestClient, billed: dict[str, int]) -> None:
    def history(**params: Any) -> Any:
        query = {"project_id": billed["project"], **params}
        response = api.get("/api/v1/scheduler/history/", params=query)
        assert response.json()["meta"]["message"] == "info list"
        return ok(response)

    first = history(device_type=2, page_size=1)
    assert (first["count"], first["page_size"], first["next"], first["previous"]) == (
        2,
        1,
        True,
        False,
    )
    (november,) = first["results"]
    assert november == {
        "id": november["id"],
        "device_id": "E1",
        "device_type": 2,
        "charge": "36.21",
        "reading_data": "1200.000",
        "from_time": OCT_1,
        "to_time": NOV_1,
        "created_at": november["created_at"],
    }
    assert isinstance(november["id"], str)
    assert datetime.fromisoformat(november["created_at"]).utcoffset() == timedelta(hours=1)
    second = history(device_type=2, page_size=1, page=2)
    assert (second["next"], second["previous"]) == (False, True)
    (october,) = second["results"]
    assert (october["charge"], october["reading_data"]) == ("63.79", "1127.580")
    assert (october["from_time"], october["to_time"]) == ("2026-09-01T02:00:00+02:00", OCT_1)

    everything = history(page_size=100)
    assert everything["count"] == 6
    ends = [bill["to_time"] for bill in everything["results"]]
    assert ends == [NOV_1] * 3 + [OCT_1] * 3
    water = history(device_type=1)
    assert water["count"] == 4
    assert {bill["device_type"] for bill in water["results"]} == {1}
    w1 = history(device_id="W1")
    assert [(b["device_id"], b["charge"]) for b in w1["results"]] == [
        ("W1", "23.20"),
        ("W1", "39.20"),
    ]
    assert history(device_id="nope")["count"] == 0
    refused(
        api.get(
            "/api/v1/scheduler/history/", params={"project_id": billed["project"], "page_size": 101}
        ),
        400,
        "page_size",
    )


def _by_date(api: TestClient, project_id: int, **params: Any) -> httpx2.Response:
    query: dict[str, Any] = {"project_id": project_id, "start_date": "2026-10-1"}
    query["end_date"] = "2026-10-31"
    return api.get("/api/v1/scheduler/history/time/", params={**query, **params})


def test_history_by_date_carries_the_snapshot(
    api: TestClient, engine: Engine, billed: dict[str, int]
) -> None:
    response = _by_date(api, billed["project"], device_type=0)
    assert response.json()["meta"] == {"code": 0, "message": "success"}
    expected = [
        {
            "id": ok(response)[0]["id"],
            "house_address": ADDRESS,
            "residents": [{"name": n, "cellphone": c} for n, c in PEOPLE],
            "device_id": "E1",
            "device_type": 0,
            "charge": "63.79",
            "previous_reading_data": "1000.000",
            "reading_data": "1127.580",
            "from_time": "2026-09-01T02:00:00+02:00",
            "to_time": OCT_1,
            "created_at": ok(response)[0]["created_at"],
        }
    ]
    assert ok(response) == expected

    with engine.begin() as conn:  # the house changes after billing
        conn.execute(delete(residents).where(residents.c.house_id == billed["house"]))
        conn.execute(insert(residents).values(house_id=billed["house"], name="新", cellphone="1"))
        moved = json.dumps(["x", "y", "z", "1", "2"])
        conn.execute(update(houses).where(houses.c.id == billed["house"]).values(address=moved))
    assert ok(_by_date(api, billed["project"], device_type=0)) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {"E1", "W1", "W2"}),
        ({"device_type": 10}, {"E1", "W1", "W2"}),
        ({"device_type": 0}, {"E1"}),
        ({"device_type": 1}, {"W1", "W2"}),
        ({"device_type": 1, "wm_type": "自来水表"}, {"W1"}),
        ({"device_type": 1, "wm_type": "纯净水表"}, {"W2"}),
        ({"device_type": 1, "wm_type": "purified"}, {"W2"}),
        ({"device_type": 10, "wm_type": "tap"}, {"E1", "W1"}),
        ({"device_type": 0, "wm_type": "自来水表"}, {"E1"}),  # the seed's own example
        ({"device_type": 1, "wm_type": ""}, {"W1", "W2"}),
        ({"device_id": "W2"}, {"W2"}),
    ],
)
def test_history_by_date_filters(
    api: TestClient, billed: dict[str, int], params: dict[str, Any], expected: set[str]
) -> None:
    found = ok(_by_date(api, billed["project"], **params))
    assert {bill["device_id"] for bill in found} == expected
    assert len(found) == len(expected)
    codes = {"E1": 0, "W1": 1, "W2": 1}
    assert all(bill["device_type"] == codes[bill["device_id"]] for bill in found)


@pytest.mark.parametrize(
    ("start", "end", "ends"),
    [
        ("2026-10-1", "2026-10-31", {OCT_1}),
        ("2026-10-01", "2026-11-01", {OCT_1, NOV_1}),
        ("2026-9-1", "2026-9-30", set()),  # 1 Oct 00:00 Berlin is still 30 Sep in UTC
        ("2026-11-1", "2026-11-1", {NOV_1}),
        ("2026-10-2", "2026-10-31", set()),
    ],
)
def test_history_by_date_uses_whole_days_in_project_time(
    api: TestClient, billed: dict[str, int], start: str, end: str, ends: set[str]
) -> None:
    found = ok(_by_date(api, billed["project"], start_date=start, end_date=end))
    assert {bill["to_time"] for bill in found} == ends
    assert len(found) == 3 * len(ends)
    to_times = [datetime.fromisoformat(bill["to_time"]) for bill in found]
    assert to_times == sorted(to_times, reverse=True)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start_date": "2026-13-1"}, "start_date"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"end_date": "2026-2-30"}, "end_date"),
        ({"start_date": "2026-10-5", "end_date": "2026-10-4"}, "end_date"),
        ({"wm_type": "矿泉水表"}, "wm_type"),
        ({"device_type": 2}, "device_type"),
        ({"start_date": None}, "start_date"),
        ({"project_id": None}, "project_id"),
    ],
)
def test_history_by_date_refuses_bad_filters(
    api: TestClient, billed: dict[str, int], params: dict[str, Any], field: str
) -> None:
    query: dict[str, Any] = {"project_id": billed["project"], "start_date": "2026-10-1"}
    query["end_date"] = "2026-10-31"
    query = {k: v for k, v in {**query, **params}.items() if v is not None}
    refused(api.get("/api/v1/scheduler/history/time/", params=query), 400, field)
    refused(api.get("/api/v1/scheduler/history/export.csv", params=query), 400, field)


def test_csv_export_equals_history_by_date(api: TestClient, billed: dict[str, int]) -> None:
    params = {"start_date": "2026-9-1", "end_date": "2026-11-30"}
    rows = ok(_by_date(api, billed["project"], **params))
    assert len(rows) == 6
    query: dict[str, Any] = {"project_id": billed["project"], **params}
    response = api.get("/api/v1/scheduler/history/export.csv", params=query)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="bills-{billed["project"]}-2026-09-01-2026-11-30.csv"'
    )
    reader = csv.DictReader(io.StringIO(response.text))
    assert reader.fieldnames == [
        "id",
        "device_id",
        "device_type",
        "water_kind",
        "house_address",
        "residents",
        "from_time",
        "to_time",
        "previous_reading",
        "reading",
        "consumption",
        "charge",
        "currency",
        "estimated",
        "created_at",
        *ITEM_COLUMNS,
    ]
    exported = list(reader)
    kinds = {0: "electricity", 1: "water"}
    assert [
        (
            r["id"],
            r["device_id"],
            r["device_type"],
            json.loads(r["house_address"]),
            json.loads(r["residents"]),
            r["from_time"],
            r["to_time"],
            r["previous_reading"],
            r["reading"],
            r["charge"],
            r["created_at"],
        )
        for r in exported
    ] == [
        (
            b["id"],
            b["device_id"],
            kinds[b["device_type"]],
            b["house_address"],
            b["residents"],
            b["from_time"],
            b["to_time"],
            b["previous_reading_data"],
            b["reading_data"],
            b["charge"],
            b["created_at"],
        )
        for b in rows
    ]
    by_id = {(r["device_id"], r["to_time"]): r for r in exported}
    e1 = by_id[("E1", OCT_1)]
    assert (e1["consumption"], e1["currency"], e1["estimated"], e1["water_kind"]) == (
        "127.580",
        "CNY",
        "false",
        "",
    )
    w2 = by_id[("W2", NOV_1)]
    assert (w2["water_kind"], w2["consumption"], w2["charge"], w2["estimated"]) == (
        "purified",
        "0.000",
        "0.00",
        "true",
    )
    tap = api.get("/api/v1/scheduler/history/export.csv", params={**query, "wm_type": "自来水表"})
    assert {r["device_id"] for r in csv.DictReader(io.StringIO(tap.text))} == {"E1", "W1"}


def test_keyset_chunks_read_every_bill_once(engine: Engine, billed: dict[str, int]) -> None:
    where = BillFilter(billed["project"])
    with engine.connect() as conn:
        whole = list(iter_bills(conn, where))
        for chunk in (1, 2, 3, 5, 6, 7):
            assert list(iter_bills(conn, where, chunk=chunk)) == whole
    assert len(whole) == 6
    assert len({bill.id for bill in whole}) == 6
    zone = ZoneInfo("Europe/Berlin")
    pieces = list(csv_text(whole, zone, flush_at=1))
    assert len(pieces) == 6  # the header goes with the first bill
    assert all(piece.endswith("\r\n") for piece in pieces)
    assert "".join(pieces) == "".join(csv_text(whole, zone))
    assert "".join(pieces).count("\r\n") == 7


def test_csv_with_no_bills_is_the_header(api: TestClient, estate: dict[str, int]) -> None:
    query: dict[str, Any] = {"project_id": estate["project"], "start_date": "2020-1-1"}
    query["end_date"] = "2020-1-2"
    response = api.get("/api/v1/scheduler/history/export.csv", params=query)
    assert response.status_code == 200
    assert response.text.splitlines()[0].startswith("id,device_id,device_type,water_kind")
    assert len(response.text.splitlines()) == 1


# --- access --------------------------------------------------------------------------------


def test_other_projects_are_hidden_from_a_non_admin(
    api: TestClient, engine: Engine, billed: dict[str, int]
) -> None:
    project, other = billed["project"], billed["other"]
    key = ok(api.get("/api/v1/scheduler/tasks/", params={"project_id": project}))["results"][0][
        "natrual_key"
    ]
    with engine.begin() as conn:
        user = create_user(conn, "operator", "long enough", project_ids=[other])
        token = issue_token(conn, user.id)
    headers = {"Authorization": f"token {token}"}
    dates = {"start_date": "2026-9-1", "end_date": "2026-11-30"}

    def hidden(method: str, url: str, **kwargs: Any) -> None:
        refused(api.request(method, url, headers=headers, **kwargs), 404, str(project))

    change = {"name": "n", "crontab": MONTHLY, "enabled": True, "description": ""}
    for method, tail, body in (
        ("GET", "", None),
        ("PUT", "", change),
        ("PUT", "status/", {"enabled": False}),
        ("POST", "run/", {"at": NOV_1}),
        ("GET", "preview/", None),
        ("DELETE", "", None),
    ):
        hidden(method, _task_url(key, tail), json=body)
    hidden("GET", "/api/v1/scheduler/tasks/", params={"project_id": project})
    hidden("GET", "/api/v1/scheduler/history/", params={"project_id": project})
    hidden("GET", "/api/v1/scheduler/history/time/", params={"project_id": project, **dates})
    hidden("GET", "/api/v1/scheduler/history/export.csv", params={"project_id": project, **dates})
    body = {"name": "t", "project_id": project, "crontab": MONTHLY, "device_type": 1}
    hidden("POST", "/api/v1/scheduler/task/", json=body)

    assert ok(api.get(_task_url(key)))["enabled"] is True  # untouched by the attempts
    own = {**body, "project_id": other}
    created = ok(api.post("/api/v1/scheduler/task/", json=own, headers=headers), 201)
    listed = ok(api.get("/api/v1/scheduler/tasks/", params={"project_id": other}, headers=headers))
    assert [t["natrual_key"] for t in listed["results"]] == [created["natrual_key"]]


def test_no_token_is_401(api: TestClient, estate: dict[str, int]) -> None:
    response = api.get(
        "/api/v1/scheduler/tasks/",
        params={"project_id": estate["project"]},
        headers={"Authorization": ""},
    )
    assert response.status_code == 401
    assert response.json()["meta"]["code"] != 0
    assert response.json()["data"] is None


def test_openapi_names_schemas_by_role(api: TestClient) -> None:
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    for name in (
        "TaskCreate",
        "TaskUpdate",
        "TaskPublic",
        "TasksPublic",
        "BillPublic",
        "BillsPublic",
        "BillPeriodPublic",
        "TaskEnvelope",
        "TasksEnvelope",
        "BillsEnvelope",
        "BillPeriodsEnvelope",
    ):
        assert name in schemas
