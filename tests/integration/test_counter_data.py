"""``GET /counter-data/<id>/`` and the short reads behind it, on both databases: each answer
comes from the database at that request (a revoked token, a deleted meter, a newer reading
count at once), requests arriving together each get their own answer, and the refusals
come in the order FastAPI's own checks would give them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from meterhub.api import counter
from meterhub.api.app import create_app
from meterhub.api.errors import install_error_handlers
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device, delete_device
from meterhub.registry.users import TOKEN_OWNER, create_user, issue_token, revoke_token
from meterhub.settings import Settings
from meterhub.short_reads import ShortReads, Statement, text
from meterhub.storage import Point, write_points

HOUR_US = 3_600_000_000
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
METERS = range(7001, 7011)
"""Meters with a reading each: A = id / 100, kW = id + 0.25."""
SILENT = 7100
"""A meter without readings."""
UNKNOWN = 7999


@dataclass
class Fleet:
    engine: Engine
    token: str
    revoked: str
    tags: dict[int, dict[str, int]]

    def write(self, meter: int, ts: int, **values: float) -> None:
        points = [Point(self.tags[meter][channel], ts, v) for channel, v in values.items()]
        with self.engine.begin() as conn:
            write_points(conn, points)


@pytest.fixture
def fleet(engine: Engine) -> Fleet:
    with engine.begin() as conn:
        user = create_user(conn, "reader", "correct horse")  # no project: any token will do
        token, revoked = issue_token(conn, user.id), issue_token(conn, user.id)
        revoke_token(conn, revoked)
        tags = {
            meter: channel_tags(conn, create_device(conn, str(meter), DeviceType.ELECTRICITY).pk)
            for meter in [*METERS, SILENT]
        }
    built = Fleet(engine, token, revoked, tags)
    for meter in METERS:
        built.write(meter, T0, A=meter / 100, kW=meter + 0.25)
    return built


def _app(database_url: str, **settings: Any) -> FastAPI:
    return create_app(
        Settings(
            database_url=database_url,
            collector_enabled=False,
            scheduler_enabled=False,
            compact_enabled=False,
            **settings,
        )
    )


@pytest.fixture
def client(database_url: str, fleet: Fleet) -> Iterator[TestClient]:
    with TestClient(_app(database_url), headers=_auth(fleet.token)) as client:
        yield client


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def _expected(meter: int) -> dict[str, Any]:
    return {"id": meter, "A": meter / 100, "kW": meter + 0.25}


def test_each_answer_reads_the_database_at_that_request(client: TestClient, fleet: Fleet) -> None:
    answer = client.get("/counter-data/7001/")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == _expected(7001)

    fleet.write(7001, T0 + HOUR_US, kW=8000.0)  # a newer reading of one channel
    assert client.get("/counter-data/7001/").text == '{"id":7001,"A":null,"kW":8000}'
    fleet.write(7001, T0 + HOUR_US, A=0.5)
    assert client.get("/counter-data/7001/").json() == {"id": 7001, "A": 0.5, "kW": 8000}

    assert client.get(f"/counter-data/{SILENT}/").json() == {
        "detail": f"meter {SILENT} has no reading yet"
    }
    assert client.get(f"/counter-data/{UNKNOWN}/").status_code == 404
    with fleet.engine.begin() as conn:
        delete_device(conn, "7001")
    answer = client.get("/counter-data/7001/")
    assert (answer.status_code, answer.json()) == (404, {"detail": "no meter with id 7001"})
    assert client.get("/counter-data/7002/").json() == _expected(7002)


def test_a_revoked_token_is_refused_from_the_next_request_on(
    client: TestClient, fleet: Fleet
) -> None:
    with fleet.engine.begin() as conn:
        user = create_user(conn, "leaver", "correct horse")
        token = issue_token(conn, user.id)
    connect = ("/smt/dataSources/connect", {"id": "nope"})  # any call under ingest_access
    for _ in range(3):  # the short-read connections are in use, and stay open
        assert client.get("/counter-data/7002/", headers=_auth(token)).status_code == 200
        assert client.post(connect[0], json=connect[1], headers=_auth(token)).status_code == 200
    with fleet.engine.begin() as conn:
        revoke_token(conn, token)
    for _ in range(3):
        answer = client.get("/counter-data/7002/", headers=_auth(token))
        assert (answer.status_code, answer.json()) == (401, {"detail": "invalid or revoked token"})
        assert answer.headers["www-authenticate"] == "Token"
        assert client.post(connect[0], json=connect[1], headers=_auth(token)).status_code == 401
    assert client.get("/counter-data/7002/").status_code == 200  # the fixture's token


@pytest.mark.parametrize(
    ("authorization", "path", "status", "detail"),
    [
        (None, "/counter-data/abc/", 401, "authentication required"),
        ("token garbage", "/counter-data/abc/", 401, "malformed token"),
        ("token 1:" + "0" * 40, "/counter-data/abc/", 401, "invalid or revoked token"),
        ("token 1:" + "0" * 40, "/counter-data/7001/", 401, "invalid or revoked token"),
        ("token 1:" + "0" * 40, f"/counter-data/{UNKNOWN}/", 401, "invalid or revoked token"),
        ("fixture", "/counter-data/abc/", 400, "invalid input: counter_id"),
        ("fixture", "/counter-data/-1/", 400, "invalid input: counter_id"),
        ("fixture", f"/counter-data/{2**63}/", 400, "invalid input: counter_id"),
        ("fixture", "/counter-data/1.5/", 400, "invalid input: counter_id"),
        ("fixture", "/counter-data/007002/", 200, None),
    ],
)
def test_refusals_come_in_fastapis_order(
    client: TestClient,
    fleet: Fleet,
    authorization: str | None,
    path: str,
    status: int,
    detail: str | None,
) -> None:
    """No, a malformed or a wrong token before a bad id, as when FastAPI solved
    ``ingest_access`` before validating the path."""
    request = client.build_request("GET", path)  # with the fixture's token
    if authorization is None:
        del request.headers["Authorization"]
    elif authorization != "fixture":
        request.headers["Authorization"] = authorization
    answer = client.send(request)
    assert answer.status_code == status, answer.text
    if detail:
        assert answer.json()["detail"].startswith(detail)
    if status == 400:
        assert list(answer.json()["errors"]) == ["counter_id"]


def test_open_ingest_needs_no_token(database_url: str, fleet: Fleet) -> None:
    with TestClient(_app(database_url, open_ingest=True)) as client:
        assert client.get("/counter-data/7003/").json() == _expected(7003)
        answer = client.get("/counter-data/7003/", headers={"Authorization": "token garbage"})
        assert answer.json() == _expected(7003)
        assert client.get(f"/counter-data/{UNKNOWN}/").status_code == 404
        assert client.get("/counter-data/abc/").status_code == 400


def test_requests_arriving_together_each_get_their_own_answer(
    database_url: str, fleet: Fleet
) -> None:
    """Reads asked for in the same turn of the event loop share one statement on
    PostgreSQL: each answer must still be its own request's."""
    cases: list[tuple[str, int, int, dict[str, Any] | None]] = [
        *((fleet.token, meter, 200, _expected(meter)) for meter in METERS),
        *((fleet.revoked, meter, 401, None) for meter in METERS),
        (fleet.token, SILENT, 404, None),
        (fleet.token, UNKNOWN, 404, None),
        ("2:" + "f" * 40, 7004, 401, None),
    ]
    requests = list(itertools.islice(itertools.cycle(cases), 150))

    async def ask_all() -> list[httpx.Response]:
        app = _app(database_url, token_max_failures_per_address=len(requests) * 2)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await asyncio.gather(
                    *(
                        client.get(f"/counter-data/{meter}/", headers=_auth(token))
                        for token, meter, _, _ in requests
                    )
                )
        finally:
            app.state.engine.dispose()

    for answers in (asyncio.run(ask_all()), asyncio.run(ask_all())):
        for (_, meter, status, body), answer in zip(requests, answers, strict=True):
            assert answer.status_code == status, (meter, answer.text)
            if body is not None:
                assert answer.json() == body


