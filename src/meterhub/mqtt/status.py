"""Each MQTT source's connection state and counters, kept in the database so that every
server of a cluster shows what the leader's subscriber reports."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from meterhub.mqtt.tables import mqtt_status
from meterhub.registry.sources import DataSource
from meterhub.times import now_us

STALE_US = 30_000_000
"""A running subscriber's state is confirmed every ``mqtt_check_interval`` seconds (10 at
most); unconfirmed this long, no subscriber runs."""


class State(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    """Lost or refused; retried with backoff."""
    STOPPED = "stopped"
    """The source is inactive, its settings are unusable, or no server runs subscribers."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The last message refused: where it came, what it held, and why."""

    topic: str
    payload: str
    reason: str
    at: int


@dataclass(frozen=True, slots=True)
class MqttStatus:
    state: State
    since: int
    seen_at: int
    last_error: str | None
    error_at: int | None
    stored: int
    last_stored_at: int | None
    bad: int
    last_bad: Refusal | None

    @classmethod
    def from_row(cls, row: Any) -> MqttStatus:
        m = row._mapping
        bad = None
        if m["bad_at"] is not None:
            bad = Refusal(m["bad_topic"], m["bad_payload"], m["bad_reason"], m["bad_at"])
        return cls(
            State(m["state"]),
            m["since"],
            m["seen_at"],
            m["last_error"],
            m["error_at"],
            m["stored"],
            m["last_stored_at"],
            m["bad"],
            bad,
        )

    def shown(self, now: int) -> MqttStatus:
        """As it stands: a state no running subscriber confirmed lately reads ``stopped``."""
        if self.state is not State.STOPPED and now - self.seen_at > STALE_US:
            return dataclasses.replace(self, state=State.STOPPED, since=self.seen_at)
        return self

    @property
    def connected(self) -> bool:
        return self.state is State.CONNECTED


def statuses(conn: Connection, found: Sequence[DataSource]) -> dict[str, MqttStatus]:
    """The status, as it stands, of each of ``found`` with MQTT settings (one no subscriber
    ran for yet is stopped since its creation)."""
    ids = [source.id for source in found if "mqtt" in json.loads(source.config)]
    if not ids:
        return {}
    rows = conn.execute(select(mqtt_status).where(mqtt_status.c.source_id.in_(ids)))
    now = now_us()
    known = {row.source_id: MqttStatus.from_row(row).shown(now) for row in rows}
    created = {source.id: source.created_at for source in found}
    return {id_: known.get(id_) or _never_ran(created[id_]) for id_ in ids}


def _never_ran(created_at: int) -> MqttStatus:
    return MqttStatus(State.STOPPED, created_at, created_at, None, None, 0, None, 0, None)


def set_state(engine: Engine, source_id: str, state: State, error: str | None = None) -> None:
    """Record a change of state (and the error that caused it), creating the row at first."""
    now = now_us()
    values: dict[str, Any] = {"state": state.value, "since": now, "seen_at": now}
    if error is not None:
        values |= {"last_error": error[:1000], "error_at": now}
    with engine.begin() as conn:
        changed = conn.execute(
            update(mqtt_status).where(mqtt_status.c.source_id == source_id).values(**values)
        )
        if not changed.rowcount:
            conn.execute(insert(mqtt_status).values(source_id=source_id, stored=0, bad=0, **values))


def mark_seen(engine: Engine, source_ids: Collection[str]) -> None:
    """The subscribers of ``source_ids`` run (their states hold)."""
    if source_ids:
        with engine.begin() as conn:
            query = update(mqtt_status).where(mqtt_status.c.source_id.in_(source_ids))
            conn.execute(query.values(seen_at=now_us()))


def count(conn: Connection, source_id: str, stored: int, bad: int, last: Refusal | None) -> None:
    """Add a batch's messages stored and refused, in the transaction storing it."""
    c = mqtt_status.c
    values: dict[str, Any] = {"stored": c.stored + stored, "bad": c.bad + bad}
    if stored:
        values["last_stored_at"] = now_us()
    if last is not None:
        values |= {
            "bad_topic": last.topic,
            "bad_payload": last.payload,
            "bad_reason": last.reason,
            "bad_at": last.at,
        }
    conn.execute(update(mqtt_status).where(c.source_id == source_id).values(**values))
