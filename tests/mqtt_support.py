"""A Mosquitto broker of a test's own, publishing to it, and MQTT ingest run as the
leading server runs it."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from sqlalchemy import Engine, select, text

from meterhub.mqtt.config import split_secret
from meterhub.mqtt.supervisor import Supervisor
from meterhub.mqtt.tables import mqtt_status
from meterhub.registry.sources import create_source
from meterhub.registry.tags import TagSpec
from meterhub.settings import Settings
from tests.conftest import IN_CI
from tests.support import free_port, wait_until

MOSQUITTO = "/usr/sbin/mosquitto"


class Broker:
    """Mosquitto on a free port of 127.0.0.1, keeping sessions on disk across restarts."""

    def __init__(
        self, tmp: Path, settings: str = "allow_anonymous true\n", *, scheme: str = "mqtt"
    ) -> None:
        """``settings``: configuration lines after the first listener's (``port``): its TLS
        options, more listeners, who may connect. ``publisher``: ``aiomqtt.Client``
        arguments ``publish`` connects with (credentials, ``tls_context``)."""
        self.port = free_port()
        self.scheme = scheme
        self.publisher: dict[str, Any] = {}
        self.config = tmp / "mosquitto.conf"
        store = tmp / "mosquitto-data"
        store.mkdir()
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n{settings}"
            f"persistence true\npersistence_location {store}/\n"
            f"user {getpass.getuser()}\n"  # as root, it would switch to user mosquitto
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._listening, 10, 0.02)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its sessions and ends."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(timeout=10)


def need_mosquitto() -> None:
    """Skip the test without Mosquitto; fail it when CI=true."""
    if not os.access(MOSQUITTO, os.X_OK):
        problem = f"{MOSQUITTO} is missing (apt-get install mosquitto)"
        if IN_CI:
            pytest.fail(f"{problem} (CI=true requires it)")
        pytest.skip(f"{problem}; set CI=true to make this an error")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    need_mosquitto()
    found = Broker(tmp_path)
    found.start()
    yield found
    found.stop()


def publish(
    broker: Broker, messages: Sequence[tuple[str, bytes | str]], *, retain: bool = False
) -> None:
    """Publish at QoS 1, each acknowledged by the broker, in order."""

    async def send() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, **broker.publisher) as client:
            for topic, payload in messages:
                await client.publish(topic, payload, qos=1, retain=retain)

    asyncio.run(send())


def mqtt_source(
    engine: Engine, source_id: str, broker: Broker, topics: list[dict[str, Any]], **mqtt: Any
) -> None:
    """A data source subscribing to ``broker``, with a tag ``<source_id>.boiler``."""
    config = json.dumps({"mqtt": {"url": broker.url, "topics": topics, **mqtt}})
    stored, secret = split_secret(config, None)
    with engine.begin() as conn:
        tag = TagSpec(f"{source_id}.boiler")
        create_source(conn, source_id, source_id, config=stored, secret=secret, tag_specs=[tag])


class Ingest:
    """The leader's MQTT duty (``Supervisor``) on an event loop of its own thread."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._supervisor = Supervisor(engine, settings)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        self._ready.set()
        await self._supervisor.run(self._done)

    def __enter__(self) -> Ingest:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(30)
        assert not self._thread.is_alive()


def status(engine: Engine, source_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(mqtt_status).where(mqtt_status.c.source_id == source_id))
        found = row.first()
    return {} if found is None else dict(found._mapping)


def wait_for_status(engine: Engine, source_id: str, timeout: float = 10, **wanted: Any) -> None:
    try:
        wait_until(
            lambda: {key: status(engine, source_id).get(key) for key in wanted} == wanted,
            timeout,
            0.05,
        )
    except AssertionError:
        raise AssertionError(f"wanted {wanted}, status {status(engine, source_id)}") from None


def stored(engine: Engine, key: str) -> list[tuple[int, float, int]]:
    """The points of tag ``key``: (ts, value, quality), by time."""
    query = text(
        "SELECT p.ts, p.value, p.quality FROM points p JOIN tags t ON t.id = p.tag_id"
        " WHERE t.key = :key ORDER BY p.ts"
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query, {"key": key})]


def settings_for(database_url: str) -> Settings:
    return Settings(database_url=database_url, mqtt_check_interval=0.1)
