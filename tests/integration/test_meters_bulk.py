"""Many meters at once through the API: ``POST /api/v1/meters/bulk`` (a JSON list),
``POST /api/v1/meters/import.csv`` and ``GET /api/v1/meters/export.csv``, on both databases:
all rows or none, every bad row named, re-imports idempotent, updates, limits, access."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from meterhub.api.app import create_app
from meterhub.registry.tables import devices, tags
from meterhub.registry.users import create_user, issue_token
from meterhub.settings import Settings
from tests.support import Server, admin_token, simulator, wait_until

Json = dict[str, Any]
CSV = "text/csv"


def bulk(api: TestClient, items: object) -> httpx2.Response:
    return api.post("/api/v1/meters/bulk", json=items)


def import_csv(api: TestClient, text: str | bytes) -> httpx2.Response:
    return api.post("/api/v1/meters/import.csv", content=text, headers={"content-type": CSV})


def meter(api: TestClient, device_id: str) -> Json:
    answer = api.get(f"/api/v1/meters/{device_id}/")
    assert answer.status_code == 200, answer.text
    found: Json = answer.json()
    return found


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(devices)).scalar_one())


def house(api: TestClient) -> int:
    body = {"name": "Estate", "timezone": "UTC", "currency": "CNY"}
    project = api.post("/api/v1/projects/", json=body)
    assert project.status_code == 201, project.text
    address = {"address": ["Province", "City", "Street 1", "Building 2", "Room 3"]}
    found = api.post(f"/api/v1/projects/{project.json()['id']}/houses/", json=address)
    assert found.status_code == 201, found.text
    house_id: int = found.json()["id"]
    return house_id


FLEET = [
    {"device_id": "e-1", "port": 9001},
    {"device_id": "e-2", "type": "electricity", "host": "10.0.0.5", "port": 9001},
    {"device_id": "w-1", "type": "water", "water_kind": "tap", "port": 9002, "enabled": False},
    {"device_id": "n-1"},
]


def test_a_list_registers_every_meter_with_its_channels(api: TestClient, engine: Engine) -> None:
    answer = bulk(api, FLEET)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"created": 4, "updated": 0, "unchanged": 0}
    shown = {m["device_id"]: m for m in api.get("/api/v1/meters/").json()["results"]}
    fields = ("type", "host", "port", "enabled")
    assert {d: tuple(m[f] for f in fields) for d, m in shown.items()} == {
        "e-1": ("electricity", "127.0.0.1", 9001, True),
        "e-2": ("electricity", "10.0.0.5", 9001, True),
        "w-1": ("water", "127.0.0.1", 9002, False),
        "n-1": ("electricity", None, None, True),
    }
    with engine.connect() as conn:
        keys = set(conn.execute(select(tags.c.key).where(tags.c.device_pk.is_not(None))).scalars())
    assert keys == {"e-1.A", "e-1.kW", "e-2.A", "e-2.kW", "w-1.V", "n-1.A", "n-1.kW"}


def test_every_bad_row_is_named_and_nothing_is_stored(api: TestClient, engine: Engine) -> None:
    stored = [{"device_id": "old", "port": 9100}, {"device_id": "kept"}]
    assert bulk(api, stored).status_code == 200
    rows: list[object] = [
        {"device_id": "ok", "port": 9101},
        {"device_id": "dup", "port": 9102},
        {"device_id": "dup", "port": 9103},
        {"device_id": "taken", "port": 9100},
        {"device_id": "same-port", "port": 9101},
        {"device_id": "far", "port": 8999},
        {"device_id": "e", "water_kind": "tap"},
        {"device_id": "w", "type": "water", "water_kind": "hot"},
        {"device_id": "homeless", "house_id": 999},
        {"port": 9104},
        {"device_id": "bad id"},
        {"device_id": "typo", "prot": 9105},
        "not an object",
        {"device_id": "kept", "type": "water"},
        {"device_id": "hosted", "host": "10.0.0.9"},
    ]
    answer = bulk(api, rows)
    assert answer.status_code == 400, answer.text
    errors = answer.json()["errors"]
    assert list(errors) == [
        "[0].port",
        "[1].device_id",
        "[2].device_id",
        "[3].port",
        "[4].port",
        "[5].port",
        "[6].water_kind",
        "[7].water_kind",
        "[8].house_id",
        "[9].device_id",
        "[10].device_id",
        "[11].prot",
        "[12]",
        "[13].type",
        "[14].port",
    ]
    assert errors["[0].port"] == ["the same port 9101 on 127.0.0.1 as [4]"]
    assert errors["[4].port"] == ["the same port 9101 on 127.0.0.1 as [0]"]
    assert errors["[1].device_id"] == ["the same device id dup as [2]"]
    assert errors["[2].device_id"] == ["the same device id dup as [1]"]
    assert errors["[3].port"] == ["port 9100 on 127.0.0.1 is already used by meter old"]
    assert errors["[5].port"] == ["must be between 9000 and 65000"]
    assert errors["[6].water_kind"] == ["only water meters have one, not electricity"]
    assert errors["[7].water_kind"] == ["must be one of tap, purified"]
    assert errors["[8].house_id"] == ["no house with id 999"]
    assert errors["[9].device_id"] == ["this field is required"]
    assert errors["[11].prot"][0].startswith("unknown field; the fields are device_id, type")
    assert errors["[12]"] == ["must be an object with a device_id"]
    assert "its type cannot change" in errors["[13].type"][0]
    assert errors["[14].port"] == ["required when host is given"]
    assert count(engine) == 2
    assert meter(api, "kept")["type"] == "electricity"


def test_the_same_list_again_changes_nothing(api: TestClient) -> None:
    assert bulk(api, FLEET).json() == {"created": 4, "updated": 0, "unchanged": 0}
    exported = api.get("/api/v1/meters/export.csv").text
    assert bulk(api, FLEET).json() == {"created": 0, "updated": 0, "unchanged": 4}
    assert import_csv(api, exported).json() == {"created": 0, "updated": 0, "unchanged": 4}
    assert api.get("/api/v1/meters/export.csv").text == exported


def test_a_row_naming_a_meter_updates_the_fields_it_gives(api: TestClient) -> None:
    house_id = house(api)
    assert bulk(api, FLEET).status_code == 200
    changes = [
        {"device_id": "e-1", "enabled": False},  # the rest stays
        {"device_id": "w-1", "water_kind": "purified", "house_id": house_id},
        {"device_id": "n-1", "port": 9003},  # gets an address: the configured host
        {"device_id": "e-2", "port": None},  # no longer polled: no address at all
        {"device_id": "new", "type": "water", "water_kind": "tap", "house_id": house_id},
    ]
    answer = bulk(api, changes)
    assert answer.json() == {"created": 1, "updated": 4, "unchanged": 0}, answer.text
    assert (meter(api, "e-1")["enabled"], meter(api, "e-1")["port"]) == (False, 9001)
    assert (meter(api, "n-1")["host"], meter(api, "n-1")["port"]) == ("127.0.0.1", 9003)
    assert (meter(api, "e-2")["host"], meter(api, "e-2")["port"]) == (None, None)
    devices_of_house = api.get(f"/api/v1/houses/{house_id}/").json()["devices"]
    assert sorted((d["device_id"], d["water_kind"]) for d in devices_of_house) == [
        ("new", "tap"),
        ("w-1", "purified"),
    ]
    moved_out = bulk(api, [{"device_id": "w-1", "house_id": None}])
    assert moved_out.json()["updated"] == 1
    assert [d["device_id"] for d in api.get(f"/api/v1/houses/{house_id}/").json()["devices"]] == [
        "new"
    ]


def test_meters_may_swap_or_pass_on_ports_in_one_import(api: TestClient) -> None:
    first = [{"device_id": "a", "port": 9001}, {"device_id": "b", "port": 9002}]
    assert bulk(api, first).status_code == 200
    swapped = [
        {"device_id": "a", "port": 9002},
        {"device_id": "b", "port": 9003},
        {"device_id": "c", "port": 9001},
    ]
    assert bulk(api, swapped).json() == {"created": 1, "updated": 2, "unchanged": 0}
    assert [meter(api, d)["port"] for d in "abc"] == [9002, 9003, 9001]
    back = [{"device_id": "a", "port": 9003}, {"device_id": "b", "port": 9002}]
    assert bulk(api, back).json() == {"created": 0, "updated": 2, "unchanged": 0}
    assert [meter(api, d)["port"] for d in "ab"] == [9003, 9002]


def test_a_deleted_meter_imported_again_gets_its_channels_back(
    api: TestClient, engine: Engine
) -> None:
    assert bulk(api, [{"device_id": "r-1", "port": 9001}]).status_code == 200
    with engine.connect() as conn:
        before = {row.key: row.id for row in conn.execute(select(tags.c.key, tags.c.id))}
    assert api.delete("/api/v1/meters/r-1/").status_code == 204
    assert bulk(api, [{"device_id": "r-1", "port": 9001}]).json()["created"] == 1
    with engine.connect() as conn:
        after = {row.key: row.id for row in conn.execute(select(tags.c.key, tags.c.id))}
        pk = conn.execute(select(devices.c.id).where(devices.c.device_id == "r-1")).scalar_one()
        owners = set(conn.execute(select(tags.c.device_pk)).scalars())
    assert after == before
    assert owners == {pk}


CSV_FILE = (
    "\ufeffdevice_id,type,water_kind,host,port,enabled,house_id\r\n"
    "e-1,electricity,,,9001,,\r\n"
    "\r\n"
    "w-1,Water,TAP,127.0.0.1,9002,false,\r\n"
    '"n-1",,,,,TRUE,\r\n'
)


def test_csv_through_the_api_and_back(api: TestClient) -> None:
    answer = import_csv(api, CSV_FILE.encode())
    assert answer.json() == {"created": 3, "updated": 0, "unchanged": 0}, answer.text
    exported = api.get("/api/v1/meters/export.csv")
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in exported.headers["content-disposition"]
    assert exported.text == (
        "device_id,type,water_kind,host,port,enabled,house_id,protocol,unit_id,model\r\n"
        "e-1,electricity,,127.0.0.1,9001,true,,http,0,\r\n"
        "w-1,water,tap,127.0.0.1,9002,false,,http,0,\r\n"
        "n-1,electricity,,,,true,,http,0,\r\n"
    )
    edited = exported.text.replace("9002,false", "9005,true")
    assert import_csv(api, edited).json() == {"created": 0, "updated": 1, "unchanged": 2}
    assert (meter(api, "w-1")["port"], meter(api, "w-1")["enabled"]) == (9005, True)
    semicolons = "device_id;port\r\ns-1;9010\r\n"
    assert import_csv(api, semicolons).json()["created"] == 1


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ("", {"line 1": ["the first line names the columns: device_id, type, water_kind, "
                         "host, port, enabled, house_id, protocol, unit_id, model"]}),
        ("port,colour\r\n9001,red\r\n", {
            "line 1: colour": ["unknown column; the columns are device_id, type, water_kind, "
                               "host, port, enabled, house_id, protocol, unit_id, model"],
            "line 1: device_id": ["the device_id column is required"],
        }),
        ("device_id,port,port\r\n", {"line 1: port": ["named twice"]}),
        ("device_id,port\r\na,9001,extra\r\nb,90x1\r\nc,9001\r\n", {
            "line 2": ["3 cells, but the first line names 2"],
            "line 3: port": ["Input should be a valid integer, unable to parse string as an "
                             "integer"],
        }),
        ('device_id,port\r\na,9001\r\n"b,9002\r\n', {
            "line 3": ["not CSV: unexpected end of data"],
        }),
        (b"device_id\r\nok\r\n\xff\xfe\r\n", {"line 3": ["not UTF-8 text"]}),
        ("device_id,port\r\na,9001\r\nb,9001\r\n", {
            "line 2: port": ["the same port 9001 on 127.0.0.1 as line 3"],
            "line 3: port": ["the same port 9001 on 127.0.0.1 as line 2"],
        }),
    ],
    ids=["empty", "unknown-column", "twice", "cells", "quote", "utf8", "same-port"],
)  # fmt: skip
def test_a_bad_csv_names_each_line_and_stores_nothing(
    api: TestClient, engine: Engine, text: str | bytes, errors: dict[str, list[str]]
) -> None:
    answer = import_csv(api, text)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == errors
    assert count(engine) == 0


def test_malformed_bodies_are_named(api: TestClient) -> None:
    broken = api.post(
        "/api/v1/meters/bulk", content=b"[{", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert list(broken.json()["errors"]) == ["body"]
    assert "malformed JSON" in broken.json()["errors"]["body"][0]
    assert bulk(api, {"device_id": "a"}).json()["errors"] == {
        "body": ["must be a JSON list of meters"]
    }
    assert bulk(api, []).json() == {"created": 0, "updated": 0, "unchanged": 0}
    too_long = {"device_id": "h", "host": "h" * 256, "port": 9001}
    assert list(api.post("/api/v1/meters/", json=too_long).json()["errors"]) == ["host"]
    assert list(bulk(api, [too_long]).json()["errors"]) == ["[0].host"]


@pytest.fixture
def small_api(database_url: str) -> Iterator[TestClient]:
    """The app with bulk limits of 3 rows and 2 KiB."""
    settings = Settings(
        database_url=database_url, collector_enabled=False, bulk_max_rows=3, bulk_max_bytes=2048
    )
    headers = {"Authorization": f"token {admin_token(database_url)}"}
    with TestClient(create_app(settings), headers=headers) as client:
        yield client


def refusal(answer: httpx2.Response) -> str:
    """The message of a 413 about the body (as a field error, or in the detail)."""
    found = answer.json()
    messages: list[str] = found.get("errors", {}).get("body", [])
    return messages[0] if messages else str(found["detail"]).removeprefix("body: ")


def test_requests_over_the_limits_answer_413(small_api: TestClient, engine: Engine) -> None:
    four = [{"device_id": f"m-{i}"} for i in range(4)]
    answer = bulk(small_api, four)
    assert answer.status_code == 413
    assert refusal(answer) == (
        "4 meters; at most 3 per request (METERHUB_BULK_MAX_ROWS): split the list"
    )
    rows = "device_id\r\n" + "".join(f"m-{i}\r\n" for i in range(4))
    assert import_csv(small_api, rows).status_code == 413
    big = [{"device_id": "m-" + "x" * 60, "host": "h" * 200, "port": 9001}] * 10
    answer = bulk(small_api, big)
    assert answer.status_code == 413
    assert refusal(answer).startswith("over 2048 bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b"device_id\r\n"
        for _ in range(300):
            yield b"m-1234567\r\n"

    answer = small_api.post(
        "/api/v1/meters/import.csv", content=chunks(), headers={"content-type": CSV}
    )
    assert answer.status_code == 413
    assert bulk(small_api, four[:3]).json()["created"] == 3
    assert count(engine) == 3


def test_only_administrators_import_and_others_export_their_meters(
    api: TestClient, database_url: str, engine: Engine
) -> None:
    house_id = house(api)
    project_id = api.get(f"/api/v1/houses/{house_id}/").json()["project_id"]
    rows = [{"device_id": "mine", "house_id": house_id}, {"device_id": "other"}]
    assert bulk(api, rows).status_code == 200
    with engine.begin() as conn:
        user = create_user(
            conn, f"u-{uuid.uuid4().hex[:6]}", "correct horse", project_ids=[project_id]
        )
        token = issue_token(conn, user.id)
    member = {"Authorization": f"token {token}"}
    refused = api.post("/api/v1/meters/bulk", json=[{"device_id": "x"}], headers=member)
    assert refused.status_code == 403
    refused = api.post(
        "/api/v1/meters/import.csv",
        content="device_id\r\nx\r\n",
        headers={**member, "content-type": CSV},
    )
    assert refused.status_code == 403
    assert (
        api.post("/api/v1/meters/bulk", json=[], headers={"Authorization": ""}).status_code == 401
    )
    exported = api.get("/api/v1/meters/export.csv", headers=member).text
    assert exported.splitlines()[1:] == [f"mine,electricity,,,,true,{house_id},http,0,"]
    assert count(engine) == 2


def test_a_meter_moved_by_an_import_is_polled_at_its_new_port(
    database_url: str, tmp_path: Path
) -> None:
    """The meter answering at port P has id P: registered at another port it answers the
    wrong id; moved to P by an import, the collector polls it there and it comes online."""
    with simulator(2) as sim, Server(database_url, tmp_path) as server, server.client() as client:
        port = sim.config.ports.start
        device_id = str(port)
        first = [{"device_id": device_id, "port": port + 1}]
        assert client.post("/api/v1/meters/bulk", json=first).status_code == 200

        def health() -> Json:
            found: Json = client.get(f"/api/v1/meters/{device_id}/").json()["health"]
            return found

        wait_until(lambda: health()["last_error"] is not None, timeout=15)
        assert health()["status"] != "online"
        moved = client.post("/api/v1/meters/bulk", json=[{"device_id": device_id, "port": port}])
        assert moved.json() == {"created": 0, "updated": 1, "unchanged": 0}
        wait_until(lambda: health()["status"] == "online", timeout=15)
