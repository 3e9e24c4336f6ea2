"""Projects, houses, residents, devices in houses and tariffs through the real app, on
both databases: happy paths, every bad field named, and what another project's user sees."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import Engine, select

from meterhub.billing.runs import run_task
from meterhub.billing.tables import bills
from meterhub.billing.tasks import create_task
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, get_device
from meterhub.registry.users import create_user, issue_token
from meterhub.storage import Point, write_points

ESTATE = {"name": "安心e家", "timezone": "Asia/Shanghai", "currency": "CNY"}
ADDRESS = ["安心e家", "1", "2", "301", "空调房"]
PEOPLE = [
    {"name": "卢博腾", "cellphone": "13336915622"},
    {"name": "高帅", "cellphone": "+86 133-3691"},
]
TIERED = {
    "tiers": [{"up_to": "100", "price": "0.55"}, {"up_to": None, "price": "0.80"}],
    "fixed_charge": "5.00",
}

Json = dict[str, Any]
Headers = dict[str, str]


def ok(answer: Response, status: int = 200) -> Json:
    assert answer.status_code == status, answer.text
    body: Json = answer.json()
    return body


def bad_fields(answer: Response) -> set[str]:
    assert answer.status_code == 400, answer.text
    return set(answer.json()["errors"])


def us(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


@pytest.fixture
def project(api: TestClient) -> Json:
    return ok(api.post("/api/v1/projects/", json=ESTATE), 201)


@pytest.fixture
def house(api: TestClient, project: Json) -> Json:
    body = {"address": ADDRESS, "residents": PEOPLE}
    return ok(api.post(f"/api/v1/projects/{project['id']}/houses/", json=body), 201)


@pytest.fixture
def meters(api: TestClient) -> None:
    for device_id, kind in (("E1", "electricity"), ("W1", "water"), ("W2", "water")):
        ok(api.post("/api/v1/meters/", json={"device_id": device_id, "type": kind}), 201)


@pytest.fixture
def member(engine: Engine) -> Callable[..., Headers]:
    """Headers of a new non-admin user granted the given projects."""

    def make(*project_ids: int) -> Headers:
        with engine.begin() as conn:
            name = f"member{len(project_ids)}-{'-'.join(map(str, project_ids))}"
            user = create_user(conn, name, "correct horse", project_ids=list(project_ids))
            return {"Authorization": f"token {issue_token(conn, user.id)}"}

    return make


# Projects


def test_project_lifecycle(api: TestClient) -> None:
    created = ok(api.post("/api/v1/projects/", json={**ESTATE, "currency": "cny"}), 201)
    assert created == {"id": created["id"], **ESTATE}
    url = f"/api/v1/projects/{created['id']}/"
    assert ok(api.get(url)) == created
    listed = ok(api.get("/api/v1/projects/"))
    assert listed == {
        "count": 1,
        "page": 1,
        "page_size": 100,
        "next": False,
        "previous": False,
        "results": [created],
    }
    changed = ok(api.patch(url, json={"timezone": "Europe/Berlin", "currency": "EUR"}))
    assert changed == {**created, "timezone": "Europe/Berlin", "currency": "EUR"}
    assert ok(api.patch(url, json={"name": "  Estate 2 "}))["name"] == "Estate 2"
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert ok(api.get("/api/v1/projects/"))["count"] == 0


def test_projects_are_paginated(api: TestClient) -> None:
    ids = [ok(api.post("/api/v1/projects/", json=ESTATE), 201)["id"] for _ in range(3)]
    first = ok(api.get("/api/v1/projects/?page_size=2"))
    assert [p["id"] for p in first["results"]] == ids[:2]
    assert (first["count"], first["next"], first["previous"]) == (3, True, False)
    second = ok(api.get("/api/v1/projects/?page_size=2&page=2"))
    assert [p["id"] for p in second["results"]] == ids[2:]
    assert (second["next"], second["previous"]) == (False, True)
    assert bad_fields(api.get("/api/v1/projects/?page=0")) == {"page"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**ESTATE, "timezone": "Mars/Olympus"}, "timezone"),
        ({**ESTATE, "timezone": "localtime"}, "timezone"),
        ({**ESTATE, "timezone": "../etc/passwd"}, "timezone"),
        ({**ESTATE, "currency": "YUAN"}, "currency"),
        ({**ESTATE, "currency": "C1Y"}, "currency"),
        ({**ESTATE, "name": "  "}, "name"),
        ({**ESTATE, "name": "x" * 256}, "name"),
        ({"timezone": "UTC", "currency": "CNY"}, "name"),
        ({**ESTATE, "colour": "red"}, "colour"),
    ],
)
def test_bad_project_names_its_field(api: TestClient, body: Json, field: str) -> None:
    assert bad_fields(api.post("/api/v1/projects/", json=body)) == {field}


def test_bad_project_update_names_every_field(api: TestClient, project: Json) -> None:
    url = f"/api/v1/projects/{project['id']}/"
    body = {"timezone": "Nowhere", "currency": "12"}
    assert bad_fields(api.patch(url, json=body)) == {"timezone", "currency"}
    assert ok(api.get(url)) == project


# Houses and residents


def test_house_lifecycle(api: TestClient, project: Json, house: Json) -> None:
    assert house == {
        "id": house["id"],
        "project_id": project["id"],
        "address": ADDRESS,
        "residents": PEOPLE,
        "devices": [],
    }
    url = f"/api/v1/houses/{house['id']}/"
    assert ok(api.get(url)) == house
    moved = ok(api.patch(url, json={"address": ["B", "2", "3", "404", ""]}))
    assert (moved["address"], moved["residents"]) == (["B", "2", "3", "404", ""], PEOPLE)
    people = [{"name": "王芳", "cellphone": "139 0000 1111"}]
    assert ok(api.patch(url, json={"residents": people}))["residents"] == people
    assert ok(api.patch(url, json={"residents": []}))["residents"] == []
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert ok(api.get(f"/api/v1/projects/{project['id']}/houses/"))["count"] == 0


def test_houses_are_listed_with_residents_and_devices(
    api: TestClient, project: Json, house: Json, meters: None
) -> None:
    houses = f"/api/v1/projects/{project['id']}/houses/"
    second = ok(api.post(houses, json={"address": ["A", "1", "1", "101", ""]}), 201)
    ok(api.post(f"/api/v1/houses/{house['id']}/devices/", json={"device_id": "E1"}), 201)
    listed = ok(api.get(houses))
    assert [h["id"] for h in listed["results"]] == [house["id"], second["id"]]
    assert listed["results"][0]["residents"] == PEOPLE
    assert listed["results"][0]["devices"] == [
        {"device_id": "E1", "type": "electricity", "water_kind": None}
    ]
    assert listed["results"][1]["residents"] == listed["results"][1]["devices"] == []
    page = ok(api.get(houses + "?page_size=1&page=2"))
    assert (page["count"], [h["id"] for h in page["results"]]) == (2, [second["id"]])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"address": ADDRESS[:4]}, "address"),
        ({"address": [*ADDRESS, "extra"]}, "address"),
        ({"address": [*ADDRESS[:4], "x" * 256]}, "address[4]"),
        (
            {"address": ADDRESS, "residents": [{"name": "", "cellphone": "123"}]},
            "residents[0].name",
        ),
        (
            {"address": ADDRESS, "residents": [{"name": "A", "cellphone": "abc"}]},
            "residents[0].cellphone",
        ),
        (
            {"address": ADDRESS, "residents": [{"name": "A", "cellphone": "12"}]},
            "residents[0].cellphone",
        ),
        (
            {"address": ADDRESS, "residents": [{"name": "A", "cellphone": "1" * 33}]},
            "residents[0].cellphone",
        ),
        (
            {"address": ADDRESS, "residents": [{"name": "A", "cellphone": "+--"}]},
            "residents[0].cellphone",
        ),
        (
            {"address": ADDRESS, "residents": [*PEOPLE, {"name": " ", "cellphone": "1234"}]},
            "residents[2].name",
        ),
        ({"residents": PEOPLE}, "address"),
    ],
)
def test_bad_house_names_its_field(api: TestClient, project: Json, body: Json, field: str) -> None:
    answer = api.post(f"/api/v1/projects/{project['id']}/houses/", json=body)
    assert bad_fields(answer) == {field}
    assert ok(api.get(f"/api/v1/projects/{project['id']}/houses/"))["count"] == 0


def test_bad_house_update_changes_nothing(api: TestClient, house: Json) -> None:
    url = f"/api/v1/houses/{house['id']}/"
    people = [{"name": "ok", "cellphone": "123"}, {"name": "", "cellphone": "x"}]
    answer = api.patch(url, json={"address": ADDRESS[:3], "residents": people})
    assert bad_fields(answer) == {"address", "residents[1].name", "residents[1].cellphone"}
    assert ok(api.get(url)) == house


# Devices in houses


def test_devices_are_assigned_moved_and_unassigned(
    api: TestClient, project: Json, house: Json, meters: None
) -> None:
    devices = f"/api/v1/houses/{house['id']}/devices/"
    assert ok(api.post(devices, json={"device_id": "E1"}), 201) == {
        "device_id": "E1",
        "type": "electricity",
        "water_kind": None,
    }
    tap = ok(api.post(devices, json={"device_id": "W1", "water_kind": "tap"}), 201)
    assert tap == {"device_id": "W1", "type": "water", "water_kind": "tap"}
    ok(api.post(devices, json={"device_id": "W1", "water_kind": "purified"}), 201)
    found = ok(api.get(f"/api/v1/houses/{house['id']}/"))["devices"]
    assert [(d["device_id"], d["water_kind"]) for d in found] == [("E1", None), ("W1", "purified")]

    other = ok(
        api.post(f"/api/v1/projects/{project['id']}/houses/", json={"address": ADDRESS}), 201
    )
    ok(api.post(f"/api/v1/houses/{other['id']}/devices/", json={"device_id": "E1"}), 201)
    assert [d["device_id"] for d in ok(api.get(f"/api/v1/houses/{house['id']}/"))["devices"]] == [
        "W1"
    ]  # a device is in one house at most: assigning it elsewhere moved it

    assert api.delete(f"{devices}W1/").status_code == 204
    assert api.delete(f"{devices}W1/").status_code == 404
    assert api.delete(f"{devices}E1/").status_code == 404  # it is in the other house
    assert ok(api.get(f"/api/v1/houses/{house['id']}/"))["devices"] == []
    assert ok(api.get("/api/v1/meters/W1/"))["device_id"] == "W1"  # the meter itself stays


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"device_id": "W1"}, "water_kind"),
        ({"device_id": "W1", "water_kind": "hot"}, "water_kind"),
        ({"device_id": "E1", "water_kind": "tap"}, "water_kind"),
        ({"device_id": "nope"}, "device_id"),
        ({"device_id": ""}, "device_id"),
        ({}, "device_id"),
    ],
)
def test_bad_assignment_names_its_field(
    api: TestClient, house: Json, meters: None, body: Json, field: str
) -> None:
    assert bad_fields(api.post(f"/api/v1/houses/{house['id']}/devices/", json=body)) == {field}
    assert ok(api.get(f"/api/v1/houses/{house['id']}/"))["devices"] == []


# Tariffs


def test_tariffs_set_listed_replaced_and_removed(api: TestClient, project: Json) -> None:
    base = f"/api/v1/projects/{project['id']}/tariffs/"
    power = ok(api.put(f"{base}electricity/", json=TIERED))
    assert power == {"device_type": "electricity", "water_kind": None, **TIERED}
    tap = ok(api.put(f"{base}water/?water_kind=tap", json={"price": 3.2, "fixed_charge": 1.10}))
    assert tap == {
        "device_type": "water",
        "water_kind": "tap",
        "tiers": [{"up_to": None, "price": "3.2"}],
        "fixed_charge": "1.1",
    }
    numbers = {"tiers": [{"up_to": 100, "price": 0.1}, {"price": 0.3}]}
    pure = ok(api.put(f"{base}water/?water_kind=purified", json=numbers))
    assert pure["tiers"] == [{"up_to": "100", "price": "0.1"}, {"up_to": None, "price": "0.3"}]
    assert pure["fixed_charge"] == "0"

    listed = ok(api.get(base))
    assert listed["count"] == 3
    assert listed["results"] == [power, pure, tap]
    assert ok(api.get(f"{base}water/?water_kind=tap")) == tap

    replaced = ok(api.put(f"{base}electricity/", json={"price": "0.60"}))
    assert replaced["tiers"] == [{"up_to": None, "price": "0.60"}]
    assert replaced["fixed_charge"] == "0"
    assert api.delete(f"{base}water/?water_kind=tap").status_code == 204
    assert api.get(f"{base}water/?water_kind=tap").status_code == 404
    assert api.delete(f"{base}water/?water_kind=tap").status_code == 404
    assert [t["water_kind"] for t in ok(api.get(base))["results"]] == [None, "purified"]


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        (
            "electricity/",
            {
                "tiers": [
                    {"up_to": "100", "price": "1"},
                    {"up_to": "50", "price": "2"},
                    {"price": "3"},
                ]
            },
            {"tiers[1].up_to"},
        ),
        ("electricity/", {"tiers": [{"up_to": "100", "price": "1"}]}, {"tiers[0].up_to"}),
        (
            "electricity/",
            {"tiers": [{"price": "1"}, {"price": "2"}]},
            {"tiers[0].up_to"},
        ),
        (
            "electricity/",
            {"tiers": [{"up_to": "0", "price": "1"}, {"price": "2"}]},
            {"tiers[0].up_to"},
        ),
        ("electricity/", {"tiers": [{"up_to": None, "price": "-0.5"}]}, {"tiers[0].price"}),
        ("electricity/", {"tiers": [{"up_to": None, "price": "cheap"}]}, {"tiers[0].price"}),
        ("electricity/", {"tiers": []}, {"tiers"}),
        ("electricity/", {"price": "-1"}, {"price"}),
        ("electricity/", {"price": "NaN"}, {"price"}),
        ("electricity/", {"price": "1", "fixed_charge": "-5"}, {"fixed_charge"}),
        ("electricity/", {"price": "1", "tiers": [{"price": "1"}]}, {"price"}),
        ("electricity/", {"fixed_charge": "5"}, {"price"}),
        ("electricity/", {"price": True}, {"price"}),
        ("electricity/?water_kind=tap", {"price": "1"}, {"water_kind"}),
        ("water/", {"price": "1"}, {"water_kind"}),
        ("water/?water_kind=hot", {"price": "1"}, {"water_kind"}),
        ("gas/", {"price": "1"}, {"device_type"}),
    ],
)
def test_bad_tariff_names_its_field(
    api: TestClient, project: Json, path: str, body: Json, fields: set[str]
) -> None:
    base = f"/api/v1/projects/{project['id']}/tariffs/"
    assert bad_fields(api.put(base + path, json=body)) == fields
    assert ok(api.get(base))["count"] == 0


# Unknown ids


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/projects/999/", None),
        ("PATCH", "/api/v1/projects/999/", {"name": "x"}),
        ("DELETE", "/api/v1/projects/999/", None),
        ("GET", "/api/v1/projects/999/houses/", None),
        ("POST", "/api/v1/projects/999/houses/", {"address": ADDRESS}),
        ("GET", "/api/v1/projects/999/tariffs/", None),
        ("PUT", "/api/v1/projects/999/tariffs/electricity/", {"price": "1"}),
        ("GET", "/api/v1/projects/{project}/tariffs/electricity/", None),
        ("DELETE", "/api/v1/projects/{project}/tariffs/electricity/", None),
        ("GET", "/api/v1/houses/999/", None),
        ("PATCH", "/api/v1/houses/999/", {"residents": []}),
        ("DELETE", "/api/v1/houses/999/", None),
        ("POST", "/api/v1/houses/999/devices/", {"device_id": "E1"}),
        ("DELETE", "/api/v1/houses/999/devices/E1/", None),
        ("DELETE", "/api/v1/houses/{house}/devices/nope/", None),
    ],
)
def test_unknown_ids_are_404(
    api: TestClient, house: Json, meters: None, method: str, path: str, body: Json | None
) -> None:
    url = path.format(project=house["project_id"], house=house["id"])
    answer = api.request(method, url, json=body)
    assert answer.status_code == 404, answer.text
    assert set(answer.json()) == {"detail"}


# Who sees what


@pytest.fixture
def two_projects(api: TestClient, meters: None) -> dict[str, Json]:
    """Projects A and B, each with a house (B's holding W2) and an electricity tariff."""
    found: dict[str, Json] = {}
    for name, device in (("A", "E1"), ("B", "W2")):
        project = ok(api.post("/api/v1/projects/", json={**ESTATE, "name": name}), 201)
        body = {"address": [name, "1", "1", "101", ""], "residents": PEOPLE}
        house = ok(api.post(f"/api/v1/projects/{project['id']}/houses/", json=body), 201)
        kind = None if device == "E1" else "tap"
        assignment = {"device_id": device, "water_kind": kind}
        ok(api.post(f"/api/v1/houses/{house['id']}/devices/", json=assignment), 201)
        ok(api.put(f"/api/v1/projects/{project['id']}/tariffs/electricity/", json=TIERED))
        found[name] = project
        found[f"house {name}"] = ok(api.get(f"/api/v1/houses/{house['id']}/"))
    return found


def test_a_member_sees_and_changes_only_its_projects(
    api: TestClient, two_projects: dict[str, Json], member: Callable[..., Headers]
) -> None:
    a, b = two_projects["A"], two_projects["B"]
    house_a, house_b = two_projects["house A"], two_projects["house B"]
    who = member(a["id"])
    listed = ok(api.get("/api/v1/projects/", headers=who))
    assert [p["id"] for p in listed["results"]] == [a["id"]]
    assert listed["count"] == 1
    assert ok(api.get(f"/api/v1/projects/{a['id']}/", headers=who)) == a
    assert ok(api.patch(f"/api/v1/projects/{a['id']}/", json={"name": "A2"}, headers=who))
    assert ok(api.get(f"/api/v1/projects/{a['id']}/houses/", headers=who))["count"] == 1
    ok(api.patch(f"/api/v1/houses/{house_a['id']}/", json={"residents": []}, headers=who))
    ok(
        api.put(
            f"/api/v1/projects/{a['id']}/tariffs/electricity/", json={"price": "1"}, headers=who
        )
    )
    ok(api.post(f"/api/v1/projects/{a['id']}/houses/", json={"address": ADDRESS}, headers=who), 201)

    foreign: list[tuple[str, str, Json | None]] = [
        ("GET", f"/api/v1/projects/{b['id']}/", None),
        ("PATCH", f"/api/v1/projects/{b['id']}/", {"name": "mine"}),
        ("GET", f"/api/v1/projects/{b['id']}/houses/", None),
        ("POST", f"/api/v1/projects/{b['id']}/houses/", {"address": ADDRESS}),
        ("GET", f"/api/v1/projects/{b['id']}/tariffs/", None),
        ("GET", f"/api/v1/projects/{b['id']}/tariffs/electricity/", None),
        ("PUT", f"/api/v1/projects/{b['id']}/tariffs/electricity/", {"price": "0"}),
        ("DELETE", f"/api/v1/projects/{b['id']}/tariffs/electricity/", None),
        ("GET", f"/api/v1/houses/{house_b['id']}/", None),
        ("PATCH", f"/api/v1/houses/{house_b['id']}/", {"residents": []}),
        ("DELETE", f"/api/v1/houses/{house_b['id']}/", None),
        ("POST", f"/api/v1/houses/{house_b['id']}/devices/", {"device_id": "E1"}),
        ("DELETE", f"/api/v1/houses/{house_b['id']}/devices/W2/", None),
    ]
    for method, url, body in foreign:
        answer = api.request(method, url, json=body, headers=who)
        assert answer.status_code == 404, (method, url, answer.text)
    # B is untouched, as its administrator sees it
    assert ok(api.get(f"/api/v1/projects/{b['id']}/")) == b
    assert ok(api.get(f"/api/v1/houses/{house_b['id']}/")) == house_b
    assert (
        ok(api.get(f"/api/v1/projects/{b['id']}/tariffs/electricity/"))["tiers"] == TIERED["tiers"]
    )


def test_only_admins_create_delete_or_move_between_projects(
    api: TestClient, two_projects: dict[str, Json], member: Callable[..., Headers]
) -> None:
    a, b = two_projects["A"], two_projects["B"]
    house_a, house_b = two_projects["house A"], two_projects["house B"]
    who = member(a["id"], b["id"])
    assert api.post("/api/v1/projects/", json=ESTATE, headers=who).status_code == 403
    assert api.delete(f"/api/v1/projects/{a['id']}/", headers=who).status_code == 403
    assert api.get("/api/v1/projects/", headers={}).status_code == 200  # the admin's default
    assert api.get("/api/v1/projects/", headers={"Authorization": ""}).status_code == 401

    move = {"device_id": "W2", "water_kind": "tap"}
    answer = api.post(f"/api/v1/houses/{house_a['id']}/devices/", json=move, headers=who)
    assert answer.status_code == 403, answer.text
    assert [d["device_id"] for d in ok(api.get(f"/api/v1/houses/{house_b['id']}/"))["devices"]] == [
        "W2"
    ]
    ok(api.post(f"/api/v1/houses/{house_a['id']}/devices/", json=move), 201)  # an admin may
    assert ok(api.get(f"/api/v1/houses/{house_b['id']}/"))["devices"] == []
    # within one project, anyone who sees it may move a meter between houses
    second = ok(
        api.post(f"/api/v1/projects/{b['id']}/houses/", json={"address": ADDRESS}, headers=who),
        201,
    )
    ok(api.post(f"/api/v1/houses/{house_b['id']}/devices/", json=move), 201)
    ok(api.post(f"/api/v1/houses/{second['id']}/devices/", json=move, headers=who), 201)


# Bills are history


@pytest.fixture
def billed(api: TestClient, engine: Engine, meters: None) -> Json:
    """A Berlin project whose meter E1 has one November bill; returns its house."""
    project = ok(api.post("/api/v1/projects/", json={**ESTATE, "timezone": "Europe/Berlin"}), 201)
    body = {"address": ADDRESS, "residents": PEOPLE}
    house = ok(api.post(f"/api/v1/projects/{project['id']}/houses/", json=body), 201)
    ok(api.post(f"/api/v1/houses/{house['id']}/devices/", json={"device_id": "E1"}), 201)
    ok(api.put(f"/api/v1/projects/{project['id']}/tariffs/electricity/", json=TIERED))
    crontab = {"month": "*", "day": "1", "hour": "0", "minute": "0"}
    with engine.begin() as conn:
        tag = channel_tags(conn, get_device(conn, "E1").pk)["kW"]
        readings = [("2026-10-01T00:00:00+00:00", 1000.0), ("2026-11-02T00:00:00+00:00", 1200.0)]
        write_points(conn, [Point(tag, us(when), value) for when, value in readings])
        task = create_task(conn, project["id"], "power", DeviceType.ELECTRICITY, crontab)
        assert run_task(conn, task.key, us("2026-10-31T23:00:00+00:00")).billed == 1
    return house


def _snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        query = select(bills.c.device_id, bills.c.house_address, bills.c.residents, bills.c.charge)
        return [tuple(row) for row in conn.execute(query)]


def test_editing_a_house_leaves_issued_bills_as_they_were(
    api: TestClient, engine: Engine, billed: Json
) -> None:
    before = _snapshot(engine)
    assert len(before) == 1
    _, address, residents, _ = before[0]
    assert (json.loads(address), json.loads(residents)) == (ADDRESS, PEOPLE)
    url = f"/api/v1/houses/{billed['id']}/"
    new = {
        "address": ["C", "9", "9", "909", ""],
        "residents": [{"name": "新", "cellphone": "1234"}],
    }
    assert ok(api.patch(url, json=new))["residents"] == new["residents"]
    assert _snapshot(engine) == before
    assert api.delete(url).status_code == 204
    assert _snapshot(engine) == before


def test_a_project_with_bills_is_not_deleted(api: TestClient, engine: Engine, billed: Json) -> None:
    url = f"/api/v1/projects/{billed['project_id']}/"
    assert bad_fields(api.delete(url)) == {"project_id"}
    assert "has bills" in api.delete(url).json()["errors"]["project_id"][0]
    assert ok(api.get(url))["id"] == billed["project_id"]
    assert len(_snapshot(engine)) == 1


def test_deleting_a_project_keeps_its_meters(
    api: TestClient, two_projects: dict[str, Json]
) -> None:
    a = two_projects["A"]
    assert api.delete(f"/api/v1/projects/{a['id']}/").status_code == 204
    assert api.get(f"/api/v1/houses/{two_projects['house A']['id']}/").status_code == 404
    assert ok(api.get("/api/v1/meters/E1/"))["device_id"] == "E1"
    b_house = two_projects["house B"]
    # the freed meter can go into another project's house
    ok(api.post(f"/api/v1/houses/{b_house['id']}/devices/", json={"device_id": "E1"}), 201)
