"""Every dashboard route, read from the pages' routers, refuses what it must refuse.

For each route: without a session a GET goes to the login form (which returns to the page)
and a POST to the login form, and a feed of the pages' scripts (``json_feed``) answers 401
JSON; a route answering JSON is a feed; a POST whose CSRF value is wrong or missing is refused with
403; a user of project A gets 404 for project B's objects, 403 for administrators' pages
and actions, and lists without anything of project B; an administrator's request goes
through. Refused requests change nothing in the database. Each route needs a case below,
so a route added later fails here until it is covered.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from urllib.parse import quote, unquote, urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData, select

from meterhub.alerts.evaluator import AlertEvaluator
from meterhub.alerts.rule_store import create_channel, create_rule
from meterhub.alerts.tables import alerts
from meterhub.api.app import create_app
from meterhub.billing.runs import run_task
from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tasks import create_task
from meterhub.collector.health import Health, Status
from meterhub.collector.health_store import save_health
from meterhub.db import make_engine
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device
from meterhub.registry.meter_models import create_model
from meterhub.registry.projects import assign_device, create_house, create_project
from meterhub.registry.sources import create_source
from meterhub.registry.tags import TagSpec
from meterhub.registry.users import create_user
from meterhub.settings import Settings
from meterhub.storage import Point, write_points
from meterhub.times import now_us
from meterhub.web.app import PAGES
from meterhub.web.routing import PageRoute
from meterhub.web.session import CSRF_FIELD
from tests.conftest import fresh_postgres
from tests.web.conftest import Dashboard, log_in

HOUR = 3_600_000_000
MONTHLY = {"month": "*", "day": "1", "hour": "0", "minute": "0"}


class Access(StrEnum):
    PUBLIC = "anyone, without a session"
    SESSION = "the session itself, whoever it belongs to"
    LIST = "a user sees only rows of their projects"
    OBJECT = "another project's object answers 404"
    ADMIN = "administrators only: 403 for others"


@dataclass(frozen=True)
class Case:
    """How a route is reached: a valid form or query (``{name}`` is replaced by the path
    value ``name``), and what an administrator's valid request answers."""

    access: Access
    form: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    accepted: int = 200


def post(access: Access, **form: str) -> Case:
    return Case(access, form=form, accepted=303)


