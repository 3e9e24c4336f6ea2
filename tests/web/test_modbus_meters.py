"""Modbus meters on the dashboard, on both databases: the add form's protocol, unit id and
model, and a meter's page showing its wiring and every channel of its model."""

from __future__ import annotations

import html
import re

from sqlalchemy import Engine

from meterhub.registry.devices import channel_tags, get_device
from meterhub.storage import Point, write_points
from meterhub.times import now_us
from tests.web.conftest import Dashboard, shown_notice
from tests.web.meters_support import add, api_headers

MODBUS = {"device_id": "m-1", "type": "electricity", "host": "127.0.0.1", "port": "502"}


def text_of(page: str) -> str:
    return re.sub(r"[ \t\r\n]+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page))).strip()


def stats(page: str) -> dict[str, str]:
    """The current values the page shows, by channel: ``{"U": "230.000 V", ...}``."""
    found = re.findall(
        r'<div class="stat" data-channel="(\w+)">\s*<div class="value">(.*?)</div>', page, re.S
    )
    return {channel: text_of(value) for channel, value in found}


def test_the_form_offers_protocols_and_the_models_with_their_type(dashboard: Dashboard) -> None:
    page = dashboard.get("/meters").text
    assert '<option value="http">HTTP</option>' in page
    assert '<option value="modbus">Modbus TCP</option>' in page
    assert '<input name="unit_id"' in page
    assert '<optgroup label="electricity">' in page
    assert '<option value="SDM120">SDM120 (electricity)</option>' in page
    assert '<option value="SDM630">SDM630 (electricity)</option>' in page
    assert '<optgroup label="water">' not in page  # no water model yet


def test_a_modbus_meter_added_through_the_form(dashboard: Dashboard) -> None:
    form = {**MODBUS, "protocol": "modbus", "unit_id": "7", "model": "SDM630"}
    answer = dashboard.form("/meters", form)
    assert shown_notice(dashboard, answer) == "Meter m-1 added."
    created = dashboard.get("/api/v1/meters/m-1/", headers=api_headers(dashboard)).json()
    wiring = [created[k] for k in ("protocol", "host", "port", "unit_id", "model")]
    assert wiring == ["modbus", "127.0.0.1", 502, 7, "SDM630"]
    taken = dashboard.form("/meters", {**form, "device_id": "m-2"})
    assert taken.status_code == 400
    assert "port 502 unit 7 on 127.0.0.1 is already used" in text_of(taken.text)
    assert '<option value="SDM630" selected>' in taken.text  # the choices are kept
    assert '<option value="modbus" selected>' in taken.text
    assert re.search(r'<input name="unit_id" [^>]*value="7"', taken.text)


def test_the_page_of_a_modbus_meter_shows_its_wiring_and_every_channel(
    dashboard: Dashboard, engine: Engine
) -> None:
    form = {**MODBUS, "protocol": "modbus", "unit_id": "3", "model": "SDM120"}
    dashboard.form("/meters", form)
    at = now_us()
    values = {"A": 4.5, "kW": 1234.5, "U": 230.25, "P": 1.035}
    with engine.begin() as conn:
        tags = channel_tags(conn, get_device(conn, "m-1").pk)
        write_points(conn, [Point(tags[ch], at, v) for ch, v in values.items()])
    page = dashboard.get("/meters/m-1").text
    assert stats(page) == {
        "A": "4.500 A",
        "kW": "1\u2009234.500 kWh",
        "U": "230.250 V",
        "P": "1.035 kW",
    }
    facts = text_of(page)
    assert "Protocol Modbus TCP Address 127.0.0.1:502 Unit id 3 Model SDM120" in facts
    assert 'href="/meter-models#model-SDM120"' in page
    for channel in values:  # a chart for each channel, fed by the series feed
        assert f'id="chart-{channel}"' in page
    series = dashboard.get("/meters/m-1/series", params={"channel": "U"}).json()
    assert (series["unit"], series["v"]) == ("V", [230.25])
    live = dashboard.get("/meters/m-1/live").text
    assert stats(live) == stats(page)
    listed = dashboard.get("/meters").text  # the list keeps to the standard channels
    row = re.search(r'<tr id="meter-m-1">(.*?)</tr>', listed, re.S)
    assert row is not None
    assert re.findall(r'data-channel="(\w+)"', row[1]) == ["A", "kW"]


def test_the_page_of_an_http_meter_shows_its_protocol(dashboard: Dashboard, engine: Engine) -> None:
    add(engine, "e-1", port=9001, readings={"A": 1.0, "kW": 2.0})
    page = dashboard.get("/meters/e-1").text
    assert list(stats(page)) == ["A", "kW"]
    assert "Protocol HTTP Address 127.0.0.1:9001 Project" in text_of(page)
    assert "Unit id" not in text_of(page)
