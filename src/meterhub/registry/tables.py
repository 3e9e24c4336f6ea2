"""Registry tables: users and their tokens, projects, houses and residents, devices
(meters) and their Modbus models, data sources, and tags (one time series each); failed
logins and bad tokens, the addresses users logged in from, and the server's own keys."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from meterhub.db import metadata

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(150), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
)

user_projects = Table(
    "user_projects",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
)

tokens = Table(
    "tokens",
    metadata,
    Column("digest", String(64), primary_key=True),  # sha256 of the whole token
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

houses = Table(
    "houses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "project_id",
        Integer,
        ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("address", Text, nullable=False),  # JSON list of 5 parts
    Column("created_at", BigInteger, nullable=False),
)

residents = Table(
    "residents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "house_id", Integer, ForeignKey("houses.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("name", String(255), nullable=False),
    Column("cellphone", String(32), nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(64), nullable=False, unique=True),
    Column("type", String(16), nullable=False),
    Column("host", String(255), nullable=True),
    Column("port", Integer, nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", BigInteger, nullable=False),
    Column("house_id", Integer, ForeignKey("houses.id", ondelete="SET NULL"), index=True),
    Column("water_kind", String(16), nullable=True),
    Column("protocol", String(8), nullable=False, default="http"),
    Column("unit_id", Integer, nullable=False, default=0),  # Modbus unit 1-247; HTTP 0
    Column("model", String(64), ForeignKey("meter_models.name"), nullable=True),
    UniqueConstraint("host", "port", "unit_id", name="uq_devices_address"),
    sqlite_autoincrement=True,
)

meter_models = Table(
    "meter_models",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("device_type", String(16), nullable=False),
    Column("definition", Text, nullable=False),  # JSON: the model's document
    Column("builtin", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
)

data_sources = Table(
    "data_sources",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("config", Text, nullable=False, default="{}"),
    Column("created_at", BigInteger, nullable=False),
    Column("secret", Text, nullable=True),  # a password its config needs; never answered
)

tags = Table(
    "tags",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False, unique=True),
    Column("device_pk", Integer, ForeignKey("devices.id", ondelete="SET NULL"), index=True),
    Column("channel", String(32), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("unit", String(32), nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("source_id", String(128), ForeignKey("data_sources.id", ondelete="CASCADE"), index=True),
    Column("tag_name", String(255), nullable=True),
    Column("parent_object_id", String(255), nullable=True),
    Column("value_type", SmallInteger, nullable=False, default=1),
    Column("scale", Float, nullable=False, default=1.0),
    Column("attributes", Text, nullable=False, default="{}"),
    Column("active", Boolean, nullable=False, default=True),
)

auth_failures = Table(
    "auth_failures",
    metadata,
    Column("key", String(255), primary_key=True),  # account:<name>, address:<ip>, token:<ip>
    Column("failures", Integer, nullable=False),  # within the window starting at window_start
    Column("window_start", BigInteger, nullable=False),
    Column("lockouts", Integer, nullable=False),  # in a row: each doubles the next one
    Column("locked_until", BigInteger, nullable=False),  # 0: never locked
)

login_origins = Table(
    "login_origins",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("address", String(64), primary_key=True),
    Column("last_login", BigInteger, nullable=False),
)

server_keys = Table(
    "server_keys",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