MODEL_FILE = 'name = "added"\ndevice_type = "water"\n[channels.V]\naddress = 0\ntype = "uint32"\n'
TASK_FORM = {"name": "Renamed", **MONTHLY, "enabled": "on", "description": ""}
CASES = {
    "GET /docs": Case(Access.PUBLIC),
    "POST /logout": post(Access.SESSION),
    "GET /": Case(Access.LIST),
    "GET /meters": Case(Access.LIST),
    "POST /meters": post(Access.ADMIN, device_id="78000", type="electricity", port="9780"),
    "GET /meters.csv": Case(Access.LIST),
    # without a file an upload is refused (400), after the CSRF and administrator checks;
    # tests/web/test_meters_import.py uploads files
    "POST /meters/import": Case(Access.ADMIN, accepted=400),
    "POST /meters/{device_id}/enable": post(Access.ADMIN),
    "POST /meters/{device_id}/disable": post(Access.ADMIN),
    "POST /meters/{device_id}/delete": post(Access.ADMIN),
    "GET /meters/{device_id}": Case(Access.OBJECT),
    "GET /meters/{device_id}/live": Case(Access.OBJECT),
    "GET /meters/{device_id}/series": Case(Access.OBJECT, query={"channel": "kW"}),
    "GET /meters/{device_id}/daily": Case(Access.OBJECT),
    "GET /meters/{device_id}/health": Case(Access.OBJECT),
    "GET /projects": Case(Access.LIST),
    "GET /projects/{project_id}": Case(Access.OBJECT),
    "GET /projects/{project_id}/bills": Case(Access.OBJECT),
    "GET /projects/{project_id}/bills.csv": Case(Access.OBJECT),
    "GET /billing/tasks": Case(Access.LIST),
    "GET /billing/tasks/new": Case(Access.LIST),
    "POST /billing/tasks": post(
        Access.OBJECT, **TASK_FORM, project_id="{project_id}", device_type="electricity"
    ),
    "GET /billing/cron-preview": Case(
        Access.OBJECT, query={"project_id": "{project_id}", **MONTHLY}
    ),
    "GET /billing/tasks/{key}": Case(Access.OBJECT),
    "GET /billing/tasks/{key}/edit": Case(Access.OBJECT),
    "POST /billing/tasks/{key}": post(Access.OBJECT, **TASK_FORM),
    "POST /billing/tasks/{key}/enable": post(Access.OBJECT),
    "POST /billing/tasks/{key}/disable": post(Access.OBJECT),
    "POST /billing/tasks/{key}/run": post(Access.OBJECT),
    "POST /billing/tasks/{key}/delete": post(Access.OBJECT),
    "GET /meter-models": Case(Access.ADMIN),
    "POST /meter-models": post(Access.ADMIN, text=MODEL_FILE),
    "POST /meter-models/{name}/delete": post(Access.ADMIN),
    "GET /sources": Case(Access.ADMIN),
    "GET /sources/{source_id}": Case(Access.ADMIN),
    "POST /sources/{source_id}/{action}": post(Access.ADMIN),
    "POST /sources/tags/{tag_key}/{action}": post(Access.ADMIN),
    "GET /projects/{project_id}/alerts": Case(Access.OBJECT),
    "POST /projects/{project_id}/alerts/rules": post(
        Access.OBJECT, name="Silent", kind="offline", minutes="30"
    ),
    "POST /projects/{project_id}/alerts/rules/{rule_id}/delete": post(Access.OBJECT),
    "POST /projects/{project_id}/alerts/rules/{rule_id}/{switch}": post(Access.OBJECT),
    "POST /projects/{project_id}/alerts/channels": post(
        Access.OBJECT, kind="email", addresses="ops@example.org"
    ),
    "POST /projects/{project_id}/alerts/channels/{channel_id}/delete": post(Access.OBJECT),
    "POST /alerts/{alert_id}/ack": post(Access.OBJECT),
}
EXCLUDED = {"GET /login", "POST /login"}
"""The login form is where the other routes send visitors (``tests/web/test_login.py``)."""


def dashboard_routes() -> list[str]:
    """``METHOD /path`` of every route of the pages' routers, and the API docs page."""
    found = {"GET /docs"}
    for page in PAGES:
        for route in page.router.routes:
            if isinstance(route, PageRoute):
                found.update(
                    f"{method} {route.path}" for method in (route.methods or set()) - {"HEAD"}
                )
    return sorted(found - EXCLUDED)


ROUTES = dashboard_routes()
FEEDS = {
    f"GET {route.path}"
    for page in PAGES
    for route in page.router.routes
    if isinstance(route, PageRoute) and getattr(route.endpoint, "json_feed", False)
}
"""Routes whose errors answer JSON, for the pages' scripts."""


def test_every_route_has_a_case() -> None:
    assert [route for route in ROUTES if route not in CASES] == []


@dataclass
class Site:
    """Projects A and B, alike, and a data source (no project has one)."""

    ours: dict[str, str]
    """Path values naming project A's objects."""
    theirs: dict[str, str]
    """Path values naming project B's objects."""
    secrets: tuple[str, ...]
    """What only pages showing project B contain."""


