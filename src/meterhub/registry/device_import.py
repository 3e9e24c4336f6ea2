"""Registering and updating many devices at once (bulk requests, CSV files).

Every row is checked first, against the stored devices and against the other rows, and
every problem of every row is reported (``InvalidInput`` keyed by row and field, as the
caller names them); only when there is none is anything written, by a few set-based
statements in the caller's transaction.

A row names a device by ``device_id`` and gives some of its fields (``ROW_FIELDS``):

- a new device id registers a device, as ``devices.create_device`` would; fields the row
  leaves out take their defaults (electricity, enabled, no address, no house);
- a known device id updates that device: the fields the row gives replace the stored ones,
  and those it leaves out keep their values. A row equal to the stored device changes
  nothing, so importing the same rows again is a no-op. A device's type never changes.

The rules are the registry's for one device (``devices.device_problems``: port range,
water kinds), plus a device's address (host and port) and id being its own: two rows may
not share either, nor may a row take the address of a device it does not name (unless
another row moves that device away). An address is (host, port, unit id): the Modbus
units behind one gateway share its host and port. Like its type, a device's protocol and
meter model never change (its channel tags come from them). A row naming a house puts
the device there; a water meter in a house needs a water kind (``projects.assign_device``'s rule).
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection

from meterhub.db import insert_rows
from meterhub.errors import InvalidInput
from meterhub.registry.channels import Channel, DeviceType, tag_key
from meterhub.registry.devices import (
    WATER_KINDS,
    MeterProtocol,
    Wiring,
    device_problems,
    port_taken,
)
from meterhub.registry.meter_models import models_by_name
from meterhub.registry.register_maps import MeterModel, device_channels
from meterhub.times import now_us

ROW_FIELDS = (
    "type",
    "host",
    "port",
    "enabled",
    "water_kind",
    "house_id",
    "protocol",
    "unit_id",
    "model",
)
"""The fields a row may give besides ``device_id``."""
Progress = Callable[[str, int, int], None]
"""Called with (what, done, total) as an import goes: ``checked`` once, ``stored`` per batch."""


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One row: its number as the caller reports it (list index, file line), the device id
    and the fields it gives (a subset of ``ROW_FIELDS``; ``None`` is a value: no address,
    no water kind, no house)."""

    number: int
    device_id: str
    given: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RowNames:
    """How errors name a row (``[3]``, ``line 4``) and a field of it (``[3].port``,
    ``line 4: port``); a problem of the whole row goes by the row's name."""

    row_format: str
    field_format: str

    def row(self, number: int) -> str:
        return self.row_format.format(number)

    def field(self, number: int, name: str) -> str:
        return self.field_format.format(number, name) if name else self.row(number)


class ImportCounts(NamedTuple):
    created: int
    updated: int
    unchanged: int


class _State(NamedTuple):
    """A device's registry fields, stored or as a row leaves them."""

    type: DeviceType
    host: str | None
    port: int | None
    enabled: bool
    water_kind: str | None
    house_id: int | None
    wiring: Wiring


_NEW = _State(DeviceType.ELECTRICITY, None, None, True, None, None, Wiring())


class _Stored(NamedTuple):
    pk: int
    state: _State


@dataclass(slots=True)
class _Plan:
    """What the rows come to: each row's resulting state, the errors by key."""

    rows: Sequence[DeviceRow]
    names: RowNames
    stored: dict[str, _Stored]
    models: dict[str, MeterModel]
    states: list[_State]
    errors: dict[tuple[int, str], list[str]]

    def error(self, row: DeviceRow, name: str, message: str) -> None:
        self.errors.setdefault((row.number, name), []).append(message)

    def invalid(self) -> InvalidInput:
        """Every error, by row then field as ``RowNames`` names them."""
        order = {name: i for i, name in enumerate(("device_id", *ROW_FIELDS))}
        keys = sorted(self.errors, key=lambda k: (k[0], order.get(k[1], len(order)), k[1]))
        return InvalidInput({self.names.field(*key): self.errors[key] for key in keys})


