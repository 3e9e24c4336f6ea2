"""Benchmark: MQTT messages stored per second by meterhub's subscriber, against a bare
aiomqtt subscriber that stores nothing, in the same run and on the same broker.

Run: .venv/bin/python bench/mqtt_ingest.py [--messages N] [--meters M] [--inflight K]
                                           [--database URL]

Starts a Mosquitto of its own (``/usr/sbin/mosquitto``) on a free port of 127.0.0.1, with
no limit on the messages it queues for a session. For each subscriber in turn, the session
is made (clean session off, subscribed at QoS 1), N messages are published to it while it
is away (``{"ts", "value"}`` for M meters' energy channel, each at a time of its own), and
the subscriber then connects and drains the backlog: the time from connecting to the last
message received (bare) or committed (meterhub, as ``serve``'s leader runs it: one
subscriber, batches of what arrived while the last was written, a PUBACK per message once
committed). Prints both rates and their ratio; stops by itself (at most ``--timeout``
seconds a subscriber). The database is a fresh SQLite file unless ``--database`` names an
empty PostgreSQL database.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import aiomqtt
from sqlalchemy import Engine, select, update

from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.mqtt.config import split_secret
from meterhub.mqtt.supervisor import Supervisor
from meterhub.mqtt.tables import mqtt_status
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import create_device
from meterhub.registry.sources import create_source
from meterhub.registry.tables import data_sources
from meterhub.settings import Settings

MOSQUITTO = "/usr/sbin/mosquitto"
PATTERN = "bench/{device}/energy"
FILTER = "bench/+/energy"
T0_US = 1_772_366_400_000_000  # 2026-03-01T12:00:00Z


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_broker(folder: Path, port: int, inflight: int) -> subprocess.Popen[bytes]:
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
        f"max_inflight_messages {inflight}\nuser {getpass.getuser()}\n"
    )
    broker = subprocess.Popen([MOSQUITTO, "-c", str(config)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return broker
        except OSError:
            time.sleep(0.02)
    broker.kill()
    raise SystemExit("mosquitto did not start")


async def make_session(port: int, client_id: str) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, clean_session=False) as c:
        await c.subscribe(FILTER, qos=1)


async def publish_backlog(port: int, messages: int, meters: int, offset: int) -> None:
    """``messages`` at QoS 1, up to 1,000 awaiting their PUBACK at once."""
    async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=1000) as client:
        client.pending_calls_threshold = 1000
        for start in range(0, messages, 1000):
            await asyncio.gather(
                *(
                    client.publish(
                        f"bench/m-{n % meters}/energy",
                        json.dumps({"ts": T0_US + offset + n, "value": n}),
                        qos=1,
                    )
                    for n in range(start, min(start + 1000, messages))
                )
            )


async def bare(port: int, messages: int, timeout: float) -> float:
    """Seconds a bare subscriber takes to receive the backlog (acknowledged on receipt)."""
    started = time.perf_counter()
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-bare", clean_session=False) as c:
        await c.subscribe(FILTER, qos=1)
        received = 0
        async with asyncio.timeout(timeout):
            async for _ in c.messages:
                received += 1
                if received == messages:
                    break
    return time.perf_counter() - started


def prepare(engine: Engine, port: int, meters: int) -> None:
    config = json.dumps(
        {
            "mqtt": {
                "url": f"mqtt://127.0.0.1:{port}",
                "client_id": "bench-meterhub",
                "topics": [{"pattern": PATTERN, "channel": "kW"}],
            }
        }
    )
    stored, secret = split_secret(config, None)
    with engine.begin() as conn:
        for n in range(meters):
            create_device(conn, f"m-{n}", DeviceType.ELECTRICITY)
        create_source(conn, "bench", "bench", active=False, config=stored, secret=secret)


def stored_count(engine: Engine) -> int:
    with engine.connect() as conn:
        query = select(mqtt_status.c.stored).where(mqtt_status.c.source_id == "bench")
        return conn.execute(query).scalar() or 0


async def meterhub(engine: Engine, settings: Settings, messages: int, timeout: float) -> float:
    """Seconds meterhub's subscriber takes to store the backlog (from its start)."""
    with engine.begin() as conn:
        conn.execute(update(data_sources).values(active=True))
    done = asyncio.Event()
    started = time.perf_counter()
    running = asyncio.create_task(Supervisor(engine, settings).run(done))
    try:
        async with asyncio.timeout(timeout):
            while True:
                if await asyncio.to_thread(stored_count, engine) >= messages:
                    break
                await asyncio.sleep(0.02)
        return time.perf_counter() - started
    finally:
        done.set()
        await running


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--database", help="an empty PostgreSQL database (default: SQLite)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--inflight",
        type=int,
        default=20,
        help="messages the broker sends a subscriber before its PUBACKs (Mosquitto's default)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = args.database or f"sqlite:///{folder / 'meterhub.db'}"
        port = free_port()
        broker = start_broker(folder, port, args.inflight)
        try:
            upgrade(url)
            settings = Settings(database_url=url, mqtt_check_interval=0.05)
            engine = make_engine(settings.database_url)
            prepare(engine, port, args.meters)
            await make_session(port, "bench-bare")
            await make_session(port, "bench-meterhub")
            await publish_backlog(port, args.messages, args.meters, 0)  # to both sessions
            bare_s = await bare(port, args.messages, args.timeout)
            ours_s = await meterhub(engine, settings, args.messages, args.timeout)
            engine.dispose()
        finally:
            broker.send_signal(signal.SIGTERM)
            broker.wait(10)
    database = "PostgreSQL" if url.startswith("postgres") else "SQLite"
    bare_rate, ours_rate = args.messages / bare_s, args.messages / ours_s
    print(
        f"{args.messages} QoS 1 messages, {args.meters} meters, {database}, "
        f"broker max_inflight_messages {args.inflight}"
    )
    print(f"bare aiomqtt subscriber (stores nothing): {bare_rate:10,.0f} messages/s")
    print(f"meterhub MQTT ingest (stored, committed): {ours_rate:10,.0f} messages/s")
    print(f"ratio meterhub / bare: {ours_rate / bare_rate:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
