"""MQTT ingest's tables: each source's connection state and counters, and the arrival
times of messages stored but perhaps not yet acknowledged to the broker."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from meterhub.db import metadata

mqtt_status = Table(
    "mqtt_status",
    metadata,
    Column(
        "source_id",
        String(128),
        ForeignKey("data_sources.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("state", String(16), nullable=False),  # connecting, connected, disconnected, stopped
    Column("since", BigInteger, nullable=False),  # µs of the last change of state
    Column("seen_at", BigInteger, nullable=False),  # µs the running subscriber last said so
    Column("last_error", Text, nullable=True),
    Column("error_at", BigInteger, nullable=True),
    Column("stored", BigInteger, nullable=False),  # messages stored
    Column("last_stored_at", BigInteger, nullable=True),
    Column("bad", BigInteger, nullable=False),  # messages refused
    Column("bad_topic", Text, nullable=True),
    Column("bad_payload", Text, nullable=True),  # an excerpt
    Column("bad_reason", Text, nullable=True),
    Column("bad_at", BigInteger, nullable=True),
)

mqtt_arrivals = Table(
    "mqtt_arrivals",
    metadata,
    Column(
        "source_id", String(128), ForeignKey("data_sources.id", ondelete="CASCADE"), nullable=False
    ),
    Column("mid", Integer, nullable=False),  # the broker's packet id of the delivery
    Column("digest", String(32), nullable=False),  # of its topic and payload
    Column("ts", BigInteger, nullable=False),  # the time its values were stored at
    PrimaryKeyConstraint("source_id", "mid", name="pk_mqtt_arrivals"),
)