def import_devices(
    conn: Connection,
    rows: Sequence[DeviceRow],
    *,
    names: RowNames,
    default_host: str,
    errors: Mapping[tuple[int, str], list[str]] | None = None,
    progress: Progress | None = None,
) -> ImportCounts:
    """Register or update the devices of ``rows`` (see the module), all or none.

    ``errors`` (``{(row number, field): messages}``), found by the caller in rows it could
    not read, are reported with those found here. A row giving a port but no host, for a
    device that has no host yet, is at ``default_host``. ``InvalidInput`` names every
    problem of every row; nothing is stored then.
    """
    found = _stored(conn, [r.device_id for r in rows])
    plan = _Plan(rows, names, found, models_by_name(conn), [], dict(errors or {}))
    _repeated(plan, "device_id", {row.number: row.device_id for row in rows}, "device id")
    plan.states = [_resolve(plan, row, default_host) for row in rows]
    _check_houses(conn, plan)
    _check_addresses(conn, plan)
    if progress:
        progress("checked", len(rows), len(rows))
    if plan.errors:
        raise plan.invalid()
    new = [
        (r.device_id, s)
        for r, s in zip(rows, plan.states, strict=True)
        if r.device_id not in plan.stored
    ]
    changed = [
        (plan.stored[r.device_id].pk, plan.stored[r.device_id].state, s)
        for r, s in zip(rows, plan.states, strict=True)
        if r.device_id in plan.stored and s != plan.stored[r.device_id].state
    ]
    dbapi_errors = conn.dialect.loaded_dbapi.IntegrityError
    stored = _storing(progress, len(changed) + len(new))
    try:
        _update(conn, changed)
        stored(len(changed))
        _create(conn, new, plan.models, stored)
    except dbapi_errors as exc:  # another writer took an id or an address since the checks
        raise InvalidInput.field(
            "body", f"changed by someone else meanwhile, nothing stored; send again ({exc})"
        ) from None
    return ImportCounts(len(new), len(changed), len(rows) - len(new) - len(changed))


def _resolve(plan: _Plan, row: DeviceRow, default_host: str) -> _State:
    """The state ``row`` leaves its device in (stored fields under the given ones; a known
    meter keeps its type); errors of its own fields go to ``plan``."""
    found = plan.stored.get(row.device_id)
    old = found.state if found else _NEW
    given = row.given
    kind: DeviceType = given.get("type", old.type)
    port: int | None = given.get("port", old.port)
    host: str | None = given.get("host") or None
    wiring = Wiring(
        MeterProtocol(given.get("protocol", old.wiring.protocol)),
        given.get("unit_id", old.wiring.unit_id),
        given.get("model", old.wiring.model),
    )
    problems: dict[str, str] = {}
    for name, before, after in (
        ("type", old.type, kind),
        ("protocol", old.wiring.protocol, wiring.protocol),
        ("model", old.wiring.model, wiring.model),
    ):
        if found and before != after:
            problems[name] = (
                f"meter {row.device_id} has {name} {before}; its {name} cannot change (delete "
                "the meter and register it again)"
            )
    if found:
        kind, wiring = old.type, Wiring(old.wiring.protocol, wiring.unit_id, old.wiring.model)
    water_kind = given.get("water_kind", old.water_kind)
    problems.update(device_problems(kind, port, water_kind, wiring, plan.models))
    if host is not None and port is None:
        problems["port"] = "required when host is given"
    elif port is not None and host is None:
        host = (old.host if "host" not in given else None) or default_host
    state = _State(
        kind,
        host if port is not None else None,
        port,
        given.get("enabled", old.enabled),
        given.get("water_kind", old.water_kind),
        given.get("house_id", old.house_id),
        wiring,
    )
    if state.house_id is not None and kind == DeviceType.WATER and state.water_kind is None:
        problems.setdefault(
            "water_kind", f"water meters in a house need one of {', '.join(WATER_KINDS)}"
        )
    for name, message in problems.items():
        plan.error(row, name, message)
    return state


def _repeated(plan: _Plan, name: str, keys: Mapping[int, object], what: str) -> None:
    """An error on each row whose key (``keys``: by row number) another row has too."""
    first: dict[object, int] = {}
    numbers: dict[object, list[int]] = defaultdict(list)
    for number, key in keys.items():
        seen = first.setdefault(key, number)
        if seen != number:
            numbers[key].append(number)
    if not numbers:
        return
    by_number = {row.number: row for row in plan.rows}
    for key, more in numbers.items():
        found = [first[key], *more]
        shown = _address_text(key) if isinstance(key, tuple) else key
        for number in found:
            others = ", ".join(plan.names.row(n) for n in found if n != number)
            plan.error(by_number[number], name, f"the same {what} {shown} as {others}")


def _address_text(address: tuple[object, ...]) -> str:
    host, port, unit_id = address
    return f"{port} unit {unit_id} on {host}" if unit_id else f"{port} on {host}"


