"""A meter's page and its JSON endpoints: facts and values as stored, history series exact
or thinned, consumption per local day across a DST change, poll health buckets, who may
see what, and refused input."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime

import pytest
from sqlalchemy import Engine

from meterhub.collector.health import Health, Status
from meterhub.collector.poll_log import PollEntry, save_poll_log
from meterhub.registry.devices import channel_tags, get_device
from meterhub.storage import Point, write_points
from meterhub.storage.points import Quality
from tests.web.conftest import Dashboard
from tests.web.meters_support import WATER, Estate, add, make_estate

MINUTE = 60_000_000
HOUR = 60 * MINUTE


def us(text: str) -> int:
    """µs of an ISO time with its offset."""
    return int(datetime.fromisoformat(text).timestamp()) * 1_000_000


def write(
    engine: Engine,
    device_id: str,
    channel: str,
    points: list[tuple[int, float]],
    quality: Quality = Quality.GOOD,
) -> None:
    with engine.begin() as conn:
        tag = channel_tags(conn, get_device(conn, device_id).pk)[channel]
        write_points(conn, [Point(tag, ts, value, quality) for ts, value in points])


def text_of(page: str) -> str:
    return re.sub(r"[ \t\r\n]+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page))).strip()


@pytest.fixture
def estate(dashboard: Dashboard, engine: Engine) -> Estate:
    return make_estate(dashboard, engine)


# --- the page -----------------------------------------------------------------------------


def test_the_page_shows_facts_and_values_in_the_projects_zone(
    dashboard: Dashboard, engine: Engine, estate: Estate
) -> None:
    at = us("2026-11-18T11:06:40+00:00")
    health = Health(
        Status.OFFLINE,
        last_attempt=at,
        last_seen=at - MINUTE,
        last_error="timed out after 3 s",
        last_error_at=at,
        consecutive_failures=2,
        last_duration_ms=3000.25,
        polls=1234,
        failures=7,
    )
    readings = {"A": 12.5, "kW": 1234.5678}
    add(engine, "e-1", port=9001, house=estate.house_a, readings=readings, at=at, health=health)
    page = dashboard.get("/meters/e-1")
    assert page.status_code == 200
    shown = text_of(page.text)
    for fact in (
        "12.500 A Current (A)",
        "1\u2009234.568 kWh Energy (kW)",
        "Reading of 2026-11-18 12:06:40",  # Europe/Berlin, UTC+1 in November
        "Address 127.0.0.1:9001",
        "Project Alpha House Main St, 1, Springfield",
        "Last seen 2026-11-18 12:05:40",
        "Last error timed out after 3 s at 2026-11-18 12:06:40",
        "Failures in a row 2",
        "Polls / failures 1\u2009234 / 7",
        "Last poll took 3\u2009000.2 ms",
        "Times in Europe/Berlin (the zone of project Alpha)",
    ):
        assert fact in shown, fact
    for chart in ("chart-A", "chart-kW", "chart-daily", "chart-health"):
        assert f'id="{chart}"' in page.text
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert scripts == ["/static/page.js", "/static/vendor/uPlot.iife.min.js", "/static/meter.js"]
    assert dashboard.get("/static/meter.js").status_code == 200


def test_a_meter_outside_projects_uses_the_servers_zone(
    dashboard: Dashboard, engine: Engine
) -> None:
    add(engine, "w-1", WATER, readings={"V": 3.25}, at=us("2026-11-18T11:06:40+00:00"))
    shown = text_of(dashboard.get("/meters/w-1").text)
    assert "3.250 m³ Volume (V)" in shown
    assert "Reading of 2026-11-18 11:06:40" in shown
    assert "Times in UTC unless stated" in shown


def chart_config(page: str) -> dict[str, object]:
    found = re.search(r"<div id=\"meter-config\" hidden data-config='(.*?)'></div>", page)
    assert found
    config: dict[str, object] = json.loads(html.unescape(found.group(1)))
    return config


def test_ranges_preset_and_custom(dashboard: Dashboard, engine: Engine, estate: Estate) -> None:
    add(engine, "e-1", house=estate.house_a)
    config = chart_config(dashboard.get("/meters/e-1").text)
    assert config["seconds"] == 86_400
    assert config["zone"] == "Europe/Berlin"
    assert config["base"] == "/meters/e-1"
    assert config["channels"] == [{"name": "A", "unit": "A"}, {"name": "kW", "unit": "kWh"}]
    assert chart_config(dashboard.get("/meters/e-1?range=week").text)["seconds"] == 604_800
    page = dashboard.get("/meters/e-1?from=2026-07-01T00:00&to=2026-07-02T12:30").text
    config = chart_config(page)
    assert (config["seconds"], config["from"], config["to"]) == (
        None,
        us("2026-07-01T00:00+02:00"),
        us("2026-07-02T12:30+02:00"),
    )
    assert 'name="from" value="2026-07-01T00:00"' in page
    assert 'name="to" value="2026-07-02T12:30"' in page


def test_the_live_part_shows_the_newest_reading_and_failures(
    dashboard: Dashboard, engine: Engine
) -> None:
    pk = add(engine, "e-1", readings={"A": 1.0, "kW": 2.0}, at=us("2026-11-18T10:00:00+00:00"))
    write(engine, "e-1", "A", [(us("2026-11-18T10:01:00+00:00"), 4.25)])
    write(engine, "e-1", "kW", [(us("2026-11-18T10:01:00+00:00"), 2.5)])
    with engine.begin() as conn:
        failed = PollEntry(pk, us("2026-11-18T10:02:00+00:00"), 3001.5, False, "timed out")
        save_poll_log(conn, [failed])
    live = dashboard.get("/meters/e-1/live")
    assert live.status_code == 200
    assert "<html" not in live.text
    shown = text_of(live.text)
    assert "4.250 A" in shown
    assert "2.500 kWh" in shown
    assert "Reading of 2026-11-18 10:01:00" in shown
    assert "2026-11-18 10:02:00 3\u2009001.5 timed out" in shown


# --- history series -----------------------------------------------------------------------


def test_series_are_the_stored_points_of_the_period(dashboard: Dashboard, engine: Engine) -> None:
    start = us("2026-11-18T00:00:00+00:00")
    add(engine, "e-1")
    stored = [(start + n * MINUTE, 10.0 + (n % 7) * 0.125) for n in range(200)]
    write(engine, "e-1", "A", stored)
    answer = dashboard.get(
        f"/meters/e-1/series?channel=A&from={start + 10 * MINUTE}&to={start + 19 * MINUTE}"
    )
    assert answer.status_code == 200
    series = answer.json()
    assert (series["channel"], series["unit"], series["thinned"]) == ("A", "A", False)
    assert series["t"] == [ts / 1e6 for ts, _ in stored[10:20]]
    assert series["v"] == [value for _, value in stored[10:20]]
    between = dashboard.get(  # ISO bounds between readings: nothing made up at the bounds
        "/meters/e-1/series?channel=A&from=2026-11-18T00:10:30Z&to=2026-11-18T00:12:30Z"
    ).json()
    assert between["v"] == [value for _, value in stored[11:13]]


def test_long_series_are_thinned_to_at_most_1000_stored_points(
    dashboard: Dashboard, engine: Engine
) -> None:
    start = us("2026-11-01T00:00:00+00:00")
    add(engine, "e-1")
    stored = {start + n * MINUTE: float((n * 37) % 1001) for n in range(5000)}
    write(engine, "e-1", "kW", list(stored.items()))
    end = start + 4999 * MINUTE
    series = dashboard.get(f"/meters/e-1/series?channel=kW&from={start}&to={end}").json()
    assert series["thinned"] is True
    assert 250 <= len(series["t"]) <= 1000  # 250 buckets: first, last, lowest, highest
    kept = [round(t * 1e6) for t in series["t"]]
    assert kept == sorted(set(kept))
    assert (kept[0], kept[-1]) == (start, end)
    assert all(stored[ts] == value for ts, value in zip(kept, series["v"], strict=True))
    assert max(series["v"]) == 1000.0
    assert min(series["v"]) == 0.0


# --- consumption per day ------------------------------------------------------------------


def test_daily_consumption_across_the_end_of_summer_time(
    dashboard: Dashboard, engine: Engine, estate: Estate
) -> None:
    """Europe/Berlin leaves summer time on 2026-10-25: that day has 25 hours.

    The register rises 1.5 kWh an hour, read at half past each hour (UTC) from
    2026-10-22 20:30 to 2026-10-27 10:30, so each midnight is interpolated exactly.
    """
    add(engine, "e-1", house=estate.house_a)
    first = us("2026-10-22T20:30:00+00:00")
    readings = [(first + n * HOUR, 1000 + 1.5 * n) for n in range(111)]
    write(engine, "e-1", "kW", readings)
    daily = dashboard.get("/meters/e-1/daily?from=2026-10-22T00:00&to=2026-10-27T23:59").json()
    assert (daily["unit"], daily["zone"]) == ("kWh", "Europe/Berlin")
    # 10-22: its midnight is before the first reading. 10-27: in progress (to 10:30 UTC).
    assert daily["day"] == ["2026-10-23", "2026-10-24", "2026-10-25", "2026-10-26", "2026-10-27"]
    assert daily["consumption"] == pytest.approx([36.0, 36.0, 37.5, 36.0, 17.25])
    assert daily["complete"] == [True, True, True, True, False]
    midnights = ["10-23T00:00+02", "10-24T00:00+02", "10-25T00:00+02", "10-26T00:00+01"]
    assert daily["t"] == [us(f"2026-{m}:00") / 1e6 for m in [*midnights, "10-27T00:00+01"]]


def test_daily_consumption_of_a_water_meter_in_the_servers_zone(
    dashboard: Dashboard, engine: Engine
) -> None:
    add(engine, "w-1", WATER)
    write(engine, "w-1", "V", [(us("2026-03-01T00:00:00+00:00"), 10.0)])
    write(engine, "w-1", "V", [(us("2026-03-03T00:00:00+00:00"), 10.5)])
    daily = dashboard.get("/meters/w-1/daily?from=2026-02-27&to=2026-03-04").json()
    assert (daily["unit"], daily["zone"]) == ("m³", "UTC")
    assert daily["day"] == ["2026-03-01", "2026-03-02"]
    assert daily["consumption"] == pytest.approx([0.25, 0.25])


def test_daily_consumption_counts_on_across_a_register_reset(
    dashboard: Dashboard, engine: Engine
) -> None:
    """The register reads 100 at midnight, 110 at noon, is exchanged (reads 2, flagged) and
    reads 5 at the next midnight: 10 before the drop and 3 after it, as billing counts."""
    add(engine, "e-1")
    day = us("2026-03-01T00:00:00+00:00")
    write(engine, "e-1", "kW", [(day, 100.0), (day + 12 * HOUR, 110.0)])
    write(engine, "e-1", "kW", [(day + 13 * HOUR, 2.0)], quality=Quality.REGISTER_DECREASED)
    write(engine, "e-1", "kW", [(day + 24 * HOUR, 5.0), (day + 48 * HOUR, 9.0)])
    daily = dashboard.get("/meters/e-1/daily?from=2026-03-01&to=2026-03-03").json()
    assert daily["day"] == ["2026-03-01", "2026-03-02"]
    assert daily["consumption"] == pytest.approx([13.0, 4.0])


# --- poll health --------------------------------------------------------------------------


def test_health_buckets_count_polls_failures_and_latency(
    dashboard: Dashboard, engine: Engine
) -> None:
    start = us("2026-11-18T10:00:00+00:00")
    pk = add(engine, "e-1")
    with engine.begin() as conn:
        save_poll_log(
            conn,
            [
                PollEntry(pk, start + 10_000_000, 5.0, True, None),
                PollEntry(pk, start + 20_000_000, 100.0, False, "refused"),
                PollEntry(pk, start + 70_000_000, 7.0, True, None),
                PollEntry(pk, start + 120 * MINUTE, 9.0, True, None),  # at the end: outside
            ],
        )
    end = start + 120 * MINUTE
    health = dashboard.get(f"/meters/e-1/health?from={start}&to={end}").json()
    assert health == {
        "bucket_seconds": 60.0,
        "t": [start / 1e6, start / 1e6 + 60],
        "polls": [2, 1],
        "failures": [1, 0],
        "mean_ms": [52.5, 7.0],
        "max_ms": [100.0, 7.0],
    }


# --- who may see what, and refused input --------------------------------------------------

ENDPOINTS = ("", "/live", "/series?channel=A", "/daily", "/health")


def test_a_member_sees_only_their_projects_meters(
    dashboard: Dashboard, engine: Engine, estate: Estate
) -> None:
    add(engine, "mine", house=estate.house_a)
    add(engine, "theirs", house=estate.house_b)
    add(engine, "nobodys")
    for path in ENDPOINTS:
        assert estate.member.get(f"/meters/mine{path}").status_code == 200, path
        for device_id in ("theirs", "nobodys", "unknown"):
            answer = estate.member.get(f"/meters/{device_id}{path}")
            assert answer.status_code == 404, (device_id, path)
            assert f"no meter with id {device_id}" in answer.text
        assert dashboard.get(f"/meters/theirs{path}").status_code == 200, path


BAD_QUERIES = {
    "?range=year": "range",
    "?from=yesterday": "from",
    "?to=2026-13-01": "to",
    "?from=2026-11-02&to=2026-11-01": "from",
    "/series?channel=V": "channel",
    "/series": "channel",
    "/series?channel=A&from=-99999999999999999": "from",
    "/daily?to=soon": "to",
    "/daily?from=0001-01-01T00:00Z": "from",
    "/daily?to=9999-12-31": "to",
    "/health?from=2026-11-02&to=2026-11-02": "from",
}


def test_bad_input_is_refused_naming_the_field(dashboard: Dashboard, engine: Engine) -> None:
    add(engine, "e-1")
    for query, field in BAD_QUERIES.items():
        answer = dashboard.get(f"/meters/e-1{query}")
        assert answer.status_code == 400, query
        if query.startswith("?"):  # the page
            named = re.findall(r"<code>(\w+)</code>|invalid input: (\w+)", answer.text)
            assert {name for pair in named for name in pair if name} == {field}, query
        else:  # a feed of the page's script: a JSON error naming the field
            assert answer.headers["content-type"] == "application/json", query
            assert set(answer.json()["errors"]) == {field}, (query, answer.text)
            assert field in answer.json()["detail"], query
