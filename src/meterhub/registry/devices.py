"""Devices (meters): create, find, enable, delete; their channel tags come with them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, Row, delete, insert, select, update

from meterhub.errors import InvalidInput, NotFound
from meterhub.registry.channels import Channel, DeviceType, tag_key
from meterhub.registry.meter_models import find_model, models_by_name
from meterhub.registry.register_maps import MeterModel, device_channels
from meterhub.registry.tables import devices, houses, tags
from meterhub.times import now_us

PORT_RANGE = range(9000, 65001)
MODBUS_PORT_RANGE = range(1, 65536)
UNIT_IDS = range(1, 248)
WATER_KINDS = ("tap", "purified")


class MeterProtocol(StrEnum):
    HTTP = "http"
    MODBUS = "modbus"


@dataclass(frozen=True, slots=True)
class Wiring:
    """How a meter is read: over HTTP, or over Modbus TCP as unit ``unit_id`` of the
    gateway at its address, by the register map of meter model ``model``."""

    protocol: MeterProtocol = MeterProtocol.HTTP
    unit_id: int = 0
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Device:
    pk: int
    device_id: str
    type: DeviceType
    host: str | None
    port: int | None
    enabled: bool
    created_at: int
    house_id: int | None = None
    water_kind: str | None = None
    wiring: Wiring = Wiring()

    @classmethod
    def from_row(cls, row: Row[tuple[object, ...]]) -> Device:
        m = row._mapping
        return cls(
            pk=m["id"],
            device_id=m["device_id"],
            type=DeviceType(m["type"]),
            host=m["host"],
            port=m["port"],
            enabled=m["enabled"],
            created_at=m["created_at"],
            house_id=m["house_id"],
            water_kind=m["water_kind"],
            wiring=Wiring(MeterProtocol(m["protocol"]), m["unit_id"], m["model"]),
        )


def create_device(
    conn: Connection,
    device_id: str,
    device_type: DeviceType,
    *,
    host: str | None = None,
    port: int | None = None,
    enabled: bool = True,
    water_kind: str | None = None,
    wiring: Wiring = Wiring(),
) -> Device:
    """Register a device and its channel tags; raises ``InvalidInput`` on a taken id or
    address, a water kind (``tap`` or ``purified``, water meters only) or wiring
    (``device_problems``) that does not fit."""
    _check_new(conn, device_id, device_type, host, port, water_kind, wiring)
    pk: int = conn.execute(
        insert(devices)
        .values(
            device_id=device_id,
            type=device_type.value,
            host=host,
            port=port,
            enabled=enabled,
            created_at=now_us(),
            water_kind=water_kind,
            protocol=wiring.protocol.value,
            unit_id=wiring.unit_id,
            model=wiring.model,
        )
        .returning(devices.c.id)
    ).scalar_one()
    model = find_model(conn, wiring.model) if wiring.model else None
    _attach_channel_tags(conn, pk, device_id, device_channels(device_type, model))
    return get_device(conn, device_id)


def _check_new(
    conn: Connection,
    device_id: str,
    device_type: DeviceType,
    host: str | None,
    port: int | None,
    water_kind: str | None,
    wiring: Wiring,
) -> None:
    models = models_by_name(conn) if wiring.model else {}
    errors = device_problems(device_type, port, water_kind, wiring, models)
    if conn.execute(select(devices.c.id).where(devices.c.device_id == device_id)).first():
        errors["device_id"] = f"a device with id {device_id} already exists"
    taken = select(devices.c.device_id).where(
        devices.c.host == host, devices.c.port == port, devices.c.unit_id == wiring.unit_id
    )
    if "port" not in errors and port is not None and conn.execute(taken).first():
        errors["port"] = port_taken(host, port, wiring.unit_id)
    if errors:
        raise InvalidInput(errors)


def device_problems(
    device_type: DeviceType,
    port: int | None,
    water_kind: str | None,
    wiring: Wiring = Wiring(),
    models: Mapping[str, MeterModel] | None = None,
) -> dict[str, str]:
    """What is wrong with a device's own fields, by field (the registry's rules, which every
    way of registering a device shares): a port outside ``PORT_RANGE`` (HTTP) or 1-65535
    (Modbus), a water kind on a meter that is not a water meter, or one that is neither
    ``tap`` nor ``purified``; and its wiring (``wiring_problems``)."""
    errors: dict[str, str] = {}
    if water_kind is not None and device_type != DeviceType.WATER:
        errors["water_kind"] = f"only water meters have one, not {device_type}"
    elif water_kind is not None and water_kind not in WATER_KINDS:
        errors["water_kind"] = f"must be one of {', '.join(WATER_KINDS)}"
    ports = PORT_RANGE if wiring.protocol is MeterProtocol.HTTP else MODBUS_PORT_RANGE
    if port is not None and port not in ports:
        errors["port"] = f"must be between {ports.start} and {ports.stop - 1}"
    errors.update(wiring_problems(device_type, wiring, models or {}))
    return errors


def wiring_problems(
    device_type: DeviceType, wiring: Wiring, models: Mapping[str, MeterModel]
) -> dict[str, str]:
    """An HTTP meter has unit id 0 and no model; a Modbus meter a unit id 1-247 and a known
    model of its device type."""
    errors: dict[str, str] = {}
    if wiring.protocol is MeterProtocol.HTTP:
        if wiring.unit_id != 0:
            errors["unit_id"] = "only Modbus meters have one (HTTP meters: 0)"
        if wiring.model is not None:
            errors["model"] = "only Modbus meters have one"
        return errors
    if wiring.unit_id not in UNIT_IDS:
        errors["unit_id"] = f"a Modbus unit id is {UNIT_IDS.start}-{UNIT_IDS.stop - 1}"
    model = models.get(wiring.model) if wiring.model else None
    if wiring.model is None:
        errors["model"] = "Modbus meters need one (the meter model's name, e.g. SDM120)"
    elif model is None:
        errors["model"] = f"no meter model named {wiring.model}; see /api/v1/meter-models/"
    elif model.device_type != device_type:
        errors["model"] = (
            f"{model.name} is a model of {model.device_type} meters, not {device_type}"
        )
    return errors


def port_taken(host: str | None, port: int, unit_id: int = 0, holder: str | None = None) -> str:
    """The message for an address another meter (``holder``, when known) already has."""
    by = "another meter" if holder is None else f"meter {holder}"
    unit = f" unit {unit_id}" if unit_id else ""
    return f"port {port}{unit} on {host} is already used by {by}"


def _attach_channel_tags(
    conn: Connection, pk: int, device_id: str, channels: tuple[Channel, ...]
) -> None:
    """Create the channel tags, or re-attach those a deleted device of the same id left."""
    now = now_us()
    for channel in channels:
        key = tag_key(device_id, channel.name)
        found = conn.execute(select(tags.c.id).where(tags.c.key == key)).first()
        values = {"device_pk": pk, "channel": channel.name, "kind": channel.kind.value}
        if found:
            query = update(tags).where(tags.c.id == found.id)
            conn.execute(query.values(unit=channel.unit, **values))
        else:
            conn.execute(insert(tags).values(key=key, unit=channel.unit, created_at=now, **values))


def get_device(conn: Connection, device_id: str) -> Device:
    row = conn.execute(select(devices).where(devices.c.device_id == device_id)).first()
    if row is None:
        raise NotFound(f"no meter with id {device_id}")
    return Device.from_row(row)


def device_project(conn: Connection, device: Device) -> int | None:
    """The project of the house the device is in, if any."""
    if device.house_id is None:
        return None
    query = select(houses.c.project_id).where(houses.c.id == device.house_id)
    project_id: int | None = conn.execute(query).scalar_one_or_none()
    return project_id


def set_enabled(conn: Connection, device_id: str, enabled: bool) -> Device:
    device = get_device(conn, device_id)
    conn.execute(update(devices).where(devices.c.id == device.pk).values(enabled=enabled))
    return get_device(conn, device_id)


def delete_device(conn: Connection, device_id: str) -> None:
    """Remove a device; its tags and readings stay, detached, and return if it is re-registered."""
    device = get_device(conn, device_id)
    conn.execute(update(tags).where(tags.c.device_pk == device.pk).values(device_pk=None))
    conn.execute(delete(devices).where(devices.c.id == device.pk))


def channel_tags(conn: Connection, device_pk: int) -> dict[str, int]:
    """``{channel name: tag id}`` of one device."""
    rows = conn.execute(select(tags.c.channel, tags.c.id).where(tags.c.device_pk == device_pk))
    return {row.channel: row.id for row in rows}
