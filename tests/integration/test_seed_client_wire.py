"""The exact request forms the original connector client sends, over a real server.

Requests are written byte for byte on a socket: empty POST bodies, Python-literal query
values, ``+`` and ``%20`` spaces, ``//smt`` paths, request lines of ~64 KB.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from tests.support import Server

SOURCE = {
    "id": "1",
    "tags": [
        {"id": "1.tag1"},
        {"id": {"tagName": "t1", "parentObjectId": "obj1"}},
        {"id": {"tagName": "t2", "parentObjectId": "obj1"}},
    ],
}
SET_1 = (
    "{'tagId': '1.tag1', 'data': [{'x': '2018-06-26 17:16:00', 'y': 5555, 'q': 1}, "
    "{'x': 1718000000000000, 'y': 12, 'q': 0}]}"
)
SET_2 = "{'tagId': {'tagName': 't1', 'parentObjectId': 'obj1'}, 'data': [{'x': 1, 'y': 2, 'q': 0}]}"


def post(port: int, target: str) -> tuple[int, dict[str, Any]]:
    """POST ``target`` with an empty body and no content type, as the original client does."""
    request = (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, json.loads(body)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, body = out + rest[:size], rest[size + 2 :]
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("wire")
    url = f"sqlite:///{tmp / 'wire.db'}"
    env = {"METERHUB_COLLECTOR_ENABLED": "false", "METERHUB_OPEN_INGEST": "true"}
    with Server(url, tmp, METERHUB_TIMEZONE="UTC", **env) as running:
        answer = httpx.post(
            running.url + "/api/v1/data-sources/", json=SOURCE, headers=running.headers
        )
        answer.raise_for_status()
        yield running


@pytest.mark.parametrize("encode", [quote_plus, quote], ids=["plus", "percent20"])
def test_connect_set_get_as_the_original_client(server: Server, encode: Any) -> None:
    status, connected = post(server.port, "/smt/dataSources/connect?id=1")
    assert status == 200
    assert connected["error"] == {"id": 0}
    assert connected["attributes"]["smtActive"] is True
    assert connected["tags"][1] == {
        "id": {"tagName": "t1", "parentObjectId": "obj1"},
        "attributes": connected["tags"][1]["attributes"],
    }

    target = f"/smt/data/set?data={encode(SET_1)}&data={encode(SET_2)}"
    assert post(server.port, target) == (200, {"error": {"id": 0}, "written": 3})

    params = (
        "{'from': '2018-06-26 17:00:00', 'to': 1718000002000000, 'tagId': '1.tag1', 'actual': True}"
    )
    status, got = post(server.port, f"/smt/data/get?params={encode(params)}")
    assert got["error"] == {"id": 0}
    assert got["data"][0]["tagId"] == "1.tag1"
    assert [p["y"] for p in got["data"][0]["data"]] == [5555, 12]
    assert got["data"][0]["data"][0] == {"x": 1530033360000000, "y": 5555, "q": 1}

    both = (
        "{'from': 0, 'to': 1000000, "
        "'tagId': ['1.tag1', {'tagName': 't1', 'parentObjectId': 'obj1'}], 'actual': False}"
    )
    status, got = post(server.port, f"/smt/data/get?params={encode(both)}")
    assert [entry["tagId"] for entry in got["data"]] == [
        "1.tag1",
        {"tagName": "t1", "parentObjectId": "obj1"},
    ]
    assert got["data"][1]["data"] == [{"x": 1, "y": 2, "q": 0}]

    status, latest = post(server.port, f"/smt/data/get?params={encode(str({'tagId': '1.tag1'}))}")
    assert latest["data"][0]["data"] == [{"x": 1718000000000000, "y": 12, "q": 0}]

    formatted = (
        "{'tagId': '1.tag1', 'from': 1718000000000000, 'to': 1718000000000000, 'format': True}"
    )
    status, got = post(server.port, f"/smt/data/get?params={encode(formatted)}")
    assert got["data"][0]["data"][0]["x"] == "2024-06-10T06:13:20+00:00"


def test_the_seeds_full_get_example(server: Server) -> None:
    params = quote_plus(
        "{'from': '2018-06-26 17:00:00', 'to': 1718000002000000, 'tagId': '1.tag1', "
        "'maxCount': 100, 'timeStep': 1000000, 'format': True, 'actual': True}"
    )
    status, got = post(server.port, f"/smt/data/get?params={params}")
    assert status == 200
    assert got["error"] == {"id": 0}
    (entry,) = got["data"]
    assert entry["excess"] is True  # the 6-year grid is cut to its first 100 instants
    assert all(point["x"].startswith("2018-06-26T17:0") for point in entry["data"])


def test_double_slash_paths_are_served(server: Server) -> None:
    status, connected = post(server.port, "//smt/dataSources/connect?id=1")
    assert (status, connected["error"]) == (200, {"id": 0})


def test_type_as_value_filter_is_a_clear_error(server: Server) -> None:
    params = quote_plus("{'tagId': '1.tag1', 'value': <class 'int'>}")
    status, answer = post(server.port, f"/smt/data/get?params={params}")
    assert status == 200
    assert answer["error"]["id"] == 1
    assert "Python type" in answer["error"]["message"]


def test_unknown_source_and_literal_garbage(server: Server) -> None:
    assert post(server.port, "/smt/dataSources/connect?id=42")[1]["error"]["id"] == 2
    status, answer = post(
        server.port, "/smt/data/set?data=" + quote_plus("{'tagId': __import__('os')}")
    )
    assert (status, answer["error"]["id"]) == (200, 1)


def test_a_64_kb_request_line_is_accepted(server: Server) -> None:
    points = ", ".join(
        f"{{'x': {1_600_000_000_000_000 + i}, 'y': {i}, 'q': 0}}" for i in range(920)
    )
    record = quote_plus(
        f"{{'tagId': {{'tagName': 't2', 'parentObjectId': 'obj1'}}, 'data': [{points}]}}"
    )
    target = f"/smt/data/set?data={record}"
    assert 60_000 < len(target) < 67_000
    assert post(server.port, target) == (200, {"error": {"id": 0}, "written": 920})


def test_an_inactive_source_connects_with_smt_active_false(server: Server) -> None:
    """The original client raises its "source not active" error only from ``error.id`` 0 with
    ``smtActive`` false (any other id is its generic server error); writes and reads of the
    inactive source are then error 3, with a message as it needs."""
    source = {"id": "2", "active": False, "tags": [{"id": "2.tag1"}]}
    created = httpx.post(server.url + "/api/v1/data-sources/", json=source, headers=server.headers)
    assert created.status_code == 201, created.text
    status, connected = post(server.port, "/smt/dataSources/connect?id=2")
    assert (status, connected["error"]) == (200, {"id": 0})
    assert connected["attributes"] == {"smtActive": False, "smtJsonConfigString": "{}"}
    assert [tag["id"] for tag in connected["tags"]] == ["2.tag1"]
    record = quote_plus("{'tagId': '2.tag1', 'data': [{'x': 1, 'y': 2, 'q': 0}]}")
    params = quote_plus("{'tagId': '2.tag1'}")
    for target in (f"/smt/data/set?data={record}", f"/smt/data/get?params={params}"):
        status, answer = post(server.port, target)
        assert status == 200
        assert answer == {"error": {"id": 3, "message": "data source 2 is not active"}}