def test_an_app_adding_dependencies_gets_them_run(database_url: str, fleet: Fleet) -> None:
    """``CounterDataRoute`` serves the route itself only under ``ingest_access`` alone:
    another dependency of the router makes FastAPI serve it, running that dependency."""
    calls: list[str] = []

    def recorded() -> None:
        calls.append("called")

    app = _app(database_url)
    other = FastAPI()
    other.state.settings, other.state.engine = app.state.settings, app.state.engine
    other.state.throttle = app.state.throttle
    install_error_handlers(other)
    router = APIRouter()
    counter.add_counter_data(router)
    other.include_router(router, dependencies=[Depends(recorded)])
    with TestClient(other) as client:
        assert client.get("/counter-data/7005/", headers=_auth(fleet.token)).json() == (
            _expected(7005)
        )
        assert calls == ["called"]
        assert client.get("/counter-data/7005/", headers=_auth(fleet.revoked)).status_code == 401
        assert client.get("/counter-data/7005/").status_code == 401
    app.state.engine.dispose()


BAD_CAST = Statement("bad_cast", "SELECT CAST($1 AS integer)", (int,))
ECHO = Statement("echo", "SELECT $1", (text,))


def test_postgresql_reads_batch_and_outlive_broken_connections(
    fleet: Fleet, request: pytest.FixtureRequest
) -> None:
    if fleet.engine.dialect.name != "postgresql":
        pytest.skip("SQLite reads in the process: no statements to batch, no connection to lose")
    postgres_admin = request.getfixturevalue("postgres_admin")
    reads = ShortReads(fleet.engine)
    sent: list[int] = []
    send = reads._pg_fetch  # the statements that go to the server

    async def counted(statement: Statement, params: Any) -> Any:
        sent.append(len(params[0]))
        return await send(statement, params)

    reads._pg_fetch = counted  # type: ignore[method-assign]
    digests = [None, "nope", *("x" * n for n in range(1, 40))]

    async def scenario() -> None:
        answers = await asyncio.gather(*(reads.fetch(TOKEN_OWNER, (d,)) for d in digests))
        assert answers == [[]] * len(digests)
        assert len(sent) == 1  # one statement for all
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            await reads.fetch(BAD_CAST, ("x",))
        assert await reads.fetch(BAD_CAST, ("7",)) == [(7,)]  # the connection still serves
        tricky = ['a"b', "c\\d", "{x,y}", "NULL", "", " sp ", "ünï", None]
        echoes = await asyncio.gather(*(reads.fetch(ECHO, (t,)) for t in tricky))
        assert echoes == [[(t,)] for t in tricky]  # one array holds them all
        database = fleet.engine.url.database
        with psycopg.connect(postgres_admin, autocommit=True) as admin:  # a server restart
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )
        await asyncio.sleep(0.2)
        assert await reads.fetch(ECHO, ("ok",)) == [("ok",)]

    try:
        asyncio.run(scenario())
    finally:
        reads.close()
