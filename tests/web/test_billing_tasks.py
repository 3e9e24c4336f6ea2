"""Billing task pages: create and edit through the form with a preview of the fire times,
enable, disable, run now, delete, and who may do it, through the real app on both databases."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

import httpx2
from sqlalchemy import Engine

from meterhub.registry.channels import DeviceType
from tests.web.conftest import Dashboard, page_notice, shown_notice
from tests.web.test_projects import Estate, api_headers, build_estate, table, user_of

SCHEDULE = {"month": "*", "day": "1", "hour": "0", "minute": "0"}
ACROSS_DST = {"month": "3", "day": "25,31", "hour": "2", "minute": "30"}
"""Berlin changes to summer time in the early hours of the last Sunday in March, always
between the 25th and the 31st: the 25th is winter time or the change, the 31st summer time
or the change."""


def api(client: Dashboard, method: str, url: str, **kwargs: Any) -> Any:
    """The ``data`` of a scheduler API answer (asserting it succeeded)."""
    answer = client.request(method, url, headers=api_headers(client), **kwargs)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def api_tasks(client: Dashboard, project_id: int) -> list[dict[str, Any]]:
    url = f"/api/v1/scheduler/tasks/?project_id={project_id}&page_size=100"
    tasks: list[dict[str, Any]] = api(client, "GET", url)["results"]
    return tasks


def task_form(estate: Estate, **fields: str) -> dict[str, str]:
    base = {
        "name": "water bills",
        "project_id": str(estate.project),
        "device_type": "water",
        "description": "on the first",
        "enabled": "on",
        "action": "save",
        **SCHEDULE,
    }
    return {**base, **fields}


def created_key(answer: httpx2.Response) -> str:
    """The key of the task a successful form post redirected to."""
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/billing/tasks/([0-9a-f]{32})", answer.headers["location"])
    assert found is not None
    return found[1]


def notice(client: Dashboard, answer: httpx2.Response) -> str | None:
    """The notice the page after ``answer`` shows (the redirect's location carries none)."""
    assert "notice" not in answer.headers["location"]
    return shown_notice(client, answer)


def preview_times(page: str) -> list[str]:
    """The ISO times of the page's fire list."""
    listed = re.search(r'<ol class="fires" id="fires"[^>]*>(.*?)</ol>', page, re.S)
    assert listed is not None
    return re.findall(r'<time datetime="([^"]+)">', listed[1])


def expected_across_dst(count: int) -> list[str]:
    """The next ``count`` fires of ``ACROSS_DST`` in Berlin, worked out by the rule: a wall
    time before the change is CET (+01:00), after it CEST (+02:00), and 02:30 on the day of
    the change does not exist, so it fires at 03:30 CEST."""
    fires = []
    for year in range(datetime.now(UTC).year, datetime.now(UTC).year + 4):
        change = max(day for day in range(25, 32) if date(year, 3, day).weekday() == 6)
        for day in (25, 31):
            if day == change:
                wall = f"{year}-03-{day}T03:30:00+02:00"
            else:
                wall = f"{year}-03-{day}T02:30:00{'+01:00' if day < change else '+02:00'}"
            if datetime.fromisoformat(wall) > datetime.now(UTC):
                fires.append(wall)
    return fires[:count]


# --- creating -------------------------------------------------------------------------------


def test_a_task_made_with_the_form_is_the_apis(dashboard: Dashboard, engine: Engine) -> None:
    estate = build_estate(engine, 1)
    form = dashboard.get("/billing/tasks/new")
    assert form.status_code == 200
    assert f'<option value="{estate.project}">Estate (Europe/Berlin)</option>' in form.text

    answer = dashboard.form("/billing/tasks", task_form(estate, name="  water bills  "))
    key = created_key(answer)
    assert notice(dashboard, answer) == "Task “water bills” created"
    task = next(t for t in api_tasks(dashboard, estate.project) if t["natrual_key"] == key)
    assert {k: task[k] for k in ("name", "crontab", "device_type", "enabled", "description")} == {
        "name": "water bills",
        "crontab": SCHEDULE,
        "device_type": 1,
        "enabled": True,
        "description": "on the first",
    }

    fires = api(dashboard, "GET", f"/api/v1/scheduler/tasks/{key}/preview/")["fires"]
    listed = dashboard.get(f"/billing/tasks?project_id={estate.project}&device_type=water")
    assert table(listed.text, "tasks")[1:] == [
        [
            "water bills",
            "Estate",
            "water",
            "enabled",
            datetime.fromisoformat(fires[0]).strftime("%Y-%m-%d %H:%M"),
            "—",
            "Europe/Berlin",
            "minute 0 · hour 0 · day 1 · month *",
            key,
        ]
    ]
    page = dashboard.get(f"/billing/tasks/{key}")
    assert preview_times(page.text) == fires


def test_preview_shows_five_fires_across_a_dst_change_without_saving(
    dashboard: Dashboard, engine: Engine
) -> None:
    estate = build_estate(engine, 1)
    before = len(api_tasks(dashboard, estate.project))
    form = task_form(estate, name="", action="preview", **ACROSS_DST)
    page = dashboard.form("/billing/tasks", form)
    assert page.status_code == 200
    assert preview_times(page.text) == expected_across_dst(5)
    assert "Next five fire times in Europe/Berlin" in page.text
    assert 'value="25,31"' in page.text  # the form keeps what was typed
    assert len(api_tasks(dashboard, estate.project)) == before
    assert '<script src="/static/billing.js" defer></script>' in page.text
    assert dashboard.get("/static/billing.js").status_code == 200

    live = dashboard.get(
        "/billing/cron-preview", params={"project_id": estate.project, **ACROSS_DST}
    )
    assert live.json() == {"timezone": "Europe/Berlin", "fires": expected_across_dst(5)}


def test_the_live_preview_names_a_bad_field(dashboard: Dashboard, engine: Engine) -> None:
    estate = build_estate(engine, 1)
    for query, field in (
        ({"project_id": str(estate.project), **SCHEDULE, "minute": "61"}, "crontab.minute"),
        ({"project_id": str(estate.project), **SCHEDULE, "day": "30", "month": "2"}, "crontab.day"),
        ({"project_id": "", **SCHEDULE}, "project_id"),
    ):
        answer = dashboard.get("/billing/cron-preview", params=query)
        assert answer.status_code == 400
        assert list(answer.json()["errors"]) == [field]
    hidden = dashboard.get("/billing/cron-preview", params={"project_id": 999, **SCHEDULE})
    assert hidden.status_code == 404


def test_bad_input_shows_the_form_again_naming_the_fields(
    dashboard: Dashboard, engine: Engine
) -> None:
    estate = build_estate(engine, 1)
    before = api_tasks(dashboard, estate.project)
    for fields, named in (
        ({"hour": "24", "name": " "}, ["crontab.hour", "name"]),
        ({"minute": "*/0"}, ["crontab.minute"]),
        ({"device_type": "gas"}, ["device_type"]),
        ({"project_id": "", "description": "x" * 10_001}, ["project_id", "description"]),
        ({"hour": "24", "action": "preview"}, ["crontab.hour"]),
    ):
        page = dashboard.form("/billing/tasks", task_form(estate, **fields))
        assert page.status_code == 400, fields
        assert re.findall(r"<li><code>([^<]+)</code>", page.text) == named
        assert preview_times(page.text) == []
        if "hour" in fields:
            assert (
                'name="hour" value="24" required maxlength="200" size="8" aria-invalid' in page.text
            )
    assert dashboard.form("/billing/tasks", task_form(estate, project_id="999")).status_code == 404
    assert api_tasks(dashboard, estate.project) == before


# --- changing -------------------------------------------------------------------------------


def test_edit_saves_or_previews_the_schedule(dashboard: Dashboard, engine: Engine) -> None:
    estate = build_estate(engine, 1)
    key = estate.tasks[DeviceType.ELECTRICITY]
    url = f"/api/v1/scheduler/tasks/{key}/"
    page = dashboard.get(f"/billing/tasks/{key}/edit")
    assert page.status_code == 200
    assert 'name="name" value="monthly electricity"' in page.text
    assert 'name="enabled" checked' in page.text
    original = api(dashboard, "GET", url)

    change = task_form(estate, name="quarterly", month="1-12/3", hour="6", description="")
    del change["enabled"]
    previewed = dashboard.form(f"/billing/tasks/{key}", {**change, "action": "preview"})
    assert previewed.status_code == 200
    assert all(
        (fire.month, fire.day, fire.hour) in {(m, 1, 6) for m in (1, 4, 7, 10)}
        for fire in map(datetime.fromisoformat, preview_times(previewed.text))
    )
    assert api(dashboard, "GET", url) == original

    refused = dashboard.form(f"/billing/tasks/{key}", {**change, "month": "13"})
    assert refused.status_code == 400
    assert "<code>crontab.month</code>" in refused.text
    assert api(dashboard, "GET", url) == original

    saving = dashboard.form(f"/billing/tasks/{key}", change)
    assert notice(dashboard, saving) == "Task “quarterly” saved"
    saved = api(dashboard, "GET", url)
    assert (saved["name"], saved["enabled"], saved["description"]) == ("quarterly", False, "")
    assert saved["crontab"] == {"month": "1-12/3", "day": "1", "hour": "6", "minute": "0"}
    assert (saved["project_id"], saved["device_type"]) == (estate.project, 2)  # kept


def test_disable_enable_and_delete(dashboard: Dashboard, engine: Engine) -> None:
    estate = build_estate(engine, 1)
    key = estate.tasks[DeviceType.WATER]
    url = f"/api/v1/scheduler/tasks/{key}/"
    answer = dashboard.form(f"/billing/tasks/{key}/disable")
    assert notice(dashboard, answer) == "Task “monthly water” disabled: it no longer runs"
    assert api(dashboard, "GET", url)["enabled"] is False
    page = dashboard.get(f"/billing/tasks/{key}").text
    assert "Disabled: it does not run on its schedule." in page
    assert f'action="/billing/tasks/{key}/enable"' in page
    row = next(r for r in table(dashboard.get("/billing/tasks").text, "tasks") if r[-1] == key)
    assert (row[3], row[4]) == ("disabled", "not scheduled")

    dashboard.form(f"/billing/tasks/{key}/enable")
    assert api(dashboard, "GET", url)["enabled"] is True

    answer = dashboard.form(f"/billing/tasks/{key}/delete")
    assert answer.headers["location"] == "/billing/tasks"
    assert dashboard.get(url, headers=api_headers(dashboard)).status_code == 404
    assert dashboard.get(f"/billing/tasks/{key}").status_code == 404


# --- running --------------------------------------------------------------------------------


def test_run_now_bills_and_the_task_page_shows_the_run(
    dashboard: Dashboard, engine: Engine
) -> None:
    estate = build_estate(engine, 3)
    key = estate.tasks[DeviceType.ELECTRICITY]
    answer = dashboard.form(f"/billing/tasks/{key}/run", {"at": "2026-03-01T00:00"})
    assert notice(dashboard, answer) == "Run for 2026-03-01 00:00 CET: 1 billed, 1 not billed"
    shown = dashboard.get(answer.headers["location"])
    assert page_notice(shown.text) is None  # shown once
    run = [
        "2026-03-01 00:00:00",
        "1",
        "1",
        "E9: no readings",
        "Bills ending that day",
    ]
    rows = table(shown.text, "run-table")
    assert [row[:1] + row[3:] for row in rows] == [run]
    started, finished = rows[0][1:3]
    assert started <= finished

    again = dashboard.form(f"/billing/tasks/{key}/run", {"at": "2026-02-28T23:00:00Z"})
    assert (
        notice(dashboard, again)
        == "The run for 2026-03-01 00:00 CET had already been made: nothing billed again"
    )
    bills = api(dashboard, "GET", f"/api/v1/scheduler/history/?project_id={estate.project}")
    assert [(b["device_id"], b["to_time"]) for b in bills["results"]] == [
        ("E1", "2026-03-01T00:00:00+01:00")
    ]
    assert api(dashboard, "GET", f"/api/v1/scheduler/tasks/{key}/")["last_run_at"] == (
        "2026-03-01T00:00:00+01:00"
    )
    for bad in ("next tuesday", "2999-01-01T00:00"):
        refused = dashboard.form(f"/billing/tasks/{key}/run", {"at": bad})
        assert refused.status_code == 400
        assert "<code>at</code>" in refused.text
    assert len(table(dashboard.get(f"/billing/tasks/{key}").text, "run-table")) == 1


# --- who may do what ------------------------------------------------------------------------


def test_another_projects_tasks_are_hidden(dashboard: Dashboard, engine: Engine) -> None:
    estate = build_estate(engine, 3)
    key = estate.tasks[DeviceType.WATER]
    original = api(dashboard, "GET", f"/api/v1/scheduler/tasks/{key}/")
    resident = user_of(dashboard, engine, [estate.other])

    assert table(resident.get("/billing/tasks").text, "tasks") == []
    for url in (
        f"/billing/tasks?project_id={estate.project}",
        f"/billing/tasks/{key}",
        f"/billing/tasks/{key}/edit",
        f"/billing/cron-preview?project_id={estate.project}&month=*&day=1&hour=0&minute=0",
    ):
        assert resident.get(url).status_code == 404, url
    for tail in ("", "/enable", "/disable", "/run", "/delete"):
        answer = resident.form(f"/billing/tasks/{key}{tail}", task_form(estate, name="mine"))
        assert answer.status_code == 404, tail
        assert "Estate" not in answer.text
    assert resident.form("/billing/tasks", task_form(estate)).status_code == 404
    assert api(dashboard, "GET", f"/api/v1/scheduler/tasks/{key}/") == original
    assert len(api_tasks(dashboard, estate.project)) == 2

    own = created_key(
        resident.form("/billing/tasks", task_form(estate, project_id=str(estate.other)))
    )
    assert [row[-1] for row in table(resident.get("/billing/tasks").text, "tasks")] == [own]
    ran = notice(resident, resident.form(f"/billing/tasks/{own}/run"))
    assert (ran or "").startswith("Run for ")
