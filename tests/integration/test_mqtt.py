"""MQTT ingest against a real Mosquitto of the test's own: a meter's channels and a
source's tags fed in each payload form, bad payloads counted, the broker restarted, and
messages redelivered after a crash between commit and acknowledgement stored once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from meterhub.db import metadata
from meterhub.mqtt.client import Delivery, open_client
from meterhub.mqtt.config import mqtt_section
from meterhub.mqtt.ingest import store_batch
from meterhub.mqtt.status import State, set_state
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import create_device
from meterhub.registry.sources import get_source
from meterhub.storage import Quality
from tests.mqtt_support import (
    Broker,
    Ingest,
    mqtt_source,
    publish,
    settings_for,
    status,
    stored,
    wait_for_status,
)
from tests.support import wait_until

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T_US = int(T.timestamp()) * 1_000_000
TOPICS = [
    {"pattern": "site/+/meter/{device}/energy", "channel": "kW"},
    {"pattern": "site/+/meter/{device}/current", "channel": "A"},
    {"pattern": "site/+/meter/{device}/state"},
    {"pattern": "plant/{name}/temp", "tag": "gw.{name}"},
]
GOOD = [
    ("site/a/meter/e-1/energy", "100.5"),
    ("site/a/meter/e-1/current", f'{{"ts": {T_US // 1_000_000}, "value": 5}}'),
    ("site/a/meter/e-1/state", '{"ts": "2026-03-01T12:00:01Z", "A": 6, "kW": "101"}'),
    ("site/b/meter/w-1/state", f'{{"ts": {T_US // 1000}, "V": 7.5, "rssi": -70}}'),
    ("plant/boiler/temp", f'{{"ts": {T_US}, "value": 60}}'),
    ("site/a/meter/e-1/state", '{"ts": "2026-03-01T13:00:02+01:00", "kW": 90}'),
    ("site/a/meter/e-1/current", f'{{"ts": {T_US // 1_000_000}, "value": 5.5}}'),
    ("site/a/meter/e-1/energy", f'{{"ts": {T_US + 500_000}, "value": 150}}'),  # late
]
BAD = [
    ("site/a/meter/e-1/energy", "abc"),
    ("site/a/meter/e-1/energy", "NaN"),
    ("site/a/meter/e-1/state", "{not json"),
    ("site/a/meter/nope/energy", "1"),
    ("site/a/meter/e-1/current", '{"ts": "yesterday", "value": 1}'),
    ("site/b/meter/w-1/energy", "5"),
    ("plant/other/temp", '{"value": 1}'),
]


def _meters(engine: Engine) -> None:
    with engine.begin() as conn:
        create_device(conn, "e-1", DeviceType.ELECTRICITY)
        create_device(conn, "w-1", DeviceType.WATER)


def test_a_meter_and_a_source_fed_in_every_payload_form(
    engine: Engine, database_url: str, broker: Broker
) -> None:
    _meters(engine)
    mqtt_source(engine, "gw", broker, TOPICS)
    retained = [  # sent on subscribing: kept with its time, refused without one
        ("plant/boiler/temp", f'{{"ts": {T_US - 1_000_000}, "value": 59}}'),
        ("site/r/meter/e-1/energy", "3"),
    ]
    publish(broker, retained, retain=True)
    with Ingest(engine, settings_for(database_url)):
        wait_for_status(engine, "gw", state="connected")
        publish(broker, [*GOOD[:3], *BAD[:4], *GOOD[3:], *BAD[4:]])
        wait_for_status(engine, "gw", stored=len(GOOD) + 1, bad=len(BAD) + 1)
    assert status(engine, "gw")["state"] == "stopped"

    energy = stored(engine, "e-1.kW")
    assert energy[:3] == [
        (T_US + 500_000, 150.0, Quality.GOOD),
        (T_US + 1_000_000, 101.0, Quality.REGISTER_DECREASED),  # flagged once 150 came
        (T_US + 2_000_000, 90.0, Quality.REGISTER_DECREASED),
    ]
    assert energy[3][1:] == (100.5, Quality.GOOD)  # the bare one, at its arrival
    assert energy[3][0] > T_US + 2_000_000
    assert stored(engine, "e-1.A") == [(T_US, 5.5, 0), (T_US + 1_000_000, 6.0, 0)]  # upserted
    assert stored(engine, "w-1.V") == [(T_US, 7.5, 0)]
    assert stored(engine, "gw.boiler") == [(T_US - 1_000_000, 59.0, 0), (T_US, 60.0, 0)]
    last = status(engine, "gw")
    assert (last["bad_topic"], last["bad_payload"]) == ("plant/other/temp", '{"value": 1}')
    assert "gw.other is not a tag of data source gw" in last["bad_reason"]


def test_the_broker_restarts(engine: Engine, database_url: str, broker: Broker) -> None:
    _meters(engine)
    mqtt_source(engine, "gw", broker, TOPICS)
    with Ingest(engine, settings_for(database_url)):
        wait_for_status(engine, "gw", state="connected")
        publish(broker, [("site/a/meter/e-1/energy", str(v)) for v in (1, 2)])
        wait_for_status(engine, "gw", stored=2)
        broker.stop()
        wait_for_status(engine, "gw", state="disconnected")
        assert status(engine, "gw")["last_error"]
        broker.start()
        publish(broker, [("site/a/meter/e-1/energy", str(v)) for v in (3, 4)])  # kept for it
        wait_for_status(engine, "gw", state="connected")
        # An acknowledgement the stopping broker never saved brings its message again:
        # counted as a delivery, stored at its first arrival's time, so one point still.
        wait_until(lambda: _values(engine) == [1, 2, 3, 4], 10, 0.05)
    assert status(engine, "gw")["stored"] >= 4


def _values(engine: Engine) -> list[float]:
    return [value for _, value, _ in stored(engine, "e-1.kW")]


def test_a_redelivery_after_a_crash_between_commit_and_ack_is_stored_once(
    engine: Engine, database_url: str, broker: Broker
) -> None:
    _meters(engine)
    mqtt_source(engine, "gw", broker, TOPICS)
    settings = settings_for(database_url)
    with engine.connect() as conn:
        config = mqtt_section(get_source(conn, "gw").config)
    assert config is not None
    messages = [
        ("site/a/meter/e-1/energy", "7"),
        ("site/a/meter/e-1/energy", "7"),  # the same reading again: a point of its own
        ("site/a/meter/e-1/current", f'{{"ts": {T_US}, "value": 5}}'),
        ("site/a/meter/e-1/energy", "8"),
    ]

    async def store_without_ack() -> None:
        client = open_client(config, "gw", None, None)
        async with client:
            await client.subscribe([(rule.subscription, 1) for rule in config.topics])
            await asyncio.to_thread(publish, broker, messages)
            received = [await anext(client.messages) for _ in messages]
            batch = [message for message in received if isinstance(message, Delivery)]
            assert len(batch) == len(messages)
            await asyncio.to_thread(store_batch, engine, "gw", config, batch, settings.zone, None)
        # gone without acknowledging: as a crash right after the commit

    set_state(engine, "gw", State.CONNECTING)  # the status row a subscriber makes first
    asyncio.run(store_without_ack())
    first = stored(engine, "e-1.kW"), stored(engine, "e-1.A")
    assert [len(points) for points in first] == [3, 1]
    with Ingest(engine, settings):
        wait_for_status(engine, "gw", stored=2 * len(messages), bad=0)  # each delivery
    assert (stored(engine, "e-1.kW"), stored(engine, "e-1.A")) == first


def test_migrations_create_the_tables_as_defined(engine: Engine) -> None:
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    ours = [d for d in differences if "mqtt_" in repr(d) or "secret" in repr(d)]
    assert ours == []
