"""A meter on the wire, one (``MeterCreate``) or many: a JSON list of ``MeterImport`` or a
CSV file (``registry.meter_csv``), read into registry rows and imported all or nothing
(``registry.device_import``). The API, the dashboard and the CLI share these.

Each row is checked as ``POST /api/v1/meters/`` checks one meter; errors are keyed by the
row (JSON: its index in the list, ``[3].port``; CSV: its line, ``line 4: port``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection
from starlette.requests import Request

from meterhub.api.deps import MAX_ROW_ID
from meterhub.errors import InvalidInput, TooLarge
from meterhub.registry.channels import DeviceType
from meterhub.registry.device_import import (
    DeviceRow,
    ImportCounts,
    Progress,
    RowNames,
    import_devices,
)
from meterhub.registry.devices import UNIT_IDS, MeterProtocol, Wiring
from meterhub.registry.meter_csv import NAMES as CSV_NAMES
from meterhub.registry.meter_csv import read_csv
from meterhub.settings import Settings

DeviceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
Host = Annotated[str, Field(max_length=255, pattern=r"^[A-Za-z0-9._:\[\]-]*$")]
JSON_NAMES = RowNames("[{}]", "[{}].{}")
"""How errors name an item of a JSON list and its fields: by its index."""

PROGRESS_STEP = 5000
"""Rows read between two progress reports."""


class MeterCreate(BaseModel):
    device_id: DeviceId
    type: DeviceType = DeviceType.ELECTRICITY
    host: Host | None = Field(None, description="Defaults to the configured meter host.")
    port: int | None = Field(
        None, ge=1, le=65535, description="HTTP: 9000-65000; Modbus: any. None: not polled."
    )
    enabled: bool = True
    water_kind: str | None = Field(
        None, max_length=16, description="Water meters only: tap or purified."
    )
    protocol: MeterProtocol = MeterProtocol.HTTP
    unit_id: int = Field(
        0, ge=0, le=UNIT_IDS.stop - 1, description="Modbus: the unit id, 1-247; HTTP: 0."
    )
    model: str | None = Field(
        None, max_length=64, description="Modbus: the meter model (see /api/v1/meter-models/)."
    )

    @property
    def wiring(self) -> Wiring:
        return Wiring(self.protocol, self.unit_id, self.model)


class MeterImport(MeterCreate):
    """A meter of a bulk import. For a meter not registered yet, fields left out take their
    defaults; for a registered one they keep their stored values, and those given replace
    them (a meter's type never changes)."""

    model_config = ConfigDict(extra="forbid")

    house_id: int | None = Field(
        None, ge=1, le=MAX_ROW_ID, description="The house the meter is in; null: none."
    )


class MetersImported(BaseModel):
    """What an import did: meters registered, meters changed, rows equal to their meter."""

    created: int
    updated: int
    unchanged: int

    @classmethod
    def of(cls, counts: ImportCounts) -> MetersImported:
        return cls(created=counts.created, updated=counts.updated, unchanged=counts.unchanged)


async def read_bounded(request: Request, limit: int) -> bytes:
    """The request's body; ``TooLarge`` (413) once it is over ``limit`` bytes, by its
    declared length or as it arrives (the rest is not read)."""
    declared = request.headers.get("content-length", "")
    body = bytearray()
    if not (declared.isdigit() and int(declared) > limit):
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                break
        else:
            return bytes(body)
    raise TooLarge.field(
        "body", f"over {limit} bytes; send at most that much per request (METERHUB_BULK_MAX_BYTES)"
    )


def check_rows(count: int, limit: int | None) -> None:
    """``TooLarge`` (413) for more than ``limit`` rows in one request."""
    if limit is not None and count > limit:
        raise TooLarge.field(
            "body",
            f"{count} meters; at most {limit} per request (METERHUB_BULK_MAX_ROWS): split the list",
        )


def import_json(conn: Connection, body: bytes, settings: Settings) -> MetersImported:
    """Import the JSON list of meters ``body`` holds (``POST /api/v1/meters/bulk``)."""
    try:
        items = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidInput.field("body", f"malformed JSON: {exc}") from None
    if not isinstance(items, list):
        raise InvalidInput.field("body", "must be a JSON list of meters")
    check_rows(len(items), settings.bulk_max_rows)
    return import_items(conn, list(enumerate(items)), JSON_NAMES, settings)


def import_csv(
    conn: Connection,
    data: bytes,
    settings: Settings,
    *,
    bounded: bool = True,
    progress: Progress | None = None,
) -> MetersImported:
    """Import a meter CSV file (``registry.meter_csv``); ``bounded``: at most
    ``settings.bulk_max_rows`` rows."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput.field(CSV_NAMES.row(line), "not UTF-8 text") from None
    found = read_csv(text)
    check_rows(len(found.rows) + len(found.errors), settings.bulk_max_rows if bounded else None)
    return import_items(conn, found.rows, CSV_NAMES, settings, found.errors, progress)


def import_items(
    conn: Connection,
    items: Sequence[tuple[int, Any]],
    names: RowNames,
    settings: Settings,
    errors: Mapping[tuple[int, str], list[str]] | None = None,
    progress: Progress | None = None,
) -> MetersImported:
    """Check each ``(row number, item)`` as a ``MeterImport``, then import them all (or,
    with any error, none)."""
    found: dict[tuple[int, str], list[str]] = dict(errors or {})
    rows: list[DeviceRow] = []
    for i, (number, item) in enumerate(items):
        if progress and i % PROGRESS_STEP == 0:
            progress("read", i, len(items))
        row = _row(number, item, found)
        if row is not None:
            rows.append(row)
    if progress:
        progress("read", len(items), len(items))
    counts = import_devices(
        conn,
        rows,
        names=names,
        default_host=settings.meter_host,
        errors=found,
        progress=progress,
    )
    return MetersImported.of(counts)


def _row(number: int, item: Any, errors: dict[tuple[int, str], list[str]]) -> DeviceRow | None:
    """The registry row of one item; with its errors added when it is not one, ``None``, or
    only its device id (if that is valid), so a repeat of the id is named too."""
    if not isinstance(item, dict):
        errors[(number, "")] = ["must be an object with a device_id"]
        return None
    try:
        meter = MeterImport.model_validate(item)
    except ValidationError as exc:
        names: set[str] = set()
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            errors.setdefault((number, name), []).append(_message(error))
            names.add(name)
        return None if "device_id" in names else DeviceRow(number, str(item["device_id"]), {})
    given = {name: getattr(meter, name) for name in meter.model_fields_set if name != "device_id"}
    return DeviceRow(number, meter.device_id, given)


def _message(error: Any) -> str:
    kind = error.get("type")
    if kind == "missing":
        return "this field is required"
    if kind == "extra_forbidden":
        return f"unknown field; the fields are {', '.join(MeterImport.model_fields)}"
    return str(error.get("msg", "invalid value"))