def _project(engine: Engine, name: str, meter: str, port: int) -> dict[str, str]:
    """A project with a house, an offline meter with readings, a tariff, and a task that has
    billed once; returns the path values naming them."""
    with engine.begin() as conn:
        project = create_project(conn, f"Project {name}", "Asia/Shanghai", "CNY")
        house = create_house(conn, project.id, [f"{name}-street", "1", "", "", ""], [("Li", "133")])
        pk = create_device(conn, meter, DeviceType.ELECTRICITY, host="127.0.0.1", port=port).pk
        assign_device(conn, meter, house)
        now = now_us()
        health = Health(Status.OFFLINE, now, now - HOUR, "timeout", now, 3, 3000.0, 9, 3)
        save_health(conn, {pk: health})
        register = channel_tags(conn, pk)["kW"]
        readings = [Point(register, now - 3 * HOUR, 10.0), Point(register, now - HOUR, 12.5)]
        write_points(conn, readings)
        set_tariff(conn, project.id, DeviceType.ELECTRICITY, Tariff.flat(Decimal("0.5")))
        task = create_task(conn, project.id, f"{name} monthly", DeviceType.ELECTRICITY, MONTHLY)
        run_task(conn, task.key, now - 2 * HOUR)
        rule = create_rule(
            conn, project.id, name=f"{name} rule", kind="offline", params={"minutes": 30}
        )
        channel = create_channel(conn, project.id, kind="email", addresses=["ops@example.org"])
    AlertEvaluator(engine).tick(now)  # the meter, offline for an hour: an alert
    with engine.connect() as conn:
        alert = conn.execute(select(alerts.c.id).where(alerts.c.rule_id == rule.id)).scalar_one()
    return {
        "project_id": str(project.id),
        "device_id": meter,
        "key": task.key,
        "rule_id": str(rule.id),
        "channel_id": str(channel.id),
        "alert_id": str(alert),
        "switch": "disable",
    }


def _site(engine: Engine) -> Site:
    ours = _project(engine, "Alpha", "77001", 9701)
    theirs = _project(engine, "Bravo", "77002", 9702)
    with engine.begin() as conn:
        create_source(conn, "src-b", "Source B", tag_specs=[TagSpec("src-b.t")])
        create_model(conn, {**tomllib.loads(MODEL_FILE), "name": "spare"})
    source = {"source_id": "src-b", "tag_key": "src-b.t", "action": "deactivate", "name": "spare"}
    secrets = (
        "Project Bravo",
        "Bravo-street",
        "77002",
        "Bravo monthly",
        theirs["key"],
        "Bravo rule",
    )
    return Site({**ours, **source}, {**theirs, **source}, secrets)


@dataclass
class World:
    site: Site
    admin: Dashboard
    user: Dashboard
    """A user of project A only."""
    anonymous: TestClient
    engine: Engine
    tables: MetaData

    def snapshot(self) -> dict[str, list[str]]:
        """Every row of every table but the server's own keys (the first form posted makes
        the notices' signing key)."""
        with self.engine.connect() as conn:
            return {
                table.name: sorted(map(repr, conn.execute(select(table))))
                for table in self.tables.sorted_tables
                if table.name != "server_keys"
            }


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def shared_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of each kind for the refusal tests, which share it since none of them may
    change anything (each checks that)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("security") / "meterhub.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    admin = request.getfixturevalue("postgres_admin")
    yield from fresh_postgres(admin, request.getfixturevalue("postgres_template"))


@pytest.fixture(scope="module")
def world(shared_database: str) -> Iterator[World]:
    engine = make_engine(shared_database)
    site = _site(engine)
    with engine.begin() as conn:
        create_user(conn, "root", "correct horse", is_admin=True)
        create_user(conn, "ann", "alpha password", project_ids=[int(site.ours["project_id"])])
    tables = MetaData()
    tables.reflect(engine)
    settings = Settings(
        database_url=shared_database,
        collector_enabled=False,
        scheduler_enabled=False,
        alerts_enabled=False,  # refused requests change nothing: no evaluator writing either
    )
    with Dashboard(create_app(settings), follow_redirects=False) as admin:
        log_in(admin, "root", "correct horse")
        user = Dashboard(admin.app, follow_redirects=False)
        log_in(user, "ann", "alpha password")
        anonymous = TestClient(admin.app, follow_redirects=False)
        yield World(site, admin, user, anonymous, engine, tables)
    engine.dispose()


def _fill(template: str, values: Mapping[str, str]) -> str:
    def value(name: re.Match[str]) -> str:
        if name.group(1) not in values:
            pytest.fail(f"no value for {{{name.group(1)}}}: add one to Site")
        return quote(values[name.group(1)], safe="")

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, template)


