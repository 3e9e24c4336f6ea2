"""The alerts API on both databases: rules and channels kept per project, 400s naming
each bad field, alerts listed open first, acknowledged by the caller, attempts logged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from meterhub.alerts.evaluator import AlertEvaluator
from meterhub.alerts.notify import Deliverer
from meterhub.api.app import create_app
from meterhub.settings import Settings
from tests.alerts_support import MINUTE, Site, base_time, make_site, read, webhook_receiver
from tests.support import admin_token

SECRET = "0123456789abcdef0123"


@pytest.fixture
def site(engine: Engine, api: TestClient) -> Site:
    return make_site(engine)


def rules_url(site: Site) -> str:
    return f"/api/v1/projects/{site.project_id}/alert-rules/"


def test_rules_are_created_changed_and_deleted(api: TestClient, site: Site) -> None:
    body = {"name": "Silent", "kind": "offline", "device_type": "water", "params": {"minutes": 30}}
    created = api.post(rules_url(site), json=body | {"remind_after_minutes": 60})
    assert created.status_code == 201, created.text
    rule = created.json()
    assert (rule["kind"], rule["params"], rule["device_type"]) == (
        "offline",
        {"minutes": 30},
        "water",
    )
    url = f"/api/v1/alert-rules/{rule['id']}/"
    changed = api.patch(url, json={"params": {"minutes": 45}, "remind_after_minutes": None})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["params"], changed.json()["remind_after_minutes"]) == (
        {"minutes": 45},
        None,
    )
    leak = {"name": "Leak", "kind": "night_flow", "params": {"from": "23:30"}}
    defaults = api.post(rules_url(site), json=leak).json()
    assert defaults["params"] == {"from": "23:30", "to": "05:00", "min_flow": 0.0}
    assert defaults["device_type"] == "water"
    listed = api.get(rules_url(site)).json()
    assert [r["name"] for r in listed["results"]] == ["Silent", "Leak"]
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


BAD_RULES: list[tuple[dict[str, Any], str]] = [
    ({"kind": "offline", "params": {"minutes": "soon"}}, "params.minutes"),
    ({"kind": "offline", "params": {}}, "params.minutes"),
    ({"kind": "offline", "params": {"minutes": 5, "hours": 1}}, "params.hours"),
    ({"kind": "consumption_above", "params": {"limit": 5}}, "device_type"),
    (
        {"kind": "consumption_above", "device_type": "water", "params": {"limit": -1}},
        "params.limit",
    ),
    (
        {
            "kind": "consumption_above",
            "device_type": "water",
            "params": {"limit": 1, "per": "week"},
        },
        "params.per",
    ),
    ({"kind": "night_flow", "params": {"from": "25:00"}}, "params.from"),
    ({"kind": "night_flow", "device_type": "electricity"}, "device_type"),
    ({"kind": "missing_before_billing", "params": {"hours_ahead": 0}}, "params.hours_ahead"),
    ({"kind": "offline", "device_id": "nope", "params": {"minutes": 5}}, "device_id"),
    ({"kind": "soon", "params": {}}, "kind"),
    (
        {"kind": "offline", "params": {"minutes": 5}, "remind_after_minutes": 0},
        "remind_after_minutes",
    ),
    ({"kind": "offline", "name": "", "params": {"minutes": 5}}, "name"),
]
BAD_CHANNELS: list[tuple[dict[str, Any], str]] = [
    ({"kind": "webhook", "url": "ftp://x", "secret": SECRET}, "url"),
    ({"kind": "webhook", "url": "http://127.0.0.1:9/", "secret": "short"}, "secret"),
    ({"kind": "email", "addresses": ["not-an-address"]}, "addresses"),
    ({"kind": "email", "addresses": []}, "addresses"),
    ({"kind": "sms"}, "kind"),
]


def test_bad_input_is_400_naming_the_field(api: TestClient, site: Site) -> None:
    channels = f"/api/v1/projects/{site.project_id}/alert-channels/"
    cases = [(rules_url(site), {"name": "x", **body}, field) for body, field in BAD_RULES]
    cases += [(channels, body, field) for body, field in BAD_CHANNELS]
    for url, body, field in cases:
        answer = api.post(url, json=body)
        assert answer.status_code == 400, answer.text
        assert field in answer.json()["errors"], (body, answer.json())
    listed = api.get(f"/api/v1/projects/{site.project_id}/alerts/", params={"state": "x"})
    assert listed.status_code == 400
    assert "state" in listed.json()["errors"]


def test_alerts_open_first_acknowledged_and_their_attempts(
    api: TestClient, database_url: str, engine: Engine, site: Site
) -> None:
    now = base_time()
    rule = {"name": "Silent", "kind": "offline", "params": {"minutes": 5}}
    assert api.post(rules_url(site), json=rule).status_code == 201
    with webhook_receiver() as receiver:
        channel = {"kind": "webhook", "url": receiver.url, "secret": SECRET}
        made = api.post(f"/api/v1/projects/{site.project_id}/alert-channels/", json=channel)
        assert made.status_code == 201
        assert "secret" not in made.json()
        evaluator = AlertEvaluator(engine)
        evaluator.tick(now)  # every meter silent since it was registered
        for meter in ("E1", "E2"):
            read(engine, site, meter, (now + MINUTE, 1.0))
        evaluator.tick(now + 2 * MINUTE)  # E1 and E2 back
        settings = Settings(database_url=database_url, alert_send_timeout=2.0)
        deliverer = Deliverer(engine, settings)
        assert asyncio.run(deliverer.deliver(now + 3 * MINUTE)) == 4  # fired
        assert asyncio.run(deliverer.deliver(now + 3 * MINUTE)) == 2  # resolved, after them
    alerts_url = f"/api/v1/projects/{site.project_id}/alerts/"
    listed = api.get(alerts_url).json()
    assert listed["count"] == 4
    assert [(a["device_id"], a["state"]) for a in listed["results"]][:2] in (
        [("W1", "open"), ("W2", "open")],
        [("W2", "open"), ("W1", "open")],
    )
    assert {a["state"] for a in listed["results"][2:]} == {"resolved"}
    open_one = listed["results"][0]
    acked = api.post(f"/api/v1/alerts/{open_one['id']}/ack/")
    assert acked.status_code == 200
    assert acked.json()["acknowledged_by"].startswith("admin-")
    assert acked.json()["state"] == "open"
    only_e1 = api.get(alerts_url, params={"device_id": "E1", "state": "resolved"}).json()
    assert [a["device_id"] for a in only_e1["results"]] == ["E1"]
    paged = api.get(alerts_url, params={"page_size": 1, "page": 2}).json()
    assert (paged["count"], len(paged["results"]), paged["next"]) == (4, 1, True)
    attempts = api.get(f"/api/v1/projects/{site.project_id}/notification-attempts/").json()
    assert attempts["count"] == 6
    assert {(a["ok"], a["status_code"]) for a in attempts["results"]} == {(True, 200)}
    assert len(receiver.requests) == 6
    assert api.delete(f"/api/v1/projects/{site.project_id}/").status_code == 204  # all with it
    assert api.get(f"/api/v1/alerts/{open_one['id']}/").status_code == 404


def test_a_webhook_must_name_an_allowed_target_when_a_list_is_set(
    database_url: str, site: Site
) -> None:
    settings = Settings(
        database_url=database_url,
        collector_enabled=False,
        alerts_enabled=False,
        webhook_allow="*.corp.example",
    )
    headers = {"Authorization": f"token {admin_token(database_url)}"}
    channels = f"/api/v1/projects/{site.project_id}/alert-channels/"
    with TestClient(create_app(settings), headers=headers) as client:
        refused = client.post(
            channels, json={"kind": "webhook", "url": "http://127.0.0.1:9/", "secret": SECRET}
        )
        made = client.post(
            channels, json={"kind": "webhook", "url": "https://ops.corp.example/", "secret": SECRET}
        )
    assert refused.status_code == 400
    assert refused.json()["errors"] == {
        "url": ["not an allowed webhook target (METERHUB_WEBHOOK_ALLOW)"]
    }
    assert made.status_code == 201, made.text
