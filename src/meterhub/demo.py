"""``meterhub demo``: simulated meters, registered, polled every few seconds, on SQLite."""

from __future__ import annotations

import secrets

from meterhub.collector.simulator import Simulator, SimulatorConfig
from meterhub.db import make_engine
from meterhub.errors import InvalidInput
from meterhub.migrations import upgrade
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import create_device
from meterhub.registry.users import create_user, issue_token, user_named
from meterhub.server import serve
from meterhub.settings import Settings

FIRST_PORT = 9000


def admin_token(settings: Settings) -> str:
    """A fresh token of the demo's ``admin`` user (created on first use)."""
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        try:
            user = user_named(conn, "admin")
        except InvalidInput:
            user = create_user(conn, "admin", secrets.token_urlsafe(16), is_admin=True)
        token = issue_token(conn, user.id)
    engine.dispose()
    return token


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


def run_demo(settings: Settings, *, port: int, meters: int) -> None:
    upgrade(settings.database_url)
    config = SimulatorConfig(ports=range(FIRST_PORT, FIRST_PORT + meters))
    with Simulator(config) as simulator:
        added = register_simulated(settings, simulator.meters)
        token = admin_token(settings)
        print(
            f"meterhub demo: {meters} simulated meters on ports {FIRST_PORT}-"
            f"{FIRST_PORT + meters - 1} ({added} newly registered), polled every "
            f"{settings.poll_interval:g} s\n"
            f"  one meter:     http://127.0.0.1:{port}/counter-data/{FIRST_PORT}/\n"
            f"  API docs:      http://127.0.0.1:{port}/docs\n"
            f"  counter and /smt/ calls are open; everything else needs the admin token:\n"
            f"    curl -H 'Authorization: token {token}' "
            f"http://127.0.0.1:{port}/api/v1/meters/",
            flush=True,
        )
        serve(settings, host="127.0.0.1", port=port)
