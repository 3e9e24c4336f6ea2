"""Meters for the dashboard's meter page tests, written straight into the stores, and a
member who may see only one of two projects."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from meterhub.collector.health import Health
from meterhub.collector.health_store import save_health
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device
from meterhub.registry.projects import assign_device, create_house, create_project
from meterhub.registry.users import create_user
from meterhub.storage import Point, write_points
from meterhub.times import now_us
from tests.web.conftest import Dashboard, log_in

ELECTRICITY, WATER = DeviceType.ELECTRICITY, DeviceType.WATER
ADDRESS = ["Main St", "1", "", "", "Springfield"]


def add(
    engine: Engine,
    device_id: str,
    kind: DeviceType = ELECTRICITY,
    *,
    port: int | None = None,
    house: int | None = None,
    enabled: bool = True,
    readings: dict[str, float] | None = None,
    at: int | None = None,
    health: Health | None = None,
) -> int:
    """A meter with one reading and its health, if given; returns its pk."""
    with engine.begin() as conn:
        host = "127.0.0.1" if port else None
        pk = create_device(conn, device_id, kind, host=host, port=port, enabled=enabled).pk
        if house is not None:
            assign_device(conn, device_id, house, "tap" if kind == WATER else None)
        tags = channel_tags(conn, pk)
        ts = at or now_us()
        write_points(conn, [Point(tags[ch], ts, v) for ch, v in (readings or {}).items()])
        if health is not None:
            save_health(conn, {pk: health})
    return pk


def api_headers(client: Dashboard) -> dict[str, str]:
    """The API credentials of the client's session."""
    return {"Authorization": f"token {client.cookies['meterhub_session']}"}


@dataclass(frozen=True)
class Estate:
    """Two projects (Alpha in Europe/Berlin, Beta in Asia/Shanghai) with a house each, and
    a logged-in member who may see only Alpha."""

    project_a: int
    project_b: int
    house_a: int
    house_b: int
    member: Dashboard


def make_estate(dashboard: Dashboard, engine: Engine) -> Estate:
    with engine.begin() as conn:
        a = create_project(conn, "Alpha", "Europe/Berlin", "EUR").id
        b = create_project(conn, "Beta", "Asia/Shanghai", "CNY").id
        house_a, house_b = create_house(conn, a, ADDRESS), create_house(conn, b, ADDRESS)
        create_user(conn, "member", "correct horse", project_ids=[a])
    member = Dashboard(dashboard.app, follow_redirects=False)
    log_in(member, "member", "correct horse")
    return Estate(a, b, house_a, house_b, member)
