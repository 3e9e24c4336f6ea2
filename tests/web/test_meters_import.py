"""The meters page's CSV download and upload, on both databases: an upload imports every
row or, with any bad one, none and lists each; the download imports back unchanged."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx2
import pytest
from sqlalchemy import Engine

from meterhub.api.app import create_app
from meterhub.db import make_engine
from meterhub.registry.users import create_user
from meterhub.settings import Settings
from tests.web.conftest import Dashboard, log_in
from tests.web.meters_support import add, make_estate

FLEET = (
    "device_id,type,water_kind,host,port,enabled,house_id\r\n"
    "e-1,electricity,,,9001,true,\r\n"
    "w-1,water,tap,127.0.0.1,9002,false,\r\n"
)


def upload(client: Dashboard, text: str | bytes, name: str = "fleet.csv") -> httpx2.Response:
    files = {"file": (name, text, "text/csv")}
    return client.post("/meters/import", data=client.csrf(), files=files)


def text_of(page: str) -> str:
    """The page's visible text, whitespace collapsed (inline code is part of its sentence)."""
    inline = re.sub(r"</?code>", "", page)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", inline)))


def followed(client: Dashboard, answer: httpx2.Response) -> str:
    """The text of the page ``answer`` redirects to."""
    assert answer.status_code == 303, answer.text
    return text_of(client.get(answer.headers["location"]).text)


def listed(page: str) -> list[str]:
    return re.findall(r'<tr id="meter-([^"]+)">', page)


def test_an_upload_imports_every_row(dashboard: Dashboard) -> None:
    page = dashboard.get("/meters").text
    assert 'enctype="multipart/form-data"' in page
    assert 'href="/meters.csv"' in page
    answer = upload(dashboard, FLEET)
    assert "Imported fleet.csv: 2 added, 0 changed, 0 unchanged." in followed(dashboard, answer)
    assert listed(dashboard.get("/meters").text) == ["e-1", "w-1"]
    again = upload(dashboard, FLEET)
    assert "Imported fleet.csv: 0 added, 0 changed, 2 unchanged." in followed(dashboard, again)


def test_a_bad_upload_lists_every_bad_line_and_stores_nothing(dashboard: Dashboard) -> None:
    bad = FLEET + "w-1,water,hot,,9003,,\r\ne-2,,,,9001,,\r\n"
    answer = upload(dashboard, bad, "broken.csv")
    assert answer.status_code == 400
    shown = text_of(answer.text)
    assert "Nothing was imported from broken.csv" in shown
    for problem in (
        "line 2: port: the same port 9001 on 127.0.0.1 as line 5",
        "line 3: device_id: the same device id w-1 as line 4",
        "line 4: device_id: the same device id w-1 as line 3",
        "line 4: water_kind: must be one of tap, purified",
        "line 5: port: the same port 9001 on 127.0.0.1 as line 2",
    ):
        assert problem in shown
    assert "<details open>" in answer.text
    assert listed(dashboard.get("/meters").text) == []


def test_the_download_imports_back_unchanged_and_edited(
    dashboard: Dashboard, engine: Engine
) -> None:
    add(engine, "e-1", port=9001)
    add(engine, "e-2", enabled=False)
    download = dashboard.get("/meters.csv")
    assert download.status_code == 200
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    assert download.text.splitlines() == [
        "device_id,type,water_kind,host,port,enabled,house_id,protocol,unit_id,model",
        "e-1,electricity,,127.0.0.1,9001,true,,http,0,",
        "e-2,electricity,,,,false,,http,0,",
    ]
    same = upload(dashboard, download.text, "meters.csv")
    assert "0 added, 0 changed, 2 unchanged" in followed(dashboard, same)
    edited = download.text.replace(",,,false,", ",,9002,true,")
    answer = upload(dashboard, edited, "meters.csv")
    assert "0 added, 1 changed, 1 unchanged" in followed(dashboard, answer)
    assert (
        dashboard.get("/meters.csv").text.splitlines()[2]
        == "e-2,electricity,,127.0.0.1,9002,true,,http,0,"
    )


def test_an_upload_needs_a_file_the_form_value_and_an_administrator(
    dashboard: Dashboard, engine: Engine
) -> None:
    no_file = dashboard.post("/meters/import", data=dashboard.csrf())
    assert no_file.status_code == 400
    assert "choose a CSV file" in text_of(no_file.text)
    files = {"file": ("fleet.csv", FLEET, "text/csv")}
    assert dashboard.post("/meters/import", files=files).status_code == 403
    estate = make_estate(dashboard, engine)
    add(engine, "theirs", house=estate.house_a)
    add(engine, "hidden", house=estate.house_b)
    member = estate.member
    assert upload(member, FLEET).status_code == 403
    assert "Import meters from CSV" not in member.get("/meters").text
    lines = member.get("/meters.csv").text.splitlines()
    assert lines[1:] == [f"theirs,electricity,,,,true,{estate.house_a},http,0,"]
    assert listed(dashboard.get("/meters").text) == ["theirs", "hidden"]


@pytest.fixture
def small_dashboard(database_url: str) -> Iterator[Dashboard]:
    """The dashboard with bulk limits of 2 rows and 1 KiB."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        create_user(conn, "operator", "correct horse", is_admin=True)
    engine.dispose()
    settings = Settings(
        database_url=database_url,
        collector_enabled=False,
        scheduler_enabled=False,
        bulk_max_rows=2,
        bulk_max_bytes=1024,
    )
    with Dashboard(create_app(settings), follow_redirects=False) as client:
        log_in(client, "operator", "correct horse")
        yield client


def test_uploads_over_the_limits_answer_413(small_dashboard: Dashboard) -> None:
    three = FLEET + "e-3,,,,,,\r\n"
    answer = upload(small_dashboard, three)
    assert answer.status_code == 413
    assert "at most 2 per request" in text_of(answer.text)
    big = FLEET + "".join(f"x-{i:05d},,,,,,\r\n" for i in range(100))
    assert upload(small_dashboard, big).status_code == 413
    huge = FLEET + "".join(f"x-{i:05d},,,,,,\r\n" for i in range(10_000))
    assert upload(small_dashboard, huge).status_code == 413
    assert listed(small_dashboard.get("/meters").text) == []
    assert "2 added" in followed(small_dashboard, upload(small_dashboard, FLEET))
