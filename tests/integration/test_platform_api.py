"""The platform calls and source/tag management through the real app, both databases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

PLANT = {
    "id": "plant-1",
    "name": "Plant 1",
    "active": True,
    "config": {"url": "opc.tcp://plant-1"},
    "tags": [
        {"id": "plant-1.flow", "unit": "m3/h"},
        {"id": {"tagName": "valve", "parentObjectId": "plant-1"}, "value_type": 3},
    ],
}


def smt(api: TestClient, call: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = api.post(f"/smt/{call}", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


@pytest.fixture
def plant(api: TestClient) -> dict[str, Any]:
    answer = api.post("/api/v1/data-sources/", json=PLANT)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_source_created_with_tags_in_one_request(api: TestClient, plant: dict[str, Any]) -> None:
    assert plant["id"] == "plant-1"
    assert plant["config"] == '{"url": "opc.tcp://plant-1"}'
    assert [t["key"] for t in plant["tags"]] == ["plant-1.flow", "plant-1.valve"]
    assert plant["tags"][1]["id"] == {"tagName": "valve", "parentObjectId": "plant-1"}
    assert api.get("/api/v1/data-sources/plant-1/").json() == plant
    listed = api.get("/api/v1/data-sources/").json()
    assert [s["id"] for s in listed["results"]] == ["plant-1"]


def test_connect_returns_tags_and_attributes(api: TestClient, plant: dict[str, Any]) -> None:
    answer = smt(api, "dataSources/connect", {"id": "plant-1"})
    assert answer["error"] == {"id": 0}
    assert answer["attributes"] == {
        "smtActive": True,
        "smtJsonConfigString": '{"url": "opc.tcp://plant-1"}',
    }
    assert [t["id"] for t in answer["tags"]] == [
        "plant-1.flow",
        {"tagName": "valve", "parentObjectId": "plant-1"},
    ]
    assert answer["tags"][1]["attributes"]["smtTagValueTypeCode"] == 3


def test_set_then_get_latest_and_upsert(api: TestClient, plant: dict[str, Any]) -> None:
    points = [{"x": 1_000_000 * i, "y": i * 1.5, "q": 0} for i in range(1, 6)]
    body = {"data": [{"tagId": "plant-1.flow", "data": points}]}
    assert smt(api, "data/set", body) == {"error": {"id": 0}, "written": 5}
    assert smt(api, "data/set", body)["written"] == 5  # a retry replaces, never adds
    latest = smt(api, "data/get", {"params": {"tagId": "plant-1.flow"}})
    assert latest["data"] == [
        {"tagId": "plant-1.flow", "excess": False, "data": [{"x": 5_000_000, "y": 7.5, "q": 0}]}
    ]
    period = smt(api, "data/get", {"params": {"tagId": "plant-1.flow", "from": 0, "to": 10**7}})
    assert len(period["data"][0]["data"]) == 5
    tag = api.get("/api/v1/tags/plant-1.flow/").json()
    assert tag["last"]["value"] == 7.5


@pytest.mark.parametrize(
    ("call", "body", "error_id"),
    [
        ("dataSources/connect", {"id": "nope"}, 2),
        ("dataSources/connect", {}, 1),
        ("data/set", {"data": [{"tagId": "nope", "data": [{"x": 1, "y": 1}]}]}, 4),
        ("data/set", {"data": [{"tagId": "plant-1.flow", "data": [{"x": "soon", "y": 1}]}]}, 5),
        ("data/set", {"data": [{"tagId": "plant-1.flow", "data": [{"x": 1, "y": "1"}]}]}, 6),
        ("data/set", {"data": [{"tagId": "plant-1.flow", "data": [{"x": 1, "y": True}]}]}, 6),
        (
            "data/set",
            {"data": [{"tagId": "plant-1.flow", "data": [{"x": 1, "y": 1, "q": "a"}]}]},
            1,
        ),
        ("data/set", {"data": [{"tagId": "plant-1.flow"}]}, 1),
        ("data/set", {"data": [{"tagId": 5, "data": []}]}, 1),
        ("data/set", {}, 1),
        ("data/get", {"params": {}}, 1),
        ("data/get", {"params": {"tagId": "nope"}}, 4),
        ("data/get", {"params": {"tagId": "plant-1.flow", "from": "yesterday"}}, 5),
        ("data/get", {"params": {"tagId": "plant-1.flow", "maxCount": 0}}, 1),
        ("data/get", {"params": {"tagId": "plant-1.flow", "colour": "red"}}, 1),
        ("data/get", {"params": {"tagId": "plant-1.flow", "value": "x"}}, 6),
    ],
)
def test_each_failure_has_its_own_error_id_and_changes_nothing(
    api: TestClient, plant: dict[str, Any], call: str, body: dict[str, Any], error_id: int
) -> None:
    good = {"data": [{"tagId": "plant-1.flow", "data": [{"x": 7, "y": 1.25}]}]}
    smt(api, "data/set", good)
    answer = smt(api, call, body)
    assert answer["error"]["id"] == error_id, answer
    assert answer["error"]["message"]
    after = smt(api, "data/get", {"params": {"tagId": "plant-1.flow", "from": 0, "to": 100}})
    assert after["data"][0]["data"] == [{"x": 7, "y": 1.25, "q": 0}]


def test_a_bad_point_rejects_the_whole_call(api: TestClient, plant: dict[str, Any]) -> None:
    points = '[{"x": 1, "y": 1}, {"x": 2, "y": NaN}]'  # JSON as Python's json.dumps writes it
    body = '{"data": [{"tagId": "plant-1.flow", "data": ' + points + "}]}"
    headers = {"Content-Type": "application/json"}
    answer = api.post("/smt/data/set", content=body, headers=headers).json()
    assert answer["error"]["id"] == 6, answer
    empty = smt(api, "data/get", {"params": {"tagId": "plant-1.flow", "from": 0, "to": 10}})
    assert empty["data"][0]["data"] == []


def test_inactive_source_connects_but_refuses_reads_and_writes(
    api: TestClient, plant: dict[str, Any]
) -> None:
    """Connect answers an inactive source (error 0, ``smtActive`` false, its tags as
    usual); only writes and reads of it, or of an inactive tag, are error 3."""
    write = {"data": [{"tagId": "plant-1.flow", "data": [{"x": 1, "y": 1}]}]}
    assert smt(api, "data/set", write)["written"] == 1
    latest = {"params": {"tagId": "plant-1.flow"}}
    period = {"params": {"tagId": ["plant-1.flow"], "from": 0, "to": 10}}
    before = smt(api, "dataSources/connect", {"id": "plant-1"})
    assert api.patch("/api/v1/data-sources/plant-1/", json={"active": False}).status_code == 200
    connected = smt(api, "dataSources/connect", {"id": "plant-1"})
    assert connected == {**before, "attributes": {**before["attributes"], "smtActive": False}}
    for call, body in (("data/set", write), ("data/get", latest), ("data/get", period)):
        refused = smt(api, call, body)["error"]
        assert refused == {"id": 3, "message": "data source plant-1 is not active"}, call
    api.patch("/api/v1/data-sources/plant-1/", json={"active": True})
    assert api.patch("/api/v1/tags/plant-1.flow/", json={"active": False}).json()["active"] is False
    connected = smt(api, "dataSources/connect", {"id": "plant-1"})
    assert (connected["error"], connected["attributes"]["smtActive"]) == ({"id": 0}, True)
    valve = {"tagName": "valve", "parentObjectId": "plant-1"}
    assert [t["id"] for t in connected["tags"]] == [valve]  # not offered
    for call, body in (("data/set", write), ("data/get", latest), ("data/get", period)):
        refused = smt(api, call, body)["error"]
        assert refused == {"id": 3, "message": "tag plant-1.flow is not active"}, call
    api.patch("/api/v1/tags/plant-1.flow/", json={"active": True})
    assert smt(api, "data/get", latest)["data"][0]["data"] == [{"x": 1, "y": 1, "q": 0}]


def test_device_channels_are_tags(api: TestClient) -> None:
    assert api.post("/counter/", json={"id": 44, "port": 9044}).status_code == 201
    body = {
        "data": [{"tagId": {"tagName": "kW", "parentObjectId": "44"}, "data": [{"x": 5, "y": 10}]}]
    }
    assert smt(api, "data/set", body)["written"] == 1
    assert api.get("/counter-data/44/").json() == {"id": 44, "A": None, "kW": 10}
    got = smt(api, "data/get", {"params": {"tagId": "44.kW"}})
    assert got["data"][0]["data"] == [{"x": 5, "y": 10, "q": 0}]


def test_management_errors(api: TestClient, plant: dict[str, Any]) -> None:
    again = api.post("/api/v1/data-sources/", json=PLANT)
    assert again.status_code == 400
    assert "id" in again.json()["errors"]
    bad_config = api.post("/api/v1/data-sources/", json={"id": "p2", "config": "{nope"})
    assert "config" in bad_config.json()["errors"]
    dup_tag = api.post("/api/v1/data-sources/", json={"id": "p3", "tags": [{"id": "plant-1.flow"}]})
    assert "tags[0].id" in dup_tag.json()["errors"]
    assert api.get("/api/v1/data-sources/p3/").status_code == 404  # nothing half-created
    assert api.get("/api/v1/tags/nope/").status_code == 404
    assert api.post("/api/v1/tags/", json={"source_id": "nope", "id": "x"}).status_code == 404


def test_delete_source_removes_tags_and_points(api: TestClient, plant: dict[str, Any]) -> None:
    smt(api, "data/set", {"data": [{"tagId": "plant-1.flow", "data": [{"x": 1, "y": 2}]}]})
    assert api.delete("/api/v1/data-sources/plant-1/").status_code == 204
    assert api.get("/api/v1/tags/plant-1.flow/").status_code == 404
    api.post("/api/v1/data-sources/", json=PLANT)  # same ids again: no old points come back
    got = smt(api, "data/get", {"params": {"tagId": "plant-1.flow"}})
    assert got["data"][0]["data"] == []


# --- the common form's fast path and every other form ----------------------------------------

FLEET = {
    "id": "fleet",
    "tags": [{"id": {"tagName": "A", "parentObjectId": f"m{m}"}} for m in range(8)],
}


def _stored(api: TestClient, tags: list[Any]) -> list[list[Any]]:
    answer = smt(api, "data/get", {"params": {"tagId": tags, "from": 0, "actual": True}})
    return [[(p["x"], p["y"], p["q"]) for p in entry["data"]] for entry in answer["data"]]


def test_set_data_in_any_form_writes_the_same(api: TestClient) -> None:
    """The common form (a JSON body of µs, floats and qualities: checked in C and written as
    columns) and the forms that take the full checks (a query literal, ISO times, integer
    values) write the same points: repeats within a call keep the last one, a point older
    than the stored latest leaves it alone."""
    assert api.post("/api/v1/data-sources/", json=FLEET).status_code == 201
    tags = [{"tagName": "A", "parentObjectId": f"m{m}"} for m in range(4)]
    records: list[dict[str, Any]] = [
        {
            "tagId": tags[0],
            "data": [{"x": 3_000_000, "y": 1.5}, {"x": 1_000_000, "y": 2.5, "q": 1}],
        },
        {"tagId": "m1.A", "data": [{"x": 2_000_000, "y": 4.0}, {"x": 2_000_000, "y": 5.0}]},
    ]
    common = smt(api, "data/set", {"data": records})
    assert common == {"error": {"id": 0}, "written": 3}
    literal = api.post("/smt/data/set", params={"data": repr(records).replace("m0", "m2")})
    assert literal.json() == common
    as_iso: list[dict[str, Any]] = [
        {
            **record,
            "data": [{**p, "x": f"1970-01-01T00:00:0{p['x'] // 10**6}Z"} for p in record["data"]],
        }
        for record in records
    ]
    as_iso[0]["tagId"], as_iso[1]["tagId"] = tags[3], "m1.A"
    assert smt(api, "data/set", {"data": as_iso}) == common
    expected = [(1_000_000, 2.5, 1), (3_000_000, 1.5, 0)]
    assert _stored(api, [tags[0], "m1.A", "m2.A", tags[3]]) == [
        expected,
        [(2_000_000, 5.0, 0)],
        expected,
        expected,
    ]
    smt(api, "data/set", {"data": [{"tagId": "m0.A", "data": [{"x": 500_000, "y": 9.0}]}]})
    latest = smt(api, "data/get", {"params": {"tagId": ["m0.A", "m1.A", "m7.A"]}})
    assert [entry["data"] for entry in latest["data"]] == [
        [{"x": 3_000_000, "y": 1.5, "q": 0}],
        [{"x": 2_000_000, "y": 5, "q": 0}],
        [],
    ]


@pytest.mark.parametrize(
    ("point", "error_id", "field"),
    [
        ({"x": "soon", "y": 1.0}, 5, "data[1].data[2].x"),
        ({"x": 1.5, "y": 1.0}, 5, "data[1].data[2].x"),
        ({"x": 10**19, "y": 1.0}, 5, "data[1].data[2].x"),
        ({"x": 3, "y": "1"}, 6, "data[1].data[2].y"),
        ({"x": 3, "y": None}, 6, "data[1].data[2].y"),
        ({"x": 3, "y": 1.0, "q": 40_000}, 1, "data[1].data[2].q"),
        ({"x": 3, "y": 1.0, "q": True}, 1, "data[1].data[2].q"),
        ({"x": 3}, 1, "data[1].data[2]"),
    ],
)
def test_a_bad_point_in_a_common_body_is_named(
    api: TestClient, point: dict[str, Any], error_id: int, field: str
) -> None:
    assert api.post("/api/v1/data-sources/", json=FLEET).status_code == 201
    good = [{"x": 1, "y": 1.0, "q": 0}, {"x": 2, "y": 2.0, "q": 0}]
    body = {"data": [{"tagId": "m0.A", "data": good}, {"tagId": "m1.A", "data": [*good, point]}]}
    answer = smt(api, "data/set", body)
    assert answer["error"]["id"] == error_id, answer
    assert answer["error"]["message"].startswith(f"{field}:"), answer
    assert _stored(api, ["m0.A", "m1.A"]) == [[], []]


def test_calls_in_flight_together_each_write_whole(api: TestClient) -> None:
    """Eight calls at once (each written in a worker thread; SQLite ones one after another)."""
    assert api.post("/api/v1/data-sources/", json=FLEET).status_code == 201

    def send(m: int) -> dict[str, Any]:
        points = [{"x": x * 1000 + m, "y": float(x), "q": 0} for x in range(300)]
        return smt(api, "data/set", {"data": [{"tagId": f"m{m}.A", "data": points}]})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert answers == [{"error": {"id": 0}, "written": 300}] * 8
    stored = _stored(api, [f"m{m}.A" for m in range(8)])
    assert [len(series) for series in stored] == [300] * 8


def test_source_bodies_the_fast_check_refuses_get_the_models_answer(api: TestClient) -> None:
    """A creation body msgspec does not take (a quality of the lax models: ``active: 1``, a
    numeric string scale) is validated as ``DataSourceCreate``; bad bodies are refused with
    its errors, as FastAPI words them."""
    lax = {"id": "lax", "active": 1, "tags": [{"id": "lax.a", "scale": "2.5"}]}
    created = api.post("/api/v1/data-sources/", json=lax)
    assert created.status_code == 201, created.text
    assert created.json()["active"] is True
    assert created.json()["tags"][0]["scale"] == 2.5
    strict = {"id": "strict", "tags": [{"id": "strict.a", "scale": 2.5}]}
    assert api.post("/api/v1/data-sources/", json=strict).json()["tags"][0]["scale"] == 2.5
    plain = api.post(
        "/api/v1/data-sources/", content=b'{"id": "x"}', headers={"content-type": "text/plain"}
    )
    assert plain.status_code == 400
    assert plain.json()["errors"] == {
        "body": ["Input should be a valid dictionary or object to extract fields from"]
    }
    broken = api.post(
        "/api/v1/data-sources/", content=b'{"id": ', headers={"content-type": "application/json"}
    )
    assert broken.json()["errors"] == {"body": ["malformed JSON: Expecting value"]}
    assert api.post("/api/v1/data-sources/", json={"tags": []}).json()["errors"] == {
        "id": ["this field is required"]
    }
    newline = api.post("/api/v1/data-sources/", json={"id": "ab\n"})
    assert list(newline.json()["errors"]) == ["id"]
    assert api.get("/api/v1/data-sources/x/").status_code == 404


@pytest.mark.parametrize(
    ("tag_id", "error_id"),
    [
        ({"parentObjectId": "m0", "tagName": "A"}, 0),
        ({"tagName": "A", "parentObjectId": "m0", "extra": "x"}, 1),
        ({"tagName": "", "parentObjectId": "m0"}, 1),
        ({"tagName": "A"}, 1),
        (" m0.A", 1),
        ("m0/A", 1),
        ("x" * 256, 1),
        ("m9.A", 4),
    ],
)
def test_tag_ids_of_a_common_body(api: TestClient, tag_id: Any, error_id: int) -> None:
    """Ids are checked as ``tag_key`` checks them; a refused one is named as before."""
    assert api.post("/api/v1/data-sources/", json=FLEET).status_code == 201
    body = {"data": [{"tagId": tag_id, "data": [{"x": 1, "y": 1.0}]}]}
    answer = smt(api, "data/set", body)
    assert answer["error"]["id"] == error_id, answer
    if error_id == 1:
        assert answer["error"]["message"].startswith("data.tagId: a tag id is"), answer
