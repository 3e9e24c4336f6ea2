"""An MQTT source configured through the data source API of a real ``meterhub serve``,
shown on the dashboard, and fed while meterhub is stopped: every message is stored once
it is back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select

from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import create_device
from meterhub.registry.tables import data_sources
from meterhub.web.session import COOKIE
from tests.mqtt_support import Broker, publish, stored
from tests.support import Server, wait_until

T_US = 1_772_366_400_000_000  # 2026-03-01T12:00:00Z
ENV = {
    "METERHUB_MQTT_CHECK_INTERVAL": "0.2",
    "METERHUB_COLLECTOR_ENABLED": "false",
    "METERHUB_SCHEDULER_ENABLED": "false",
    "METERHUB_COMPACT_ENABLED": "false",
}


def _mqtt(broker: Broker, **changes: Any) -> dict[str, Any]:
    topics = [
        {"pattern": "site/{device}/energy", "channel": "kW"},
        {"pattern": "site/{device}/state"},
        {"pattern": "plant/{name}/temp", "tag": "gw.{name}"},
    ]
    return {"mqtt": {"url": broker.url, "username": "meterhub", "topics": topics, **changes}}


def _status(http: httpx.Client) -> dict[str, Any]:
    found: dict[str, Any] = http.get("/api/v1/data-sources/gw/").json()["mqtt"]
    return found


def _wait(http: httpx.Client, **wanted: Any) -> None:
    wait_until(lambda: {key: _status(http)[key] for key in wanted} == wanted, 10, 0.1)


def _create(http: httpx.Client, broker: Broker) -> None:
    """Settings with a bad pattern are refused naming it; good ones kept without the
    password, and the subscriber connects."""
    rule = {"pattern": "a/{device}", "channel": "A"}
    bad = _mqtt(broker, topics=[rule, rule, {"pattern": "a/#/b", "tag": "t"}])
    answer = http.post("/api/v1/data-sources/", json={"id": "gw", "config": bad})
    assert answer.status_code == 400
    assert list(answer.json()["errors"]) == ["mqtt.topics[2].pattern"]
    config = _mqtt(broker, password="s3cret")
    answer = http.post("/api/v1/data-sources/", json={"id": "gw", "config": config})
    assert answer.status_code == 201, answer.text
    assert "s3cret" not in answer.text
    assert json.loads(answer.json()["config"])["mqtt"]["password_set"] is True
    _wait(http, state="connected", connected=True)


def _shown(http: httpx.Client, token: str) -> None:
    """The status on the API and the dashboard, the password nowhere."""
    assert _status(http)["last_bad"]["topic"] == "site/x-1/energy"
    http.cookies.set(COOKIE, token)
    page = http.get("/sources/gw").text
    assert "MQTT subscriber" in page
    assert "connected" in page
    assert "site/x-1/energy" in page
    assert "&lt;b&gt;12&lt;/b&gt;" in page
    listed = http.get("/api/v1/data-sources/").json()["results"][0]
    assert listed["mqtt"]["state"] == "connected"
    connected = http.post("/smt/dataSources/connect", json={"id": "gw"})
    for text in (page, connected.text, http.get("/api/v1/data-sources/").text):
        assert "s3cret" not in text


def _reconfigured(http: httpx.Client, broker: Broker, engine: Engine) -> None:
    """Settings sent back without the password keep it, and the subscriber restarts; a
    second source on the same session id is refused; bad settings are named."""
    answer = http.patch("/api/v1/data-sources/gw/", json={"config": _mqtt(broker, keepalive=20)})
    assert answer.status_code == 200
    with engine.connect() as conn:
        assert conn.execute(select(data_sources.c.secret)).scalar_one() == "s3cret"
    publish(broker, [("site/e-7/energy", "13")])
    _wait(http, state="connected", messages_stored=6)

    twin = {"id": "gw2", "config": _mqtt(broker, client_id="meterhub-gw")}
    assert http.post("/api/v1/data-sources/", json=twin).status_code == 201
    wait_until(
        lambda: (
            http.get("/api/v1/data-sources/gw2/").json()["mqtt"]["last_error"]
            == "client id meterhub-gw is gw's too"
        ),
        10,
        0.1,
    )
    answer = http.patch("/api/v1/data-sources/gw/", json={"config": _mqtt(broker, url="tcp://x")})
    assert list(answer.json()["errors"]) == ["mqtt.url"]


def test_configured_by_api_shown_and_fed_while_meterhub_is_stopped(
    tmp_path: Path, broker: Broker
) -> None:
    url = f"sqlite:///{tmp_path / 'meterhub.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        create_device(conn, "e-7", DeviceType.ELECTRICITY)
    server = Server(url, tmp_path, **ENV)
    with server, server.client() as http:
        _create(http, broker)
        good = [("site/e-7/energy", "10"), ("site/e-7/state", '{"kW": 11, "A": 2}')]
        publish(broker, [*good, ("site/x-1/energy", "<b>12</b>")])
        _wait(http, messages_stored=2, bad_messages=1)
        _shown(http, server.token)

    # meterhub is stopped: the broker keeps these for its session
    publish(broker, [("site/e-7/energy", "12"), ("site/e-7/energy", "12")])
    publish(broker, [("site/e-7/state", f'{{"ts": {T_US}, "kW": 5}}')])
    with server, server.client() as http:
        _wait(http, state="connected", messages_stored=5)
        values = [value for _, value, _ in stored(engine, "e-7.kW")]
        assert values == [5, 10, 11, 12, 12]  # by time: the timed one is earliest
        _reconfigured(http, broker, engine)
        assert http.patch("/api/v1/data-sources/gw/", json={"active": False}).status_code == 200
        _wait(http, state="stopped", connected=False)
    engine.dispose()