def _check_houses(conn: Connection, plan: _Plan) -> None:
    wanted = {s.house_id for s in plan.states if s.house_id is not None}
    known = {row[0] for row in _lookup(conn, "houses", "t.id", "id", wanted, "integer")}
    for row, state in zip(plan.rows, plan.states, strict=True):
        if state.house_id is not None and state.house_id not in known:
            plan.error(row, "house_id", f"no house with id {state.house_id}")


def _check_addresses(conn: Connection, plan: _Plan) -> None:
    """No two rows at one address; none at the address of a device no row names."""
    addresses = {
        row.number: (state.host, state.port, state.wiring.unit_id)
        for row, state in zip(plan.rows, plan.states, strict=True)
        if state.port is not None
    }
    _repeated(plan, "port", addresses, "port")
    named = {row.device_id for row in plan.rows}
    holders = _address_holders(conn, set(addresses.values()))
    for row in plan.rows:
        address = addresses.get(row.number)
        holder = holders.get(address) if address else None
        if address and holder is not None and holder not in named:
            plan.error(row, "port", port_taken(*address, holder))


# --- reading: one driver-level query each, the keys sent as one JSON array --------------


def _cursor(conn: Connection) -> contextlib.closing[Any]:
    driver = conn.connection.driver_connection
    return contextlib.closing(driver.cursor())  # type: ignore[union-attr]


def _lookup(
    conn: Connection, table: str, columns: str, key: str, keys: Collection[Any], pg_type: str
) -> list[Any]:
    """Rows of ``columns`` (of ``t``, the table) whose ``key`` is one of ``keys``."""
    if not keys:
        return []
    if conn.dialect.name == "postgresql":
        sql = (
            f"SELECT {columns} FROM json_array_elements_text(%s::json) j(k)"
            f" JOIN {table} t ON t.{key} = j.k::{pg_type}"
        )
    else:
        sql = f"SELECT {columns} FROM json_each(?) j JOIN {table} t ON t.{key} = j.value"
    with _cursor(conn) as cursor:
        cursor.execute(sql, (json.dumps(list(keys)),))
        return list(cursor.fetchall())


_TYPES = {kind.value: kind for kind in DeviceType}
_DEVICE_COLUMNS = (
    "t.id, t.device_id, t.type, t.host, t.port, t.enabled, t.water_kind, t.house_id,"
    " t.protocol, t.unit_id, t.model"
)


def _stored(conn: Connection, device_ids: Iterable[str]) -> dict[str, _Stored]:
    rows = _lookup(conn, "devices", _DEVICE_COLUMNS, "device_id", set(device_ids), "text")
    return {
        device_id: _Stored(
            pk,
            _State(
                _TYPES[kind],
                host,
                port,
                bool(on),
                water,
                house,
                Wiring(MeterProtocol(protocol), unit_id, model),
            ),
        )
        for pk, device_id, kind, host, port, on, water, house, protocol, unit_id, model in rows
    }


Address = tuple[str | None, int | None, int]


def _address_holders(conn: Connection, addresses: Collection[Address]) -> dict[Address, str]:
    """``{(host, port, unit id): device id}`` of the stored devices at any of ``addresses``."""
    if not addresses:
        return {}
    if conn.dialect.name == "postgresql":
        sql = (
            "SELECT d.host, d.port, d.unit_id, d.device_id FROM json_array_elements(%s::json)"
            " j(a) JOIN devices d ON d.host = j.a->>0 AND d.port = (j.a->>1)::integer"
            " AND d.unit_id = (j.a->>2)::integer"
        )
    else:
        sql = (
            "SELECT d.host, d.port, d.unit_id, d.device_id FROM json_each(?) j JOIN devices d"
            " ON d.host = j.value ->> 0 AND d.port = j.value ->> 1 AND d.unit_id = j.value ->> 2"
        )
    with _cursor(conn) as cursor:
        cursor.execute(sql, (json.dumps([list(a) for a in addresses]),))
        return {(host, port, unit): device_id for host, port, unit, device_id in cursor.fetchall()}


# --- writing: set-based statements -------------------------------------------------------

_NEW_DEVICE = ("device_id", *ROW_FIELDS)
_NEW_TAG = (
    "key",
    "device_pk",
    "channel",
    "kind",
    "unit",
    "created_at",
    "value_type",
    "scale",
    "attributes",
    "active",
)
BATCH = 10_000
"""Rows per insert call (a progress step)."""


