"""Storing a batch of MQTT messages in one transaction, with the source's counters.

Each message is bound to tags by the source's topic patterns and its payload decoded
(``payload``); its points are then checked as ``/smt/data/set`` checks them (known and
active tags, times within the years and the raw retention, finite values) and written
through the same path (``storage.ingest``): a point at a stored (tag, time) replaces it.
A meter's register that goes down is flagged ``REGISTER_DECREASED``, as the poller flags
it. A message that fails any check is refused whole (counted, and kept as the source's
last refusal); it never stops the batch.

Redelivery: the broker delivers again every message whose acknowledgement it did not get
(the subscriber acknowledges only once its batch is committed), with the DUP flag set. A
message carrying its time rewrites the same points. A message timed by its arrival gets
the time it arrived, recorded with its packet id and a digest of its topic and payload
in the transaction that stores it (``mqtt_arrivals``, one row per packet id); a delivery
with DUP set whose packet id and digest match the record is stored at the recorded time,
so it rewrites the same points too. Each delivery of a refused message is counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import tzinfo
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, delete, insert, select

from meterhub.collector.protocol import register_check
from meterhub.errors import InvalidInput, MeterhubError, UnknownTag
from meterhub.mqtt.client import Delivery
from meterhub.mqtt.config import CHANNEL_NAMES, MqttConfig
from meterhub.mqtt.payload import channels, excerpt, single
from meterhub.mqtt.status import Refusal, count
from meterhub.mqtt.tables import mqtt_arrivals
from meterhub.registry.channels import CHANNELS, ChannelKind
from meterhub.registry.tags import ACTIVITY_COLUMNS, ACTIVITY_JOIN, refuse_inactive, rows_by_keys
from meterhub.registry.tags import tag_key as checked_key
from meterhub.storage import Point, Quality
from meterhub.storage.ingest import check_kept, commit_points
from meterhub.storage.points import PointColumns
from meterhub.storage.series import near

_CHANNELS = {channel.name: channel for found in CHANNELS.values() for channel in found}
REGISTER = ChannelKind.REGISTER
_COLUMNS = f"t.key, t.id, t.device_pk, t.channel, {ACTIVITY_COLUMNS}"
"""What a message's tags are checked by: (key, pk, device pk, channel, then activity)."""


class _Message(NamedTuple):
    """A message bound and decoded: its tags' keys, each with its value."""

    delivery: Delivery
    values: dict[str, float]
    ts: int | None
    meter: bool
    """The keys are a meter's channels (else tags of the source itself)."""


def store_batch(
    engine: Engine,
    source_id: str,
    config: MqttConfig,
    deliveries: Sequence[Delivery],
    zone: tzinfo,
    retention_days: float | None,
) -> None:
    """Store what can be stored of ``deliveries`` and count the rest, in one transaction."""
    refused: list[Refusal] = []
    decoded: list[_Message] = []
    for delivery in deliveries:
        try:
            decoded.append(_decoded(config, delivery, zone))
        except InvalidInput as exc:
            refused.append(_refusal(delivery, exc))
    with engine.connect() as conn:
        conn.begin()  # rolled back on any error, when the connection is closed
        points, arrivals = _checked(conn, source_id, decoded, retention_days, refused)
        stored = len(deliveries) - len(refused)
        last = max(refused, key=attrgetter("at"), default=None)

        def bookkeeping(conn: Connection) -> None:
            _record(conn, source_id, arrivals)
            count(conn, source_id, stored, len(refused), last)

        commit_points(conn, PointColumns.of(points), bookkeeping)


def _checked(
    conn: Connection,
    source_id: str,
    decoded: list[_Message],
    retention_days: float | None,
    refused: list[Refusal],
) -> tuple[list[Point], list[dict[str, Any]]]:
    """The points of the messages that pass every check, register readings flagged, and
    the arrival times to record; each message that fails one is added to ``refused``."""
    keys = {key for message in decoded for key in message.values}
    tags = {row[0]: row for row in rows_by_keys(conn, _COLUMNS, ACTIVITY_JOIN, keys)}
    recorded = _recorded(conn, source_id, [m.delivery for m in decoded if m.ts is None])
    points: list[Point] = []
    arrivals: list[dict[str, Any]] = []
    for message in decoded:
        try:
            found = _points(message, tags, source_id, recorded, retention_days)
        except MeterhubError as exc:
            refused.append(_refusal(message.delivery, exc))
            continue
        points.extend(found)
        if message.ts is None:
            delivery = message.delivery
            arrivals.append({"mid": delivery.mid, "digest": _digest(delivery), "ts": found[0].ts})
    return _flagged(conn, points, tags), arrivals


