"""Every endpoint, taken from the app's route table, refuses callers it must refuse.

For each route and method: no token, a malformed token, a wrong token and a revoked
token are 401; a user of another project is refused (403 for administrators' endpoints,
404 for another project's objects, whose existence is not revealed) and lists show
nothing of that project. A route added later is checked without touching this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from meterhub.alerts.evaluator import AlertEvaluator
from meterhub.alerts.rule_store import create_channel, create_rule
from meterhub.api.app import create_app
from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tasks import create_task
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import create_device
from meterhub.registry.projects import assign_device, create_house, create_project
from meterhub.registry.sources import create_source
from meterhub.registry.tags import TagSpec
from meterhub.registry.users import create_user, issue_token, revoke_token
from meterhub.settings import Settings
from meterhub.times import now_us

MONTHLY = {"month": "*", "day": "1", "hour": "0", "minute": "0"}
PUBLIC = {"login", "workers_health"}
"""Operations anyone may call: logging in, and the health probe of load balancers."""
INGEST = {
    "createCounter",
    "deleteCounter",
    "getCounterData",
    "getCounterArchive",
    "connectDataSource",
    "setData",
    "getData",
}
"""Operations open to every valid token (no project scope), or to all with open ingest."""
OWN_SESSION = {"logout"}


@dataclass
class World:
    client: TestClient
    admin: str
    outsider: str  # a user of project B only
    revoked: str
    values: dict[str, Any]  # path and query values naming project A's objects
    secrets: list[str]  # strings that must never appear in the outsider's answers


def _build(engine: Engine) -> dict[str, Any]:
    with engine.begin() as conn:
        a = create_project(conn, "Project A", "Asia/Shanghai", "CNY")
        b = create_project(conn, "Project B", "Europe/Berlin", "EUR")
        house = create_house(conn, a.id, ["A-estate", "1", "2", "301", ""], [("Li", "13336915622")])
        create_device(conn, "5001", DeviceType.ELECTRICITY, host="127.0.0.1", port=9501)
        assign_device(conn, "5001", house)
        set_tariff(conn, a.id, DeviceType.ELECTRICITY, Tariff.flat(Decimal("0.5")))
        task = create_task(conn, a.id, "A monthly", DeviceType.ELECTRICITY, MONTHLY)
        create_source(conn, "src-a", "Source A", tag_specs=[TagSpec("src-a.t")])
        admin = create_user(conn, "root", "correct horse", is_admin=True)
        outsider = create_user(conn, "bob", "battery staple", project_ids=[b.id])
        revoked = issue_token(conn, outsider.id)
        revoke_token(conn, revoked)
        alert_rule = create_rule(
            conn, a.id, name="A rule", kind="offline", device_id="5001", params={"minutes": 1}
        )
        channel = create_channel(
            conn, a.id, kind="webhook", url="http://127.0.0.1:9/", secret="0123456789abcdef"
        )
    AlertEvaluator(engine).tick(now_us() + 5 * 60_000_000)  # 5001, never read: an alert
    with engine.begin() as conn:
        return {
            "admin": issue_token(conn, admin.id),
            "outsider": issue_token(conn, outsider.id),
            "revoked": revoked,
            "values": {
                "project_id": a.id,
                "house_id": house,
                "device_id": "5001",
                "counter_id": 5001,
                "natrual_key": task.key,
                "source_id": "src-a",
                "tag_id": "src-a.t",
                "name": "SDM120",
                "device_type": "electricity",
                "start_date": "2026-1-1",
                "end_date": "2026-12-31",
                "rule_id": alert_rule.id,
                "channel_id": channel.id,
                "alert_id": 1,
            },
            "secrets": ["A-estate", "Project A", task.key, "src-a", '"5001"', "A rule"],
        }


@pytest.fixture
def world(database_url: str, engine: Engine) -> Iterator[World]:
    built = _build(engine)
    app = create_app(Settings(database_url=database_url, collector_enabled=False))
    with TestClient(app) as client:
        yield World(
            client,
            built["admin"],
            built["outsider"],
            built["revoked"],
            built["values"],
            built["secrets"],
        )


def _bodies(values: dict[str, Any]) -> dict[str, Any]:
    """Valid bodies for the writing operations, aimed at project A's objects."""
    a = values["project_id"]
    return {
        "createTask": {"name": "x", "project_id": a, "crontab": MONTHLY, "device_type": 2},
        "updateTask": {"name": "x", "crontab": MONTHLY, "enabled": True, "description": ""},
        "setTaskStatus": {"enabled": False},
        "createProject": {"name": "x", "timezone": "UTC", "currency": "EUR"},
        "updateProject": {"name": "x"},
        "createHouse": {"address": ["x", "", "", "", ""], "residents": []},
        "updateHouse": {"address": ["x", "", "", "", ""]},
        "assignDevice": {"device_id": "5001"},
        "setTariff": {"price": "1"},
        "createMeter": {"device_id": "x1"},
        "updateMeter": {"enabled": False},
        "createDataSource": {"id": "x"},
        "createAlertRule": {"name": "x", "kind": "offline", "params": {"minutes": 5}},
        "updateAlertRule": {"enabled": False},
        "createAlertChannel": {"kind": "email", "addresses": ["ops@example.org"]},
        "updateDataSource": {"active": False},
        "createTag": {"source_id": "src-a", "id": "src-a.u"},
        "updateTag": {"active": False},
    }


