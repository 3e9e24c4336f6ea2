"""The meters one collector shard polls, read from the registry."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, ColumnElement, Connection, cast, func, select

from meterhub.collector.health import Health
from meterhub.collector.health_store import health_from_row, meter_status
from meterhub.collector.intervals import phase
from meterhub.registry.channels import Channel, ChannelKind, DeviceType
from meterhub.registry.devices import MeterProtocol, Wiring
from meterhub.registry.meter_models import models_by_name
from meterhub.registry.register_maps import MeterModel, device_channels
from meterhub.registry.tables import devices, tags
from meterhub.storage import latest


@dataclass(slots=True)
class Target:
    """One meter as the poller sees it, with the state it carries between polls."""

    pk: int
    device_id: str
    host: str
    port: int
    channels: tuple[Channel, ...]
    tag_ids: dict[str, int]
    health: Health = field(default_factory=Health)
    registers: dict[str, float] = field(default_factory=dict)
    wiring: Wiring = field(default_factory=Wiring)
    model: MeterModel | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where it is read: its own address, or its Modbus gateway's."""
        return (self.host, self.port)

    @property
    def place(self) -> tuple[str, int, int]:
        """What makes it unique: its address and unit id."""
        return (self.host, self.port, self.wiring.unit_id)

    def phase(self, interval: float) -> float:
        """Its stable offset in [0, interval) (``intervals.phase``)."""
        return phase(self.device_id, interval)


def _shard_filter(
    shard: int, shards: int, pks: Collection[int] | None = None
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [devices.c.enabled.is_(True), devices.c.port.is_not(None)]
    if shards > 1:
        where.append(devices.c.id % shards == shard)
    if pks is not None:
        where.append(devices.c.id.in_(list(pks)))
    return where


def registry_signature(conn: Connection, shard: int, shards: int) -> tuple[int, int, int]:
    """A cheap fingerprint of the shard's meter set: it changes when meters come or go, and
    when one moves to another port or unit (a host alone changing waits for the periodic
    reload)."""
    moves = cast(devices.c.id, BigInteger) * (devices.c.port * 256 + devices.c.unit_id)
    query = select(
        func.count(),
        func.coalesce(func.sum(devices.c.id), 0),
        func.coalesce(func.sum(moves), 0),
    )
    count, total, placed = conn.execute(query.where(*_shard_filter(shard, shards))).one()
    return int(count), int(total), int(placed)


def load_targets(
    conn: Connection, shard: int, shards: int, known: set[int], pks: Collection[int] | None = None
) -> list[Target]:
    """Every enabled meter of the shard (and among ``pks``, if given) with an address; new
    ones get saved health and registers."""
    query = (
        select(devices, tags.c.channel, tags.c.id.label("tag_id"), *meter_status.c)
        .join(tags, tags.c.device_pk == devices.c.id)
        .outerjoin(meter_status, meter_status.c.device_pk == devices.c.id)
        .where(*_shard_filter(shard, shards, pks))
    )
    by_pk: dict[int, Target] = {}
    models = models_by_name(conn)
    for row in conn.execute(query):
        m = row._mapping
        target = by_pk.get(m["id"])
        if target is None:
            model = models[m["model"]] if m["model"] else None
            target = by_pk[m["id"]] = Target(
                pk=m["id"],
                device_id=m["device_id"],
                host=m["host"],
                port=m["port"],
                channels=device_channels(DeviceType(m["type"]), model),
                tag_ids={},
                health=health_from_row(m) if m["id"] not in known else Health(),
                wiring=Wiring(MeterProtocol(m["protocol"]), m["unit_id"], m["model"]),
                model=model,
            )
        target.tag_ids[m["channel"]] = m["tag_id"]
    _load_registers(conn, [t for t in by_pk.values() if t.pk not in known])
    return list(by_pk.values())


def _load_registers(conn: Connection, targets: list[Target]) -> None:
    register_tags = {
        target.tag_ids[channel.name]: (target, channel.name)
        for target in targets
        for channel in target.channels
        if channel.kind is ChannelKind.REGISTER and channel.name in target.tag_ids
    }
    for tag_id, point in latest(conn, list(register_tags)).items():
        target, name = register_tags[tag_id]
        target.registers[name] = point.value