def _target(case: Case, path: str, values: Mapping[str, str]) -> str:
    """The route's URL with ``values``, and its query."""
    query = {name: _fill(text, values) for name, text in case.query.items()}
    url = _fill(path, values)
    return f"{url}?{urlencode(query)}" if query else url


def _form(case: Case, values: Mapping[str, str]) -> dict[str, str]:
    return {name: _fill(text, values) for name, text in case.form.items()}


def _posted(client: Dashboard, method: str, form: dict[str, str]) -> dict[str, str] | None:
    """The form with the session's CSRF value, for a POST."""
    return {**form, **client.csrf()} if method == "POST" else None


@pytest.mark.parametrize("route", [route for route in ROUTES if route in CASES])
def test_each_route_refuses_what_it_must(world: World, route: str) -> None:
    method, path = route.split(" ", 1)
    case = CASES[route]
    url, form = _target(case, path, world.site.theirs), _form(case, world.site.theirs)
    before = world.snapshot()

    answer = world.anonymous.request(method, url, data=form or None)
    if case.access is Access.PUBLIC:
        assert answer.status_code == 200, answer.text
        return
    if route in FEEDS:
        assert answer.status_code == 401, answer.text
        assert answer.json() == {"detail": "the session has ended: log in again", "errors": {}}
    else:
        expected = f"/login?next={quote(url, safe='')}" if method == "GET" else "/login"
        assert (answer.status_code, answer.headers.get("location")) == (303, expected)

    if method == "POST":
        for wrong in ({CSRF_FIELD: "0" * 64}, {}):
            answer = world.admin.post(url, data={**form, **wrong})
            assert answer.status_code == 403, answer.text
            assert "did not come from this site" in answer.text
    else:
        answer = world.admin.get(url)
        assert answer.status_code == case.accepted, answer.text
        if answer.headers["content-type"].startswith("application/json"):
            assert route in FEEDS, "a JSON endpoint of the dashboard must be a json_feed"
    if case.access is Access.LIST:
        assert any(secret in answer.text for secret in world.site.secrets), "nothing to hide?"
    if case.access is not Access.SESSION:
        _as_user(world, method, path, case)
    assert world.snapshot() == before


def _as_user(world: World, method: str, path: str, case: Case) -> None:
    """A user of project A: refused for project B's objects (allowed to see their own),
    refused administrators' pages, shown lists without project B."""
    url, form = _target(case, path, world.site.theirs), _form(case, world.site.theirs)
    answer = world.user.request(method, url, data=_posted(world.user, method, form))
    status = {Access.LIST: 200, Access.OBJECT: 404, Access.ADMIN: 403}[case.access]
    assert answer.status_code == status, answer.text
    if f"{method} {path}" in FEEDS and status != 200:
        assert set(answer.json()) == {"detail", "errors"}, answer.text
    named = unquote(url)  # a refusal may repeat what was asked for, nothing more
    leaked = [s for s in world.site.secrets if s in answer.text and s not in named]
    assert not leaked, answer.text
    if case.access is Access.OBJECT and method == "GET":
        own = world.user.get(_target(case, path, world.site.ours))
        assert own.status_code == case.accepted, own.text


POSTS = sorted(
    (r for r in ROUTES if r.startswith("POST ") and r in CASES),
    key=lambda route: (route == "POST /logout", route.endswith("/delete")),
)
"""Deletions and logging out last, so that each form still finds its object."""


def test_the_valid_forms_go_through(dashboard: Dashboard, engine: Engine) -> None:
    """The forms of the cases are valid: refusing them above is the check refusing them."""
    site = _site(engine)
    for route in POSTS:
        path = route.split(" ", 1)[1]
        case = CASES[route]
        form = {**_form(case, site.theirs), **dashboard.csrf()}
        answer = dashboard.post(_target(case, path, site.theirs), data=form)
        assert answer.status_code == case.accepted, (route, answer.text)
