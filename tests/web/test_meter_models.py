"""The meter models page, on both databases: every model's register map as stored, adding
one from a pasted or uploaded model file (bad fields named, nothing stored), deleting an
added one no meter uses, administrators only."""

from __future__ import annotations

import html
import json
import re

import httpx2
from sqlalchemy import Engine

from meterhub.registry.users import create_user
from tests.web.conftest import Dashboard, log_in, page_notice, shown_notice
from tests.web.meters_support import api_headers

FLOW = """\
name = "flow-1"
device_type = "water"

[channels.V]
address = 0x0010
function = "holding"
type = "uint32"
word_order = "little"
scale = 0.001

[channels.T]
address = 2
type = "int16"
unit = "°C"
label = "Temperature"
min = -40
max = 120
"""


def text_of(page: str) -> str:
    inline = re.sub(r"</?code>", "", page)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", inline))).strip()


def models(page: str) -> list[str]:
    return re.findall(r'<section class="card" id="model-([^"]+)">', page)


def channel_rows(page: str, model: str) -> dict[str, list[str]]:
    """The cells of each channel row of a model's table, by channel."""
    section = re.search(rf'id="model-{re.escape(model)}">(.*?)</section>', page, re.S)
    assert section, f"model {model} is not shown"
    rows = re.findall(r'<tr data-channel="(\w+)">(.*?)</tr>', section[1], re.S)
    return {
        name: [text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for name, row in rows
    }


def paste(client: Dashboard, text: str) -> httpx2.Response:
    return client.post("/meter-models", data={**client.csrf(), "text": text})


def upload(client: Dashboard, name: str, content: str | bytes) -> httpx2.Response:
    files = {"file": (name, content, "application/octet-stream")}
    return client.post("/meter-models", data={**client.csrf(), "text": ""}, files=files)


def test_the_page_lists_the_built_in_models_with_their_registers(dashboard: Dashboard) -> None:
    answer = dashboard.get("/meter-models")
    assert answer.status_code == 200
    page = answer.text
    assert '<a href="/meter-models" aria-current="page">Meter models</a>' in page
    assert models(page) == ["SDM120", "SDM630"]
    assert "electricity · built in · used by 0 meters" in text_of(page)
    sdm120 = channel_rows(page, "SDM120")
    assert list(sdm120) == ["A", "kW", "U", "P"]
    assert sdm120["kW"] == [
        "kW", "Energy", "72 (0x0048)", "input", "float32", "big / big", "1.0", "kWh",
        "register", "any",
    ]  # fmt: skip
    assert sdm120["P"][2:9] == [
        "12 (0x000C)",
        "input",
        "float32",
        "big / big",
        "0.001",
        "kW",
        "gauge",
    ]
    assert sdm120["U"][-1] == "0.0 … ∞"
    assert set(channel_rows(page, "SDM630")) == {"A", "kW", "A2", "A3", "U1", "U2", "U3", "P"}
    assert "/delete" not in page  # built-in models cannot be deleted
    scripts = re.findall(r"<script([^>]*)>", page)
    assert scripts
    assert all('src="/static/' in attrs for attrs in scripts)  # none inline
    assert "script-src 'self'" in answer.headers["content-security-policy"]


def test_a_pasted_model_is_added_and_shown(dashboard: Dashboard) -> None:
    answer = paste(dashboard, FLOW)
    assert answer.headers["location"] == "/meter-models"
    assert shown_notice(dashboard, answer) == "Meter model flow-1 added."
    page = dashboard.get("/meter-models").text
    assert models(page) == ["SDM120", "SDM630", "flow-1"]
    rows = channel_rows(page, "flow-1")
    assert rows["V"] == [
        "V", "Volume", "16 (0x0010)", "holding", "uint32", "little / big", "0.001", "m³",
        "register", "any",
    ]  # fmt: skip
    assert rows["T"][1:] == [
        "Temperature", "2 (0x0002)", "input", "int16", "big / big", "1.0", "°C", "gauge",
        "-40.0 … 120.0",
    ]  # fmt: skip
    assert 'action="/meter-models/flow-1/delete"' in page
    assert 'data-confirm="Delete meter model flow-1?"' in page
    api = dashboard.get(
        "/api/v1/meter-models/flow-1/", headers=api_headers(dashboard)
    ).json()  # the API reads the same model
    assert api["definition"]["channels"]["V"]["address"] == 16


def test_uploaded_toml_and_json_files_are_added(dashboard: Dashboard) -> None:
    assert upload(dashboard, "flow.toml", FLOW.encode()).status_code == 303
    doc = {
        "name": "meter-2",
        "device_type": "electricity",
        "channels": {
            "A": {"address": 6, "type": "float32"},
            "kW": {"address": 72, "type": "uint32"},
        },
    }
    assert upload(dashboard, "meter-2.json", json.dumps(doc)).status_code == 303
    assert paste(dashboard, json.dumps({**doc, "name": "meter-3"})).status_code == 303
    assert models(dashboard.get("/meter-models").text)[2:] == ["flow-1", "meter-2", "meter-3"]


BAD_MODELS: list[tuple[str, list[str]]] = [
    (FLOW.replace("0x0010", "70000"), ["channels.V.address"]),
    (FLOW.replace('"uint32"', '"uint24"'), ["channels.V.type"]),
    (FLOW.replace("[channels.V]", "[channels.Q]"), ["channels.V"]),
    (FLOW.replace("scale = 0.001", "scale = 0"), ["channels.V.scale"]),
    (FLOW.replace('unit = "°C"', "units = 1"), ["channels.T.units"]),
    ('colour = "red"\n' + FLOW.replace('"water"', '"gas"'), ["colour", "device_type"]),
    (FLOW.replace("min = -40", "min = 200"), ["channels.T.min"]),
    ("name = ", ["file"]),
    ("[1, 2]", ["file"]),
    (FLOW.replace('"flow-1"', '"SDM120"'), ["name"]),
]


def test_bad_models_are_refused_naming_each_field(dashboard: Dashboard) -> None:
    for text, fields in BAD_MODELS:
        answer = paste(dashboard, text)
        assert answer.status_code == 400, text
        shown = re.search(
            r'<div class="alert" role="alert" id="model-errors">(.*?)</div>', answer.text, re.S
        )
        assert shown, text
        assert re.findall(r"<li><code>([\w.]+)</code>", shown[1]) == fields, text
        assert "The model in the pasted text was not added" in text_of(shown[1])
        kept = re.search(r'<textarea name="text"[^>]*>(.*?)</textarea>', answer.text, re.S)
        assert kept, text
        assert html.unescape(kept[1]) == text  # kept to correct
        assert "<details open>" in answer.text
    renamed = FLOW.replace('"flow-1"', '"flow-2"').replace("0x0010", "-1")
    broken = upload(dashboard, "flow-2.toml", renamed)
    assert "The model in flow-2.toml was not added" in text_of(broken.text)
    assert "channels.V.address: a whole number from 0 to 65535" in text_of(broken.text)
    assert "flow-2.toml is not valid TOML" in text_of(upload(dashboard, "flow-2.toml", "x = ").text)
    assert "not UTF-8 text" in text_of(upload(dashboard, "flow-2.toml", b"\xff\xfe").text)
    nothing = paste(dashboard, "  ")
    assert nothing.status_code == 400
    assert "file: choose a model file or paste one" in text_of(nothing.text)
    too_big = upload(dashboard, "big.toml", FLOW + "#" * 300_000)
    assert too_big.status_code == 413
    assert models(dashboard.get("/meter-models").text) == ["SDM120", "SDM630"]


def test_an_added_model_no_meter_uses_can_be_deleted(dashboard: Dashboard) -> None:
    paste(dashboard, FLOW)
    meter = {"device_id": "w-1", "type": "water", "port": "502", "protocol": "modbus"}
    assert (
        dashboard.form("/meters", {**meter, "unit_id": "1", "model": "flow-1"}).status_code == 303
    )
    page = dashboard.get("/meter-models").text
    assert "water · added · used by 1 meter" in text_of(page)
    assert "/meter-models/flow-1/delete" not in page  # in use: no button
    in_use = dashboard.form("/meter-models/flow-1/delete")
    assert in_use.status_code == 400
    assert "meters use flow-1: w-1" in text_of(in_use.text)
    built_in = dashboard.form("/meter-models/SDM120/delete")
    assert built_in.status_code == 400
    assert "SDM120 is built in and cannot be deleted" in text_of(built_in.text)
    assert dashboard.form("/meter-models/nope/delete").status_code == 404
    dashboard.form("/meters/w-1/delete")
    answer = dashboard.form("/meter-models/flow-1/delete")
    assert shown_notice(dashboard, answer) == "Meter model flow-1 deleted."
    assert models(dashboard.get("/meter-models").text) == ["SDM120", "SDM630"]


def test_members_neither_see_nor_change_models(dashboard: Dashboard, engine: Engine) -> None:
    with engine.begin() as conn:
        create_user(conn, "member", "correct horse")
    member = Dashboard(dashboard.app, follow_redirects=False)
    log_in(member, "member", "correct horse")
    assert 'href="/meter-models"' not in member.get("/meters").text
    assert member.get("/meter-models").status_code == 403
    assert paste(member, FLOW).status_code == 403
    assert member.form("/meter-models/SDM120/delete").status_code == 403
    assert page_notice(dashboard.get("/meter-models").text) is None
    assert models(dashboard.get("/meter-models").text) == ["SDM120", "SDM630"]
