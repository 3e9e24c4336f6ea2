"""The meters list: values and health as stored, filters, pages, and adding, switching and
deleting meters through its forms, on both databases."""

from __future__ import annotations

import html
import re
from datetime import UTC
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine

from meterhub.collector.health import Health, Status
from meterhub.registry.devices import create_device
from meterhub.times import from_us, now_us
from tests.web.conftest import Dashboard, page_notice, shown_notice
from tests.web.meters_support import ELECTRICITY, WATER, Estate, add, api_headers, make_estate


def listed(page: str) -> list[str]:
    """Device ids of the table rows, in order."""
    return re.findall(r'<tr id="meter-([^"]+)">', page)


def cells(page: str, device_id: str) -> list[str]:
    """The visible text of each cell of a meter's row, whitespace collapsed (thin spaces in
    numbers are kept)."""
    row = re.search(rf'<tr id="meter-{re.escape(device_id)}">(.*?)</tr>', page, re.S)
    assert row, f"meter {device_id} is not listed"
    found = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    texts = (html.unescape(re.sub(r"<[^>]+>", " ", cell)) for cell in found)
    return [re.sub(r"[ \t\r\n]+", " ", text).strip() for text in texts]


def when(us: int) -> str:
    return from_us(us, UTC).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def estate(dashboard: Dashboard, engine: Engine) -> Estate:
    return make_estate(dashboard, engine)


# --- what the list shows ------------------------------------------------------------------