def _operations() -> list[tuple[str, str, str]]:
    """(operation id, method, path template) of every route, from the app's OpenAPI
    document (FastAPI builds it from the route table; no route is hidden from it)."""
    app = create_app(Settings(database_url="sqlite://", collector_enabled=False))
    return [
        (spec["operationId"], method.upper(), path)
        for path, methods in app.openapi()["paths"].items()
        for method, spec in methods.items()
    ]


OPERATIONS = _operations()
IDS = [operation for operation, _, _ in OPERATIONS]


def _call(world: World, operation: str, method: str, path: str, token: str | None) -> Any:
    url = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(world.values[m.group(1)]), path)
    query = {k: v for k, v in world.values.items() if k in ("project_id", "start_date", "end_date")}
    headers = {"Authorization": f"token {token}"} if token else {}
    body = _bodies(world.values).get(operation)
    return world.client.request(method, url, params=query, json=body, headers=headers)


@pytest.mark.parametrize(
    ("operation", "method", "path"), OPERATIONS, ids=[o[0] for o in OPERATIONS]
)
def test_every_endpoint_needs_a_valid_token(
    world: World, operation: str, method: str, path: str
) -> None:
    if operation in PUBLIC:
        pytest.skip("public by design: it issues tokens, or answers health probes")
    for token in (None, "garbage", "1:" + "0" * 40, world.revoked):
        answer = _call(world, operation, method, path, token)
        assert answer.status_code == 401, (token, answer.text)


@pytest.mark.parametrize(
    ("operation", "method", "path"), OPERATIONS, ids=[o[0] for o in OPERATIONS]
)
def test_another_projects_user_sees_and_changes_nothing(
    world: World, operation: str, method: str, path: str
) -> None:
    if operation in PUBLIC | INGEST | OWN_SESSION:
        pytest.skip("not project-scoped: any valid token may call it")
    answer = _call(world, operation, method, path, world.outsider)
    if answer.status_code == 200 and method == "GET":  # a list filtered to bob's projects
        assert not any(secret in answer.text for secret in world.secrets), answer.text
    else:
        assert answer.status_code in (403, 404), answer.text
    check = world.client.get(
        "/api/v1/scheduler/tasks/" + str(world.values["natrual_key"]) + "/",
        headers={"Authorization": f"token {world.admin}"},
    )
    assert check.status_code == 200  # project A's task is still there, unchanged
    assert check.json()["data"]["enabled"] is True