def _storing(progress: Progress | None, total: int) -> Callable[[int], None]:
    """Reports ``stored`` steps: ``step(n)`` after n more rows are written."""
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress("stored", done, total)

    return step


def _create(
    conn: Connection,
    new: Sequence[tuple[str, _State]],
    models: Mapping[str, MeterModel],
    stored: Callable[[int], None],
) -> None:
    """Insert the new devices, then their channel tags (re-attaching those a deleted device
    of the same id left, as ``devices.create_device`` does)."""
    now = now_us()
    for start in range(0, len(new), BATCH):
        batch = new[start : start + BATCH]
        device_rows = [
            (
                device_id,
                s.type.value,
                s.host,
                s.port,
                s.enabled,
                s.water_kind,
                s.house_id,
                s.wiring.protocol.value,
                s.wiring.unit_id,
                s.wiring.model,
                now,
            )
            for device_id, s in batch
        ]
        insert_rows(conn, "devices", (*_NEW_DEVICE, "created_at"), device_rows)
        channels = [
            (device_id, device_channels(s.type, models.get(s.wiring.model or "")))
            for device_id, s in batch
        ]
        _attach_tags(conn, channels, now)
        stored(len(batch))


def _attach_tags(
    conn: Connection, devices: Sequence[tuple[str, tuple[Channel, ...]]], now: int
) -> None:
    found = _lookup(
        conn, "devices", "t.id, t.device_id", "device_id", [d for d, _ in devices], "text"
    )
    pks = {device_id: pk for pk, device_id in found}
    wanted = {
        tag_key(device_id, channel.name): (pks[device_id], channel)
        for device_id, channels in devices
        for channel in channels
    }
    left = dict(_lookup(conn, "tags", "t.key, t.id", "key", list(wanted), "text"))
    if left:
        reattached = [
            (
                wanted[key][0],
                wanted[key][1].name,
                wanted[key][1].kind.value,
                wanted[key][1].unit,
                pk,
            )
            for key, pk in left.items()
        ]
        _execute_many(
            conn,
            "UPDATE tags SET device_pk = ?, channel = ?, kind = ?, unit = ? WHERE id = ?",
            reattached,
        )
    rows = [
        (key, pk, channel.name, channel.kind.value, channel.unit, now, 1, 1.0, "{}", True)
        for key, (pk, channel) in wanted.items()
        if key not in left
    ]
    insert_rows(conn, "tags", _NEW_TAG, rows)


def _update(conn: Connection, changed: Sequence[tuple[int, _State, _State]]) -> None:
    """Store the changed devices' new fields; addresses that change are first let go of
    all at once, so devices may swap or pass on addresses within one import."""
    moving = [
        pk
        for pk, old, new in changed
        if old.port is not None
        and (new.host, new.port, new.wiring.unit_id) != (old.host, old.port, old.wiring.unit_id)
    ]
    rows = [
        (pk, s.host, s.port, s.enabled, s.water_kind, s.house_id, s.wiring.unit_id)
        for pk, _, s in changed
    ]
    if conn.dialect.name != "postgresql":  # statements prepared once, run in-process
        _execute_many(conn, "UPDATE devices SET port = NULL WHERE id = ?", [(pk,) for pk in moving])
        _execute_many(
            conn,
            "UPDATE devices SET host = ?2, port = ?3, enabled = ?4, water_kind = ?5,"
            " house_id = ?6, unit_id = ?7 WHERE id = ?1",
            rows,
        )
        return
    with _cursor(conn) as cursor:
        if moving:
            cursor.execute(
                "UPDATE devices SET port = NULL WHERE id IN"
                " (SELECT value::integer FROM json_array_elements_text(%s::json))",
                (json.dumps(moving),),
            )
        if rows:
            cursor.execute(_PG_UPDATE, (json.dumps(rows),))


_PG_UPDATE = """
UPDATE devices d SET host = j.host, port = j.port, enabled = j.enabled,
  water_kind = j.water_kind, house_id = j.house_id, unit_id = j.unit_id
FROM (SELECT (r->>0)::integer AS id, r->>1 AS host, (r->>2)::integer AS port,
        (r->>3)::boolean AS enabled, r->>4 AS water_kind, (r->>5)::integer AS house_id,
        (r->>6)::integer AS unit_id
      FROM json_array_elements(%s::json) r) j
WHERE d.id = j.id
"""


def _execute_many(conn: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """``sql`` (``?`` placeholders) once per row, by the driver's executemany."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        sql = sql.replace("?", "%s")
    with _cursor(conn) as cursor:
        cursor.executemany(sql, rows)