def test_rows_show_the_stored_readings_and_health(dashboard: Dashboard, engine: Engine) -> None:
    at = (now_us() // 1_000_000 - 2 * 3600) * 1_000_000  # two hours ago, whole seconds
    online = Health(Status.ONLINE, last_attempt=at, last_seen=at, polls=10, last_duration_ms=4.0)
    offline = Health(
        Status.OFFLINE,
        last_attempt=at,
        last_seen=at - 60_000_000,
        last_error="timed out after 3 s",
        last_error_at=at,
        consecutive_failures=3,
        polls=9,
        failures=3,
    )
    add(engine, "e-1", port=9001, readings={"A": 12.5, "kW": 1234.5678}, at=at, health=online)
    add(engine, "w-1", WATER, port=9002, readings={"V": 3.25}, at=at, health=offline)
    add(engine, "n-1", enabled=False)
    page = dashboard.get("/meters")
    assert page.status_code == 200
    assert listed(page.text) == ["e-1", "w-1", "n-1"]
    assert cells(page.text, "e-1") == [
        "e-1",
        "electricity",
        "—",
        "online",
        "12.500 A 1\u2009234.568 kWh",
        f"{when(at)} 2 h ago",
        "—",
        "0",
        "enabled",
        "Disable Delete",
    ]
    assert cells(page.text, "w-1")[1:9] == [
        "water",
        "—",
        "offline",
        "3.250 m³",
        f"{when(at - 60_000_000)} 2 h ago",
        "timed out after 3 s 2 h ago",
        "3",
        "enabled",
    ]
    assert cells(page.text, "n-1")[3:10] == [
        "never seen",
        "— A — kWh",
        "— never",
        "—",
        "0",
        "disabled",
        "Enable Delete",
    ]
    assert '<a href="/meters/e-1">e-1</a>' in page.text
    assert "Times in UTC" in page.text


def test_rows_name_the_project_and_house(
    dashboard: Dashboard, engine: Engine, estate: Estate
) -> None:
    add(engine, "in-a", house=estate.house_a)
    assert cells(dashboard.get("/meters").text, "in-a")[2] == "Alpha Main St, 1, Springfield"


# --- filters and pages --------------------------------------------------------------------


@pytest.fixture
def fleet(engine: Engine, estate: Estate) -> Estate:
    seen = Health(Status.ONLINE, last_attempt=1, last_seen=1, polls=1)
    lost = Health(Status.OFFLINE, last_attempt=2, last_error="refused", consecutive_failures=1)
    add(engine, "e-10", health=seen, house=estate.house_a)
    add(engine, "e-11", health=lost, enabled=False, house=estate.house_b)
    add(engine, "w-10", WATER, health=seen, house=estate.house_a)
    add(engine, "w-20", WATER)
    return estate


FILTERED = {
    "": ["e-10", "e-11", "w-10", "w-20"],
    "status=online": ["e-10", "w-10"],
    "status=offline": ["e-11"],
    "status=never_seen": ["w-20"],
    "type=water": ["w-10", "w-20"],
    "enabled=false": ["e-11"],
    "enabled=true&type=electricity": ["e-10"],
    "search=10": ["e-10", "w-10"],
    "search=-1": ["e-10", "e-11", "w-10"],
    "status=&type=&project=&enabled=&search=": ["e-10", "e-11", "w-10", "w-20"],
}


def test_filters(dashboard: Dashboard, fleet: Estate) -> None:
    shown = {query: listed(dashboard.get(f"/meters?{query}").text) for query in FILTERED}
    assert shown == FILTERED


def test_project_filter(dashboard: Dashboard, fleet: Estate) -> None:
    assert listed(dashboard.get(f"/meters?project={fleet.project_a}").text) == ["e-10", "w-10"]
    page = dashboard.get(f"/meters?project={fleet.project_b}&status=offline").text
    assert listed(page) == ["e-11"]
    assert f'<option value="{fleet.project_b}" selected>Beta</option>' in page


def test_pages_keep_the_filters(dashboard: Dashboard, engine: Engine) -> None:
    with engine.begin() as conn:
        for n in range(30):
            create_device(conn, f"m-{n:02d}", WATER if n % 10 == 9 else ELECTRICITY)
    electric = [f"m-{n:02d}" for n in range(30) if n % 10 != 9]
    first = dashboard.get("/meters?type=electricity&size=25").text
    assert listed(first) == electric[:25]
    assert "1\u201325 of 27" in first
    link = html.unescape(re.findall(r'href="([^"]+)" rel="next"', first)[0])
    assert parse_qs(urlsplit(link).query) == {
        "type": ["electricity"],
        "size": ["25"],
        "page": ["2"],
    }
    second = dashboard.get(link).text
    assert listed(second) == electric[25:] == ["m-27", "m-28"]
    assert listed(dashboard.get("/meters?type=electricity&size=25&page=9").text) == listed(second)
    assert len(listed(dashboard.get("/meters?size=50").text)) == 30


BAD_FILTERS = {
    "status=asleep": "status",
    "type=gas": "type",
    "enabled=maybe": "enabled",
    "project=abc": "project",
    "project=999": "project",
    "search=" + "x" * 65: "search",
    "page=0": "page",
    "page=two": "page",
    "size=30": "size",
}


def test_bad_filters_are_refused_naming_the_field(dashboard: Dashboard) -> None:
    for query, field in BAD_FILTERS.items():
        answer = dashboard.get(f"/meters?{query}")
        assert answer.status_code == 400, query
        assert re.findall(r"<code>(\w+)</code>", answer.text) == [field], query


def test_a_member_sees_only_their_projects_meters(dashboard: Dashboard, fleet: Estate) -> None:
    page = fleet.member.get("/meters")
    assert listed(page.text) == ["e-10", "w-10"]
    assert "Beta" not in page.text
    assert listed(fleet.member.get(f"/meters?project={fleet.project_a}").text) == ["e-10", "w-10"]
    hidden = fleet.member.get(f"/meters?project={fleet.project_b}")
    assert hidden.status_code == 400
    assert "<code>project</code>" in hidden.text


# --- adding, switching and deleting -------------------------------------------------------


def test_adding_a_meter_through_the_form(dashboard: Dashboard) -> None:
    answer = dashboard.form(
        "/meters?type=water&page=1",
        {"device_id": "w-7", "type": "water", "water_kind": "purified", "host": "", "port": "9500"},
    )
    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert location.path == "/meters"
    assert parse_qs(location.query) == {"type": ["water"], "page": ["1"]}
    created = dashboard.get("/api/v1/meters/w-7/", headers=api_headers(dashboard)).json()
    assert (created["type"], created["host"], created["port"]) == ("water", "127.0.0.1", 9500)
    assert created["enabled"] is True
    page = dashboard.get(answer.headers["location"]).text
    assert page_notice(page) == "Meter w-7 added."
    assert cells(page, "w-7")[:2] == ["w-7", "water (purified)"]


def test_a_meter_without_a_port_is_added_unpolled(dashboard: Dashboard) -> None:
    answer = dashboard.form("/meters", {"device_id": "e-1", "type": "electricity"})
    assert answer.headers["location"] == "/meters"
    assert shown_notice(dashboard, answer) == "Meter e-1 added."
    created = dashboard.get("/api/v1/meters/e-1/", headers=api_headers(dashboard)).json()
    assert (created["host"], created["port"]) == (None, None)


BAD_METERS: list[tuple[dict[str, str], str]] = [
    ({"device_id": "bad id!"}, "device_id"),
    ({"device_id": ""}, "device_id"),
    ({"device_id": "taken"}, "device_id"),
    ({"port": "80"}, "port"),
    ({"port": "ninety"}, "port"),
    ({"port": "9001"}, "port"),
    ({"host": "10.0.0.5"}, "port"),
    ({"type": "gas"}, "type"),
    ({"water_kind": "tap"}, "water_kind"),
    ({"type": "water", "water_kind": "sparkling"}, "water_kind"),
    ({"protocol": "ftp"}, "protocol"),
    ({"unit_id": "one"}, "unit_id"),
    ({"model": "SDM120"}, "model"),
    ({"protocol": "modbus", "unit_id": "1"}, "model"),
    ({"protocol": "modbus", "unit_id": "1", "model": "SDM9"}, "model"),
    ({"protocol": "modbus", "unit_id": "0", "model": "SDM120"}, "unit_id"),
    ({"protocol": "modbus", "unit_id": "248", "model": "SDM120"}, "unit_id"),
    ({"type": "water", "protocol": "modbus", "unit_id": "1", "model": "SDM120"}, "model"),
]


def test_bad_meters_are_refused_naming_the_field(dashboard: Dashboard, engine: Engine) -> None:
    add(engine, "taken", port=9001)
    for fields, field in BAD_METERS:
        form = {"device_id": "new-1", "type": "electricity", "host": "", "port": "", **fields}
        answer = dashboard.form("/meters?status=online", form)
        assert answer.status_code == 400, fields
        assert re.findall(r'id="(\w+)-error"', answer.text) == [field], fields
        assert f'aria-invalid="true" aria-describedby="{field}-error"' in answer.text
        assert 'action="/meters?status=online"' in answer.text
        assert f'value="{html.escape(form["device_id"])}"' in answer.text  # the form is kept
    assert listed(dashboard.get("/meters").text) == ["taken"]


def test_disable_enable_and_delete_return_to_the_list(dashboard: Dashboard, engine: Engine) -> None:
    add(engine, "e-1", port=9001, readings={"A": 1.0, "kW": 2.0})
    meter_url = "/api/v1/meters/e-1/"
    answer = dashboard.form("/meters/e-1/disable?search=e-&size=50")
    assert answer.status_code == 303
    assert parse_qs(urlsplit(answer.headers["location"]).query) == {
        "search": ["e-"],
        "size": ["50"],
    }
    assert shown_notice(dashboard, answer) == "Meter e-1 disabled: it is no longer polled."
    assert dashboard.get(meter_url, headers=api_headers(dashboard)).json()["enabled"] is False
    assert cells(dashboard.get("/meters").text, "e-1")[-2:] == ["disabled", "Enable Delete"]
    dashboard.form("/meters/e-1/enable")
    assert dashboard.get(meter_url, headers=api_headers(dashboard)).json()["enabled"] is True
    page = dashboard.get("/meters").text
    assert 'data-confirm="Delete meter e-1? Its readings are kept."' in page
    answer = dashboard.form("/meters/e-1/delete?notice=old")
    assert answer.headers["location"] == "/meters"
    assert shown_notice(dashboard, answer) == "Meter e-1 deleted; its readings are kept."
    assert dashboard.get(meter_url, headers=api_headers(dashboard)).status_code == 404
    assert dashboard.form("/meters/e-1/delete").status_code == 404


def test_only_administrators_change_meters(dashboard: Dashboard, fleet: Estate) -> None:
    page = fleet.member.get("/meters").text
    assert "Add a meter" not in page
    assert "/disable" not in page
    assert "/delete" not in page
    for url in ("/meters/e-10/disable", "/meters/e-10/delete", "/meters/e-11/enable"):
        assert fleet.member.form(url).status_code == 403
    added = fleet.member.form("/meters", {"device_id": "x-1", "type": "electricity"})
    assert added.status_code == 403
    assert listed(dashboard.get("/meters").text) == ["e-10", "e-11", "w-10", "w-20"]
    assert listed(dashboard.get("/meters?enabled=true").text) == ["e-10", "w-10", "w-20"]


def test_forms_without_the_csrf_value_change_nothing(dashboard: Dashboard, engine: Engine) -> None:
    add(engine, "e-1")
    assert dashboard.post("/meters/e-1/delete").status_code == 403
    assert dashboard.post("/meters", data={"device_id": "e-2"}).status_code == 403
    assert listed(dashboard.get("/meters").text) == ["e-1"]
