"""What the alert tests share: a project with meters, readings, and real receivers (an HTTP
server and an SMTP server on 127.0.0.1) started by the test."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import Engine, select

from meterhub.alerts.tables import notifications
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device
from meterhub.registry.projects import assign_device, create_house, create_project
from meterhub.storage import Point, Quality, write_points
from meterhub.times import HOUR_US, now_us
from tests.support import free_port

MINUTE = 60_000_000
METERS = (
    ("E1", DeviceType.ELECTRICITY, None),
    ("E2", DeviceType.ELECTRICITY, None),
    ("W1", DeviceType.WATER, "tap"),
    ("W2", DeviceType.WATER, "tap"),
)


def base_time() -> int:
    """An instant 10 minutes past the hour, after now and within 70 minutes of it (meters
    registered now are older than it, readings written up to it are recent)."""
    now = now_us()
    return now - now % HOUR_US + HOUR_US + 10 * MINUTE


@dataclass(frozen=True, slots=True)
class Site:
    project_id: int
    tags: dict[str, int]
    """Register tag of each meter."""


def make_site(engine: Engine, zone: str = "Europe/Berlin") -> Site:
    """A project with one house and the meters of ``METERS``, none read yet."""
    with engine.begin() as conn:
        project = create_project(conn, "Estate", zone, "EUR")
        house = create_house(conn, project.id, ["Estate", "1", "", "", ""])
        tags = {}
        for device_id, kind, water_kind in METERS:
            device = create_device(conn, device_id, kind)
            assign_device(conn, device_id, house, water_kind)
            tags[device_id] = channel_tags(conn, device.pk)["kW" if water_kind is None else "V"]
    return Site(project.id, tags)


def read(engine: Engine, site: Site, meter: str, *points: tuple[int, float]) -> None:
    """Store register readings ``(µs, value)`` of a meter, a drop flagged as the poller does."""
    tag = site.tags[meter]
    with engine.begin() as conn:
        rows, last = [], None
        for ts, value in points:
            drop = last is not None and value < last
            rows.append(Point(tag, ts, value, Quality.REGISTER_DECREASED if drop else 0))
            last = value
        write_points(conn, rows)


def queued(engine: Engine) -> list[tuple[int, str]]:
    """(alert id, event) of every notification queued, in order."""
    query = select(notifications.c.alert_id, notifications.c.event).order_by(notifications.c.id)
    with engine.connect() as conn:
        return [(row.alert_id, row.event) for row in conn.execute(query)]


@dataclass
class Receiver:
    """A webhook receiver: answers the next statuses of ``answers`` (then 200), keeps
    every request's headers and body."""

    answers: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@contextmanager
def webhook_receiver(answers: list[int] | None = None) -> Iterator[Receiver]:
    receiver = Receiver(list(answers or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.requests.append((dict(self.headers), body))
            status = receiver.answers.pop(0) if receiver.answers else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # a delivery pass opens up to 200 connections at once

    server = Server(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class Inbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def body_of(request: tuple[dict[str, str], bytes]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(request[1])
    return loaded
