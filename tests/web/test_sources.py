"""The data source pages: sources with tag counts, a source's tags with their last values,
paging and search, (de)activation, and that they are for administrators only."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from meterhub.registry.projects import create_project
from meterhub.registry.sources import create_source, get_source
from meterhub.registry.tags import TagSpec, ValueType, get_tag, resolve
from meterhub.registry.users import create_user
from meterhub.storage import Point, write_points
from meterhub.times import now_us
from tests.web.conftest import Dashboard, log_in, page_notice, shown_notice
from tests.web.test_overview import table_rows, when

T0 = now_us() - 3_600_000_000


@pytest.fixture
def plant(engine: Engine) -> None:
    """``plant-1`` (active, four tags with points or none) and ``plant-2`` (inactive, no tags)."""
    with engine.begin() as conn:
        create_source(
            conn,
            "plant-1",
            "Plant 1",
            config='{"url": "opc.tcp://plant-1", "poll": 5}',
            tag_specs=[
                TagSpec("plant-1.flow", unit="m3/h"),
                TagSpec({"tagName": "valve", "parentObjectId": "plant-1"}, ValueType.BOOLEAN),
                TagSpec("plant-1.level", scale=0.5, unit="m"),
                TagSpec("plant-1.spare", ValueType.INTEGER),
            ],
        )
        create_source(conn, "plant-2", "Plant 2", active=False)
        flow, valve, level, _ = resolve(
            conn, ["plant-1.flow", "plant-1.valve", "plant-1.level", "plant-1.spare"]
        )
        write_points(
            conn,
            [
                Point(flow.pk, T0, 10.0),
                Point(flow.pk, T0 + 60_000_000, 12.3456),
                Point(valve.pk, T0 + 5_000_000, 1.0),
                Point(level.pk, T0 + 7_000_000, 4.25, quality=1),
            ],
        )


def test_sources_are_listed_with_their_tag_counts(dashboard: Dashboard, plant: None) -> None:
    page = dashboard.get("/sources")
    assert page.status_code == 200
    rows = [row[:5] for row in _rows(page.text)]
    assert rows == [
        ["plant-1", "Plant 1", "active", "4", '{"url": "opc.tcp://plant-1", "poll": 5}'],
        ["plant-2", "Plant 2", "inactive", "0", "{}"],
    ]
    assert 'href="/sources/plant-1"' in page.text
    assert 'action="/sources/plant-2/activate"' in page.text


def test_a_source_shows_each_tag_with_its_last_value(dashboard: Dashboard, plant: None) -> None:
    page = dashboard.get("/sources/plant-1")
    assert page.status_code == 200
    assert "opc.tcp://plant-1" in page.text
    by_key = {row[0]: row[1:8] for row in table_rows(page.text, "tags")}
    flow_at, valve_at, level_at = (when(T0 + s * 1_000_000) for s in (60, 5, 7))
    assert by_key == {
        "plant-1.flow": ["12.346", "m3/h", flow_at, "0 good", "active", "float", "1.000"],
        "plant-1.valve": ["1", "", valve_at, "0 good", "active", "boolean", "1.000"],
        "plant-1.level": ["4.250", "m", level_at, "1", "active", "float", "0.500"],
        "plant-1.spare": ["—", "", "no value yet", "—", "active", "integer", "1.000"],
    }


def test_tags_are_paged_and_searched(dashboard: Dashboard, engine: Engine) -> None:
    specs = [TagSpec(f"big.t{i:02d}") for i in range(30)] + [TagSpec("big.flow")]
    with engine.begin() as conn:
        create_source(conn, "big", "Big", tag_specs=specs)
    first = dashboard.get("/sources/big")
    assert [row[0] for row in table_rows(first.text, "tags")] == [
        f"big.t{i:02d}" for i in range(25)
    ]
    assert "1\u201325 of 31" in first.text
    assert 'href="/sources/big?page=2&amp;size=25" rel="next"' in first.text
    second = dashboard.get("/sources/big?page=2")
    assert [row[0] for row in table_rows(second.text, "tags")] == [
        *[f"big.t{i:02d}" for i in range(25, 30)],
        "big.flow",
    ]
    past_the_end = dashboard.get("/sources/big?page=9&size=25")
    assert table_rows(past_the_end.text, "tags") == table_rows(second.text, "tags")
    assert "Page 2 of 2" in past_the_end.text
    found = dashboard.get("/sources/big?search=flo")
    assert [row[0] for row in table_rows(found.text, "tags")] == ["big.flow"]
    assert "1\u20131 of 1" in found.text


def test_an_administrator_deactivates_and_activates(
    dashboard: Dashboard, engine: Engine, plant: None
) -> None:
    answer = dashboard.form("/sources/plant-1/deactivate", {"back": "/sources?page=1&size=25"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sources?page=1&size=25"
    page = dashboard.get(answer.headers["location"])
    assert page_notice(page.text) == "Data source plant-1 deactivated"
    answer = dashboard.form(
        "/sources/tags/plant-1.valve/deactivate", {"back": "https://evil.example/"}
    )
    assert answer.headers["location"] == "/sources/plant-1"
    assert shown_notice(dashboard, answer) == "Tag plant-1.valve deactivated"
    with engine.connect() as conn:
        assert not get_source(conn, "plant-1").active
        assert not get_tag(conn, "plant-1.valve").active
        assert get_tag(conn, "plant-1.flow").active
    answer = dashboard.form("/sources/plant-2/activate")
    assert answer.headers["location"] == "/sources/plant-2"
    assert shown_notice(dashboard, answer) == "Data source plant-2 activated"
    dashboard.form("/sources/tags/plant-1.valve/activate")
    with engine.connect() as conn:
        assert get_source(conn, "plant-2").active
        assert get_tag(conn, "plant-1.valve").active
    assert [row[2] for row in _rows(dashboard.get("/sources").text)] == ["inactive", "active"]


def test_unknown_objects_and_bad_input_change_nothing(
    dashboard: Dashboard, engine: Engine, plant: None
) -> None:
    assert dashboard.get("/sources/nope").status_code == 404
    assert dashboard.form("/sources/nope/deactivate").status_code == 404
    assert dashboard.form("/sources/tags/plant-1.nope/deactivate").status_code == 404
    wrong = dashboard.form("/sources/plant-1/explode")
    assert wrong.status_code == 400
    assert "invalid input: action" in wrong.text
    paged = dashboard.get("/sources?page=zero")
    assert paged.status_code == 400
    assert "invalid input: page" in paged.text
    with engine.connect() as conn:
        assert get_source(conn, "plant-1").active


def test_other_users_are_refused(dashboard: Dashboard, engine: Engine, plant: None) -> None:
    with engine.begin() as conn:
        project = create_project(conn, "Alpha", "UTC", "EUR")
        create_user(conn, "ann", "alpha password", project_ids=[project.id])
    ann = Dashboard(dashboard.app, follow_redirects=False)
    log_in(ann, "ann", "alpha password")
    for url in ("/sources", "/sources/plant-1", "/sources/nope"):
        assert ann.get(url).status_code == 403
    for url in ("/sources/plant-1/deactivate", "/sources/tags/plant-1.flow/deactivate"):
        answer = ann.form(url)
        assert answer.status_code == 403
        assert "this needs an administrator" in answer.text
    with engine.connect() as conn:
        assert get_source(conn, "plant-1").active
        assert get_tag(conn, "plant-1.flow").active


def _rows(html: str) -> list[list[str]]:
    return table_rows(html, "sources")
