"""``meterhub demo``: simulated meters, registered, polled every few seconds, on SQLite.

The first run also lays out an estate to look at in the dashboard: a project whose houses
hold the meters ten by ten, a tariff and an hourly billing task.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from functools import partial

from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tasks import create_task
from meterhub.collector.simulator import Simulator, SimulatorConfig
from meterhub.db import make_engine
from meterhub.errors import InvalidInput
from meterhub.migrations import upgrade
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import create_device
from meterhub.registry.projects import assign_device, create_house, create_project, list_projects
from meterhub.registry.users import create_user, issue_token, set_password, user_named
from meterhub.server import serve
from meterhub.settings import Settings

FIRST_PORT = 9000
METERS_PER_HOUSE = 10
HOURLY = {"month": "*", "day": "*", "hour": "*", "minute": "0"}


def admin_login(settings: Settings) -> tuple[str, str]:
    """A fresh password and token of the demo's ``admin`` user (created on first use)."""
    password = secrets.token_urlsafe(12)
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        try:
            user = user_named(conn, "admin")
            set_password(conn, user.id, password)
        except InvalidInput:
            user = create_user(conn, "admin", password, is_admin=True)
        token = issue_token(conn, user.id)
    engine.dispose()
    return password, token


def lay_out_estate(settings: Settings, meter_ids: list[int]) -> None:
    """On an empty registry: a project with houses of ten meters, a tariff, an hourly task."""
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        if list_projects(conn, None, offset=0, limit=1)[0]:
            return
        project = create_project(conn, "Demo estate", settings.timezone, "EUR")
        tariff = Tariff.flat(Decimal("0.30"), fixed_charge=Decimal("2.00"))
        set_tariff(conn, project.id, DeviceType.ELECTRICITY, tariff)
        create_task(conn, project.id, "Hourly electricity", DeviceType.ELECTRICITY, HOURLY)
        for first in range(0, len(meter_ids), METERS_PER_HOUSE):
            flat = str(first // METERS_PER_HOUSE + 1)
            resident = (f"Resident of flat {flat}", "+49 30 555 0100")
            house = create_house(
                conn, project.id, ["Demo city", "Main St", "1", "1", flat], [resident]
            )
            for meter_id in meter_ids[first : first + METERS_PER_HOUSE]:
                assign_device(conn, str(meter_id), house)
    engine.dispose()


def register_simulated(settings: Settings, meters: list[tuple[int, int]]) -> int:
    """Register ``(meter id, port)`` pairs not registered yet; returns how many were new."""
    engine = make_engine(settings.database_url)
    added = 0
    with engine.begin() as conn:
        for meter_id, port in meters:
            try:
                with conn.begin_nested():
                    create_device(
                        conn,
                        str(meter_id),
                        DeviceType.ELECTRICITY,
                        host=settings.meter_host,
                        port=port,
                    )
                added += 1
            except InvalidInput:
                continue
    engine.dispose()
    return added


def run_demo(settings: Settings, *, port: int, meters: int, verbose: bool = False) -> None:
    """Serve the demo until Ctrl-C; once it serves, print how to use it (``demo_banner``)."""
    upgrade(settings.database_url)
    config = SimulatorConfig(ports=range(FIRST_PORT, FIRST_PORT + meters))
    with Simulator(config) as simulator:
        added = register_simulated(settings, simulator.meters)
        lay_out_estate(settings, [meter_id for meter_id, _ in simulator.meters])
        password, token = admin_login(settings)
        summary = (
            f"meterhub demo: {meters} simulated meters on ports {FIRST_PORT}-"
            f"{FIRST_PORT + meters - 1} ({added} newly registered), polled every "
            f"{settings.poll_interval:g} s"
        )
        banner = partial(demo_banner, summary, password, token)
        serve(settings, host="127.0.0.1", port=port, verbose=verbose, banner=banner)


def demo_banner(summary: str, password: str, token: str, url: str) -> str:
    """The demo's welcome, once it serves at ``url``: where to look, how to log in, how to
    call the API, how to stop."""
    return (
        f"{summary}\n"
        f"  dashboard:     {url}/  (user admin, password {password})\n"
        f"  API docs:      {url}/docs\n"
        f"  one meter:     {url}/counter-data/{FIRST_PORT}/\n"
        f"  API token:     {token}\n"
        f"  counter and /smt/ calls are open; everything else needs the token:\n"
        f"    curl -H 'Authorization: token {token}' {url}/api/v1/meters/\n"
        f"  Ctrl-C stops the demo."
    )
