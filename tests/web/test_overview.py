"""The overview page: meter counts, failing meters, the collector's cycle and billing runs,
each matching what is stored, and limited to a non-admin's projects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from html import unescape
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine

from meterhub.billing.runs import run_task
from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tasks import create_task
from meterhub.collector.cycles import CycleMode, CycleStats, save_cycle
from meterhub.collector.health import Health, Status
from meterhub.collector.health_store import save_health
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device
from meterhub.registry.projects import assign_device, create_house, create_project
from meterhub.registry.users import create_user
from meterhub.storage import Point, write_points
from meterhub.times import now_us, to_us
from tests.web.conftest import Dashboard, log_in

NOW = now_us()
SECOND = 1_000_000
MONTHLY = {"month": "*", "day": "1", "hour": "0", "minute": "0"}


def table_rows(html: str, section: str) -> list[list[str]]:
    """The body rows of the table in the section whose id (or heading's id) is ``section``,
    as cell texts."""
    found = re.search(rf'<section [^>]*="{section}".*?</section>', html, re.S)
    assert found, f"no section {section}"
    body = re.search(r"<tbody>(.*?)</tbody>", found.group(0), re.S)
    return [
        [" ".join(unescape(re.sub(r"<[^>]+>", " ", cell)).split()) for cell in cells]
        for cells in (
            re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", body.group(1) if body else "", re.S)
        )
    ]


def stat(html: str, key: str) -> int:
    found = re.search(rf'id="count-{key}">\s*<div class="value">([^<]*)</div>', html)
    assert found, f"no figure {key}"
    return int(found.group(1).replace("\u2009", ""))


def when(us: int, zone: str = "UTC", seconds: bool = True) -> str:
    form = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(us / SECOND, ZoneInfo(zone)).strftime(form)


def offline(failures: int, error: str, seen: int | None) -> Health:
    at = NOW - failures * 60 * SECOND
    return Health(Status.OFFLINE, at, seen, error, at, failures, 3000.0, 50, failures)


def online(seen: int) -> Health:
    return Health(Status.ONLINE, seen, seen, None, None, 0, 12.5, 50, 0)


@dataclass
class Site:
    b: int
    task_a: str


def _meter(
    conn: Connection, device_id: str, house: int, health: Health | None, *, enabled: bool = True
) -> int:
    pk = create_device(conn, device_id, DeviceType.ELECTRICITY, enabled=enabled).pk
    assign_device(conn, device_id, house)
    if health:
        save_health(conn, {pk: health})
    return pk


@pytest.fixture
def site(engine: Engine) -> Site:
    """Project A: 2 online (one read long ago), 2 offline, 1 never seen, 1 disabled offline;
    project B: 1 offline. One billing run in each project."""
    with engine.begin() as conn:
        a = create_project(conn, "Alpha estate", "Asia/Shanghai", "CNY")
        b = create_project(conn, "Beta estate", "Europe/Berlin", "EUR")
        house_a = create_house(conn, a.id, ["A", "1", "", "", ""])
        house_b = create_house(conn, b.id, ["B", "1", "", "", ""])
        read = _meter(conn, "a-online", house_a, online(now_us() - 5 * SECOND))  # just now
        _meter(conn, "a-stale", house_a, online(NOW - 600 * SECOND))
        _meter(conn, "a-down", house_a, offline(5, "timeout after 3.0 s", NOW - 9000 * SECOND))
        _meter(conn, "a-garbage", house_a, offline(2, "answer is not JSON", None))
        _meter(conn, "a-new", house_a, None)
        _meter(conn, "a-off", house_a, offline(9, "refused", None), enabled=False)
        _meter(conn, "b-down", house_b, offline(7, "beta's secret failure", None))
        register = channel_tags(conn, read)["kW"]
        write_points(conn, [Point(register, NOW - 3600 * SECOND, 100.0)])
        tasks = []
        for project in (a, b):
            set_tariff(conn, project.id, DeviceType.ELECTRICITY, Tariff.flat(Decimal("0.5")))
            task = create_task(
                conn, project.id, f"{project.name} monthly", DeviceType.ELECTRICITY, MONTHLY
            )
            tasks.append(task.key)
        run_task(conn, tasks[0], NOW)
        run_task(conn, tasks[1], to_us(datetime(2026, 3, 1, tzinfo=ZoneInfo("Europe/Berlin")), UTC))
    return Site(b.id, tasks[0])


def test_counts_match_the_stored_health(dashboard: Dashboard, site: Site) -> None:
    page = dashboard.get("/")
    assert page.status_code == 200
    figures = {key: stat(page.text, key) for key in ("online", "offline", "never_seen", "disabled")}
    assert figures == {"online": 2, "offline": 4, "never_seen": 1, "disabled": 1}
    assert stat(page.text, "read") == 1  # a-online only; a-stale was read 10 min ago
    assert "read in the last 60 s (poll interval), of 7 meters" in page.text
    assert 'href="/meters?status=offline"' in page.text


def test_failing_meters_come_most_failures_first_without_disabled_ones(
    dashboard: Dashboard, site: Site
) -> None:
    rows = table_rows(dashboard.get("/").text, "attention")
    assert [row[:4] for row in rows] == [
        ["b-down", "electricity", "7", "beta's secret failure"],
        ["a-down", "electricity", "5", "timeout after 3.0 s"],
        ["a-garbage", "electricity", "2", "answer is not JSON"],
    ]
    assert rows[1][4] == when(NOW - 5 * 60 * SECOND)
    assert rows[1][5] == f"{when(NOW - 9000 * SECOND)} (2 h ago)"
    assert rows[2][5] == "— (never)"
    assert 'href="/meters/a-down"' in dashboard.get("/").text


def test_billing_runs_newest_first_in_each_projects_zone(dashboard: Dashboard, site: Site) -> None:
    page = dashboard.get("/").text
    assert [row[:6] for row in table_rows(page, "runs")] == [
        [
            "Beta estate monthly",
            "Beta estate",
            "electricity",
            "2026-03-01 00:00 Europe/Berlin",
            "0",
            "1",
        ],
        [
            "Alpha estate monthly",
            "Alpha estate",
            "electricity",
            f"{when(NOW, 'Asia/Shanghai', seconds=False)} Asia/Shanghai",
            "1",
            "5",
        ],
    ]
    assert f'href="/billing/tasks/{site.task_a}"' in page


def cycle(
    shard: int, shards: int, duration: float, polls: int, failures: int, at: int
) -> CycleStats:
    """A poll interval of ``shard`` that began a minute before ``at`` (plus a second a shard)."""
    readings = polls - failures
    started = at - (shard + 60) * SECOND
    return CycleStats(
        shard,
        shards,
        CycleMode.RUN,
        started,
        duration,
        polls,
        polls,
        failures,
        readings,
        2 * readings,
        at,
    )


def test_the_collector_cycle_sums_the_current_shards(
    dashboard: Dashboard, engine: Engine, site: Site
) -> None:
    assert "The collector has not reported a cycle yet." in dashboard.get("/").text
    with engine.begin() as conn:
        for shard in range(4):  # an earlier run with 4 processes, then one with 2
            save_cycle(conn, cycle(shard, 4, 9.0, 5, 0, NOW - 800 * SECOND))
        save_cycle(conn, cycle(0, 2, 41.5, 100, 3, NOW))
        save_cycle(conn, cycle(1, 2, 43.0, 90, 0, NOW))
    page = dashboard.get("/").text
    assert "Collector: last poll interval" in page
    assert re.search(
        r'id="cycle-duration">43\.0 s <span class="muted">\(slowest of 2 / 2 shards\)', page
    )
    assert 'id="cycle-polls">190, of which 3 failed<' in page
    assert 'id="cycle-readings">187 (374 points)<' in page
    assert when(NOW - 61 * SECOND) in page


def test_a_user_sees_only_their_projects(dashboard: Dashboard, engine: Engine, site: Site) -> None:
    with engine.begin() as conn:
        create_user(conn, "bea", "beta password", project_ids=[site.b])
    bea = Dashboard(dashboard.app, follow_redirects=False)
    log_in(bea, "bea", "beta password")
    page = bea.get("/").text
    figures = {key: stat(page, key) for key in ("online", "offline", "never_seen", "disabled")}
    assert figures == {"online": 0, "offline": 1, "never_seen": 0, "disabled": 0}
    assert [row[0] for row in table_rows(page, "attention")] == ["b-down"]
    assert [row[1] for row in table_rows(page, "runs")] == ["Beta estate"]
    assert "Alpha" not in page
    assert "a-down" not in page
    assert "Collector" not in page  # fleet-wide figures are for administrators
