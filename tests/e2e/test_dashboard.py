"""An operator's day in real Chromium, against ``meterhub serve`` polling simulated meters.

One server for the module: twelve simulated meters, a Berlin project whose house holds
them, a tariff. The tests log in through the form, watch the meters come online, compare
a meter's chart points with the stored readings, create and run a billing task through
the forms, download the bills' CSV and compare it with the API's, and log out. Every
page is saved as a screenshot under ``test-artifacts/screenshots/`` (at 1280 px and at
a phone's 390 px); with ``METERHUB_SCREENSHOTS_TO_DOCS=1`` the overview and the meter
page are also copied to ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, ViewportSize, expect

from meterhub.db import make_engine
from meterhub.registry.users import create_user
from tests.e2e.conftest import ARTIFACTS, screenshot
from tests.support import Server, simulator, wait_until

METERS = 12
USERNAME, PASSWORD = "operator", "correct horse battery"
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
HISTORY_STEPS = 3 * 144  # three days, every ten minutes
SOME_POINTS = re.compile(r"^[1-9][0-9]*$")


@dataclass(frozen=True)
class Site:
    url: str
    api: httpx.Client
    project_id: int
    meters: list[str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{tmp / 'meterhub.db'}"
    with simulator(METERS) as sim, Server(url, tmp) as server, server.client() as api:
        engine = make_engine(url)
        with engine.begin() as conn:
            create_user(conn, USERNAME, PASSWORD, is_admin=True)
        engine.dispose()
        meters = [str(port) for port in sim.config.ports]
        for device_id in meters:
            body = {"device_id": device_id, "port": int(device_id)}
            assert api.post("/api/v1/meters/", json=body).status_code == 201
        project = {"name": "Lindenhof", "timezone": "Europe/Berlin", "currency": "EUR"}
        project_id = api.post("/api/v1/projects/", json=project).json()["id"]
        house = {
            "address": ["Berlin", "Lindenstraße", "12", "3", "Flat 7"],
            "residents": [{"name": "Ada Weber", "cellphone": "+49 30 5551234"}],
        }
        house_id = api.post(f"/api/v1/projects/{project_id}/houses/", json=house).json()["id"]
        for device_id in meters:
            answer = api.post(f"/api/v1/houses/{house_id}/devices/", json={"device_id": device_id})
            assert answer.status_code == 201, answer.text
        tariff = {"price": "0.31", "fixed_charge": "2.50"}
        assert api.put(
            f"/api/v1/projects/{project_id}/tariffs/electricity/", json=tariff
        ).is_success
        source = {
            "id": "building-bms",
            "name": "Building BMS",
            "tags": [{"id": {"tagName": "supply_temp", "parentObjectId": "boiler"}, "unit": "°C"}],
        }
        assert api.post("/api/v1/data-sources/", json=source).status_code == 201
        reading = {"tagId": "boiler.supply_temp", "data": [{"x": "2026-11-20T12:00Z", "y": 61.25}]}
        assert api.post("/smt/data/set", json={"data": [reading]}).json()["error"] == {"id": 0}
        site = Site(server.url, api, project_id, meters)
        wait_until(lambda: all(_stored(site, m, "kW") for m in meters), timeout=30)
        _push_history(site)
        yield site


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    """A fresh browser context at desktop width, logged in through the form."""
    context = browser.new_context(base_url=site.url, viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    page.goto("/")
    expect(page).to_have_url(f"{site.url}/login?next=%2F")
    screenshot(page, "login")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{site.url}/")
    yield page
    context.close()


def shoot(page: Page, name: str) -> None:
    """Screenshots at desktop and phone width; at phone width nothing may overflow the page."""
    screenshot(page, name)
    page.set_viewport_size(PHONE)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{name} is {overflow} px wider than a phone screen"
    screenshot(page, f"{name}-phone")
    page.set_viewport_size(DESKTOP)


def for_readme(name: str) -> None:
    if os.environ.get("METERHUB_SCREENSHOTS_TO_DOCS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / f"{name}.png", DOCS / f"{name}.png")


def test_meters_come_online_on_the_overview_and_the_meters_page(page: Page, site: Site) -> None:
    online = page.locator("#count-online .value")

    def all_online() -> bool:
        page.reload()
        return online.inner_text().strip() == str(METERS)

    wait_until(all_online, timeout=30, interval=1)
    shoot(page, "overview")
    page.get_by_role("link", name="Meters", exact=True).click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(METERS)
    expect(page.locator("tbody .badge.online")).to_have_count(METERS)
    shoot(page, "meters")
    page.get_by_label("Status").select_option("offline")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=offline"))
    expect(page.get_by_text("No meter matches these filters.")).to_be_visible()


def test_meter_charts_show_the_stored_readings(page: Page, site: Site) -> None:
    meter = site.meters[0]
    page.goto(f"/meters/{meter}")
    for chart in ("A", "kW", "health"):
        expect(page.locator(f"#chart-{chart}")).to_have_attribute("data-points", SOME_POINTS)
    drawn = page.evaluate("window.meterCharts")
    for channel in ("A", "kW"):
        stored = _stored(site, meter, channel)
        points = list(zip(drawn[channel]["t"], drawn[channel]["v"], strict=True))
        assert len(points) > 144  # the last day's pushed readings, and the polled ones
        for seconds, value in points:
            assert stored.get(round(seconds * 1_000_000)) == pytest.approx(value), (
                channel,
                seconds,
            )
    shoot(page, "meter")
    for_readme("meter")


def _stored(site: Site, meter: str, channel: str) -> dict[int, float]:
    """The stored readings of one channel (µs → value), read through the platform API."""
    body = {"tagId": f"{meter}.{channel}", "from": "2000-01-01T00:00Z", "to": "2100-01-01T00:00Z"}
    answer = site.api.post("/smt/data/get", json=body).json()
    assert answer["error"] == {"id": 0}, answer
    return {point["x"]: point["y"] for point in answer["data"][0]["data"]}


def test_a_billing_task_made_in_the_form_runs_and_its_bills_download(
    page: Page, site: Site
) -> None:
    page.get_by_role("link", name="Billing tasks").click()
    shoot(page, "billing-tasks")
    page.get_by_role("link", name="New task").click()
    page.get_by_label("Name").fill("Monthly electricity")
    page.get_by_label("Project").select_option(str(site.project_id))
    page.get_by_label("Meter type").select_option("electricity")
    for field, value in (("Month", "*"), ("Day", "1"), ("Hour", "0"), ("Minute", "0")):
        page.get_by_label(field, exact=True).fill(value)
    page.get_by_role("button", name="Preview").click()
    fires = page.locator("ol.fires li")
    expect(fires).to_have_count(5)
    expect(fires.first).to_contain_text("00:00")
    shoot(page, "task-form")
    page.get_by_role("button", name="Save").click()
    tasks = site.api.get(f"/api/v1/scheduler/tasks/?project_id={site.project_id}").json()
    [task] = [t for t in tasks["data"]["results"] if t["name"] == "Monthly electricity"]
    assert task["crontab"] == {"month": "*", "day": "1", "hour": "0", "minute": "0"}
    expect(page).to_have_url(re.compile(f"/billing/tasks/{task['natrual_key']}"))

    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator(".notice")).to_contain_text(f"{METERS}")
    runs = page.locator("section[aria-labelledby=runs] tbody tr")
    expect(runs).to_have_count(1)
    expect(runs.first.locator("td.num").first).to_have_text(str(METERS))
    shoot(page, "task")

    page.goto(f"/projects/{site.project_id}")
    shoot(page, "project")
    today = datetime.now(ZoneInfo("Europe/Berlin")).date()
    days = f"start_date={today - timedelta(days=1)}&end_date={today + timedelta(days=1)}"
    page.goto(f"/projects/{site.project_id}/bills?device_type=electricity&{days}")
    expect(page.locator("table#bills tbody tr")).to_have_count(METERS)
    shoot(page, "bills")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    downloaded = Path(download.value.path()).read_text(encoding="utf-8-sig")
    query = f"project_id={site.project_id}&device_type=0&{days}"  # 0: electricity here
    exported = site.api.get(f"/api/v1/scheduler/history/export.csv?{query}")
    assert downloaded.splitlines() == exported.text.lstrip("\ufeff").splitlines()
    assert len(downloaded.splitlines()) == METERS + 1


def test_projects_and_data_sources_pages(page: Page, site: Site) -> None:
    """Also the overview once the billing test has run: the README shows this one."""
    shoot(page, "overview-later")
    for_readme("overview-later")
    page.get_by_role("link", name="Projects").click()
    expect(page.get_by_role("link", name="Lindenhof")).to_be_visible()
    shoot(page, "projects")
    page.get_by_role("link", name="Data sources").click()
    shoot(page, "sources")
    page.get_by_role("link", name="building-bms").click()
    row = page.locator("tbody tr", has_text="boiler.supply_temp")
    expect(row).to_contain_text("61.250")
    expect(row).to_contain_text("2026-11-20 12:00:00")
    shoot(page, "source")
    page.get_by_role("button", name="Deactivate tag boiler.supply_temp").click()
    expect(row.locator(".badge")).to_have_text("inactive")
    tag = site.api.get("/api/v1/tags/boiler.supply_temp/").json()
    assert tag["active"] is False


def test_pages_and_the_api_docs_run_under_their_content_security_policy(
    page: Page, site: Site
) -> None:
    """No page breaks its policy (the browser reports each refusal), and the scripts still
    work: charts are drawn, the docs list the operations, a delete asks first."""
    refusals: list[str] = []
    page.on("console", lambda m: refusals.append(m.text) if "Security Policy" in m.text else None)
    meter = site.meters[0]
    alerts = f"/projects/{site.project_id}/alerts"
    for path in ("/", "/meters", "/projects", alerts, "/billing/tasks/new", "/sources", "/nowhere"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
    page.goto(f"/meters/{meter}")
    expect(page.locator("#chart-kW")).to_have_attribute("data-points", SOME_POINTS)
    page.goto("/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() > 20
    operation = page.locator("#operations-meters-listMeters")  # tried out: a 401 comes back
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    expect(
        operation.locator(".live-responses-table td.response-col_status:not(.col_header)")
    ).to_contain_text("401")
    page.goto("/meters")
    asked: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.locator(f"form[action^='/meters/{meter}/delete'] button").click()
    expect(page.locator("table tbody tr")).to_have_count(METERS)
    assert asked == [f"Delete meter {meter}? Its readings are kept."]
    assert refusals == []


def test_the_meter_page_says_when_its_session_has_ended(page: Page, site: Site) -> None:
    page.goto(f"/meters/{site.meters[0]}")
    expect(page.locator("#chart-A")).to_have_attribute("data-points", SOME_POINTS)
    token = page.context.cookies()[0]["value"]
    logout = httpx.post(
        f"{site.url}/api/v1/auth/logout/", headers={"Authorization": f"token {token}"}
    )
    assert logout.status_code == 204
    expect(page.locator("#chart-status")).to_contain_text(
        "the session has ended: reload the page to log in again", timeout=15_000
    )


def test_logging_out_ends_the_session(page: Page, site: Site) -> None:
    token = page.context.cookies()[0]["value"]
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{site.url}/login")
    page.goto("/meters")
    expect(page).to_have_url(f"{site.url}/login?next=%2Fmeters")
    refused = httpx.get(f"{site.url}/api/v1/meters/", headers={"Authorization": f"token {token}"})
    assert refused.status_code == 401


def _push_history(site: Site) -> None:
    """Three days of readings every ten minutes before the first poll, pushed through
    ``/smt/data/set`` as a connector would: the charts have a history to show and a run
    "now" has a period to bill. The current follows a daily curve; the register counts
    the energy it implies at 230 V."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    steps = range(HISTORY_STEPS, 0, -1)
    times = [now - timedelta(minutes=10 * n) for n in steps]
    current = [18 - 10 * math.cos(2 * math.pi * (t.hour * 60 + t.minute) / 1440) for t in times]
    energy = [a * 230 / 1000 / 6 for a in current]  # kWh in each ten minutes
    records = []
    for meter in site.meters:
        register = min(_stored(site, meter, "kW").items())[1] - sum(energy) - 0.5
        registers = [register + sum(energy[: i + 1]) for i in range(len(energy))]
        for channel, values in (("A", current), ("kW", registers)):
            points = [
                {"x": t.isoformat(), "y": round(y, 3)} for t, y in zip(times, values, strict=True)
            ]
            records.append({"tagId": f"{meter}.{channel}", "data": points})
    answer = site.api.post("/smt/data/set", json={"data": records}).json()
    assert answer["error"] == {"id": 0}, answer