def _decoded(config: MqttConfig, delivery: Delivery, zone: tzinfo) -> _Message:
    """The tag keys and values of a message; ``InvalidInput`` when it binds to no
    pattern, its payload cannot be read, or it is a retained message without a time (the
    broker sends those again on every subscription: their arrival is no reading time)."""
    binding = config.bind(delivery.topic.value)
    if binding is None:
        raise InvalidInput.field("topic", "matches none of the source's topic patterns")
    rule = config.topics[binding.rule]
    template = rule.tag_key(binding.captures)
    device = binding.captures.get("device", "")
    if template is not None:
        reading = single(delivery.payload, zone)
        keys = {checked_key(template, "tag"): reading.values[None]}
    elif rule.channel is not None:
        reading = single(delivery.payload, zone)
        keys = {f"{device}.{rule.channel}": reading.values[None]}
    else:
        reading = channels(delivery.payload, CHANNEL_NAMES, zone)
        keys = {f"{device}.{channel}": value for channel, value in reading.values.items()}
    if reading.ts is None and delivery.retain:
        raise InvalidInput.field("payload", "a retained message needs its time (ts)")
    return _Message(delivery, keys, reading.ts, template is None)


def _points(
    message: _Message,
    tags: dict[str, Any],
    source_id: str,
    recorded: dict[int, tuple[str, int]],
    retention_days: float | None,
) -> list[Point]:
    """A message's points, once every tag is known, active and its own to write."""
    rows = []
    for key in message.values:
        row = tags.get(key)
        if row is None or (row[2] is None if message.meter else row[5] != source_id):
            whose = "a meter's channel" if message.meter else f"a tag of data source {source_id}"
            raise UnknownTag(f"{key} is not {whose}")
        rows.append(row)
    refuse_inactive(rows)
    ts = message.ts if message.ts is not None else _arrival(message.delivery, recorded)
    points = [
        Point(row[1], ts, value) for row, value in zip(rows, message.values.values(), strict=True)
    ]
    check_kept(PointColumns.of(points), [len(points)], retention_days)
    return points


def _arrival(delivery: Delivery, recorded: dict[int, tuple[str, int]]) -> int:
    """The time a message timed by its arrival is stored at (see the module's rule)."""
    found = recorded.get(delivery.mid)
    if delivery.dup and found is not None and found[0] == _digest(delivery):
        return found[1]
    return delivery.received_us


def _digest(delivery: Delivery) -> str:
    topic = delivery.topic.value.encode()
    return hashlib.blake2b(topic + b"\0" + delivery.payload, digest_size=16).hexdigest()


def _recorded(
    conn: Connection, source_id: str, deliveries: list[Delivery]
) -> dict[int, tuple[str, int]]:
    """The recorded (digest, time) of the packet ids of redelivered messages."""
    mids = [delivery.mid for delivery in deliveries if delivery.dup]
    if not mids:
        return {}
    c = mqtt_arrivals.c
    query = select(c.mid, c.digest, c.ts).where(c.source_id == source_id, c.mid.in_(mids))
    return {mid: (digest, ts) for mid, digest, ts in conn.execute(query)}


def _record(conn: Connection, source_id: str, arrivals: list[dict[str, Any]]) -> None:
    if arrivals:
        c = mqtt_arrivals.c
        mids = [arrival["mid"] for arrival in arrivals]
        conn.execute(delete(mqtt_arrivals).where(c.source_id == source_id, c.mid.in_(mids)))
        latest = {arrival["mid"]: arrival for arrival in arrivals}  # a packet id reused: the last
        rows = [{"source_id": source_id, **arrival} for arrival in latest.values()]
        conn.execute(insert(mqtt_arrivals), rows)


def _flagged(conn: Connection, points: list[Point], tags: dict[str, Any]) -> list[Point]:
    """``points`` with each meter register value below the reading before it (in the batch
    or stored) flagged ``REGISTER_DECREASED``, as the poller flags it; plus the stored
    reading after each one, flagged again against it where that changes (a reading that
    arrived late, between two others)."""
    channel_of = {row[1]: _CHANNELS[row[3]] for row in tags.values() if row[3] in _CHANNELS}
    batch = {p[:2]: p for p in points if p.tag_id in channel_of}  # a (tag, time) once: the last
    registers = sorted(p for p in batch.values() if channel_of[p.tag_id].kind is REGISTER)
    if not registers:
        return points
    n = len(registers)
    found = near(
        conn, [(p.tag_id, p.ts - 1) for p in registers] + [(p.tag_id, p.ts + 1) for p in registers]
    )
    quality, rewritten = {}, []
    for i, point in enumerate(registers):
        channel = channel_of[point.tag_id]
        prior = registers[i - 1] if i and registers[i - 1].tag_id == point.tag_id else None
        before = found[i][0]
        if before is not None and (prior is None or before.ts > prior.ts):
            prior = before
        value = None if prior is None else prior.value
        quality[point[:2]] = register_check(channel, value, point.value)[0]
        following = (
            registers[i + 1] if i + 1 < n and registers[i + 1].tag_id == point.tag_id else None
        )
        after = found[n + i][1]
        if after is not None and (following is None or after.ts < following.ts):
            again = register_check(channel, point.value, after.value)[0]
            if after.quality in _REGISTER_QUALITIES and again != after.quality:
                rewritten.append(after._replace(quality=again))
    return [p._replace(quality=quality.get(p[:2], p.quality)) for p in points] + rewritten


_REGISTER_QUALITIES = (Quality.GOOD, Quality.REGISTER_DECREASED)
"""Qualities that register checks set, and may set again (any other was given)."""


def _refusal(delivery: Delivery, exc: MeterhubError) -> Refusal:
    return Refusal(delivery.topic.value, excerpt(delivery.payload), str(exc), delivery.received_us)
