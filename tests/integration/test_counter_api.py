"""The counter API end to end: a real server polling real simulated meters."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from meterhub.collector.simulator import read_records
from tests.support import Server, simulator, wait_until

JSON = {"Content-Type": "application/json"}


def _register(client: httpx.Client, meters: list[tuple[int, int]]) -> None:
    for meter_id, port in meters:
        answer = client.post("/counter/", json={"id": meter_id, "port": port})
        assert answer.status_code == 201, answer.text
        assert answer.json() == {"id": meter_id, "port": port}


def _served(record: Path) -> dict[int, list[tuple[float, float]]]:
    served: dict[int, list[tuple[float, float]]] = {}
    for line in read_records(record):
        body = json.loads(line["body"])
        served.setdefault(int(body["id"]), []).append((float(body["A"]), float(body["kW"])))
    return served


def _all_polled(client: httpx.Client, count: int, polls: int) -> bool:
    meters = client.get("/api/v1/meters/", params={"page_size": 1000}).json()["results"]
    return len(meters) == count and all(m["health"]["polls"] >= polls for m in meters)


def test_register_poll_read_and_delete(database_url: str, tmp_path: Path) -> None:
    record = tmp_path / "served"
    with (
        simulator(8, record=record) as sim,
        Server(database_url, tmp_path) as server,
        server.client() as client,
    ):
        _register(client, sim.meters)
        wait_until(lambda: _all_polled(client, 8, 3), timeout=15)

        gone_id = sim.meters[0][0]
        assert client.delete(f"/counter/{gone_id}/").status_code == 204
        assert client.get(f"/counter-data/{gone_id}/").status_code == 404
        assert client.get("/counter-archive/", params={"counter_id": gone_id}).status_code == 404
        assert client.delete(f"/counter/{gone_id}/").status_code == 404
        time.sleep(1.6)  # the registry is re-checked each second; a poll in flight may finish
        before = {m: len(v) for m, v in _served(record).items()}
        time.sleep(2.5)
        after = {m: len(v) for m, v in _served(record).items()}
        assert after[gone_id] == before[gone_id]
        assert all(after[m] >= before[m] + 2 for m, _ in sim.meters[1:])

        for meter_id, _port in sim.meters[1:]:  # freeze readings to compare them
            answer = client.patch(f"/api/v1/meters/{meter_id}/", json={"enabled": False})
            assert answer.json()["enabled"] is False
        time.sleep(1.8)
        served = _served(record)
        for meter_id, _port in sim.meters[1:]:
            archive = client.get("/counter-archive/", params={"counter_id": meter_id}).json()
            stamps = [datetime.fromisoformat(row["timestamp"]) for row in archive]
            assert stamps == sorted(stamps)
            assert [(row["A"], row["kW"]) for row in archive] == served[meter_id]
            latest = client.get(f"/counter-data/{meter_id}/").json()
            assert latest == {"id": meter_id, "A": archive[-1]["A"], "kW": archive[-1]["kW"]}


def test_archive_filters(database_url: str, tmp_path: Path) -> None:
    with (
        simulator(2) as sim,
        Server(database_url, tmp_path) as server,
        server.client() as client,
    ):
        _register(client, sim.meters)
        wait_until(lambda: _all_polled(client, 2, 4), timeout=15)
        meter_id = sim.meters[0][0]

        def archive(**filters: str) -> list[str]:
            answer = client.get("/counter-archive/", params={"counter_id": meter_id, **filters})
            assert answer.status_code == 200, answer.text
            return [row["timestamp"] for row in answer.json()]

        stamps = archive()
        middle = stamps[1]
        moment = datetime.fromisoformat(middle)
        in_moscow = moment.astimezone(timezone(timedelta(hours=3))).isoformat()
        naive_utc = moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
        assert archive(timestamp=middle) == [middle]
        assert archive(timestamp=in_moscow) == [middle]
        assert archive(timestamp=naive_utc) == [middle]
        after = archive()  # the meters keep being polled while we ask
        assert archive(timestamp__gte=middle)[:2] == after[1:3]
        assert archive(timestamp__gt=middle)[0] == after[2]
        assert archive(timestamp__lte=middle) == after[:2]
        assert archive(timestamp__lt=middle) == after[:1]
        assert archive(timestamp__gt=stamps[0], timestamp__lt=stamps[2]) == [middle]
        seed_form = client.get(f"/counter-archive/?counter_id={meter_id}&timestamp<{naive_utc}")
        assert [row["timestamp"] for row in seed_form.json()] == after[:1]


@pytest.fixture
def quiet_server(database_url: str, tmp_path: Path) -> Iterator[httpx.Client]:
    with (
        Server(database_url, tmp_path, METERHUB_COLLECTOR_ENABLED="false") as server,
        server.client() as client,
    ):
        yield client


BAD_REQUESTS = [
    ("post", "/counter/", {"json": {"id": "abc", "port": 9100}}, 400, "id"),
    ("post", "/counter/", {"json": {"id": 1.5, "port": 9100}}, 400, "id"),
    ("post", "/counter/", {"json": {"id": True, "port": 9100}}, 400, "id"),
    ("post", "/counter/", {"json": {"id": -1, "port": 9100}}, 400, "id"),
    ("post", "/counter/", {"json": {"id": 5}}, 400, "port"),
    ("post", "/counter/", {"json": {"port": 9100}}, 400, "id"),
    ("post", "/counter/", {"json": {"id": 5, "port": 8999}}, 400, "port"),
    ("post", "/counter/", {"json": {"id": 5, "port": 65001}}, 400, "port"),
    ("post", "/counter/", {"json": {"id": 5, "port": "x"}}, 400, "port"),
    ("post", "/counter/", {"json": {"id": 44, "port": 9100}}, 400, "id"),
    ("post", "/counter/", {"json": {"id": 5, "port": 9044}}, 400, "port"),
    ("post", "/counter/", {"content": b'{"id": 5, "port":', "headers": JSON}, 400, "body"),
    ("post", "/counter/", {"content": b"[1, 2]", "headers": JSON}, 400, "body"),
    ("delete", "/counter/abc/", {}, 400, "counter_id"),
    ("delete", "/counter/999/", {}, 404, None),
    ("get", "/counter-data/abc/", {}, 400, "counter_id"),
    ("get", "/counter-data/999/", {}, 404, None),
    ("get", "/counter-data/44/", {}, 404, None),  # registered, never read
    ("get", "/counter-archive/", {}, 400, "counter_id"),
    ("get", "/counter-archive/?counter_id=x", {}, 400, "counter_id"),
    ("get", "/counter-archive/?counter_id=44&timestamp__gte=yesterday", {}, 400, "timestamp__gte"),
    ("get", "/counter-archive/?counter_id=44&timestamp=2026-13-01", {}, 400, "timestamp"),
    ("get", "/counter-archive/?counter_id=44&colour=red", {}, 400, "colour"),
    ("get", "/counter-archive/?counter_id=999", {}, 404, None),
    ("post", "/api/v1/meters/", {"json": {"device_id": "w1", "type": "gas"}}, 400, "type"),
    ("post", "/api/v1/meters/", {"json": {"device_id": "a b"}}, 400, "device_id"),
    ("post", "/api/v1/meters/", {"json": {"device_id": "44"}}, 400, "device_id"),
    ("patch", "/api/v1/meters/44/", {"json": {}}, 400, "enabled"),
    ("get", "/api/v1/meters/?status=asleep", {}, 400, "status"),
    ("get", "/api/v1/meters/?page=0", {}, 400, "page"),
    ("get", "/api/v1/meters/nope/", {}, 404, None),
]


def test_bad_input_is_refused_and_changes_nothing(quiet_server: httpx.Client) -> None:
    client = quiet_server
    assert client.post("/counter/", json={"id": 44, "port": 9044}).status_code == 201
    before = client.get("/api/v1/meters/").json()
    for method, path, kwargs, status, field in BAD_REQUESTS:
        answer = client.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert answer.status_code == status, (method, path, answer.text)
        if field is not None:
            assert field in answer.json()["errors"], (path, answer.json())
    assert client.get("/api/v1/meters/").json() == before
    assert Counter(m["device_id"] for m in before["results"]) == Counter(["44"])


def test_openapi_and_docs_are_served(quiet_server: httpx.Client) -> None:
    schema = quiet_server.get("/openapi.json").json()
    assert {"/counter/", "/counter/{counter_id}/", "/counter-data/{counter_id}/"} <= set(
        schema["paths"]
    )
    assert {"/counter-archive/", "/api/v1/meters/", "/api/v1/meters/{device_id}/"} <= set(
        schema["paths"]
    )
    docs = quiet_server.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
