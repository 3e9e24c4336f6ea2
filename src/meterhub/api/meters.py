"""Meter management and health: ``/api/v1/meters/``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import Connection

from meterhub.api.deps import AdminUser, ConnDep, CurrentUser, SettingsDep
from meterhub.api.meter_rows import (
    MeterCreate,
    MeterImport,
    MetersImported,
    import_csv,
    import_json,
    read_bounded,
)
from meterhub.api.pagination import NumberedPage, Page, PageSize, offset, paging
from meterhub.collector.health import Status
from meterhub.collector.meter_view import MeterFilter, MeterView, list_meter_views, meter_view
from meterhub.errors import InvalidInput, NotFound
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import (
    MeterProtocol,
    create_device,
    delete_device,
    device_project,
    get_device,
    set_enabled,
)
from meterhub.registry.meter_csv import export_csv
from meterhub.registry.users import User
from meterhub.settings import Settings
from meterhub.times import iso

router = APIRouter(prefix="/api/v1/meters", tags=["meters"])


class MeterUpdate(BaseModel):
    enabled: bool


class HealthPublic(BaseModel):
    status: Status
    last_seen: str | None
    last_attempt: str | None
    last_error: str | None
    last_error_at: str | None
    consecutive_failures: int
    last_poll_duration_ms: float | None
    polls: int
    failures: int


class ReadingPublic(BaseModel):
    timestamp: str
    values: dict[str, float]


class MeterPublic(BaseModel):
    device_id: str
    type: DeviceType
    host: str | None
    port: int | None
    protocol: MeterProtocol
    unit_id: int
    model: str | None
    enabled: bool
    created_at: str
    health: HealthPublic
    last_reading: ReadingPublic | None


class MetersPublic(NumberedPage):
    results: list[MeterPublic]


def _public(view: MeterView, settings: Settings) -> MeterPublic:
    zone = settings.zone
    h = view.health

    def when(us: int | None) -> str | None:
        return None if us is None else iso(us, zone)

    return MeterPublic(
        device_id=view.device.device_id,
        type=view.device.type,
        host=view.device.host,
        port=view.device.port,
        protocol=view.device.wiring.protocol,
        unit_id=view.device.wiring.unit_id,
        model=view.device.wiring.model,
        enabled=view.device.enabled,
        created_at=iso(view.device.created_at, zone),
        health=HealthPublic(
            status=h.status,
            last_seen=when(h.last_seen),
            last_attempt=when(h.last_attempt),
            last_error=h.last_error,
            last_error_at=when(h.last_error_at),
            consecutive_failures=h.consecutive_failures,
            last_poll_duration_ms=h.last_duration_ms,
            polls=h.polls,
            failures=h.failures,
        ),
        last_reading=None
        if view.reading_ts is None
        else ReadingPublic(timestamp=iso(view.reading_ts, zone), values=view.values),
    )


def check_meter(conn: Connection, user: User, device_id: str) -> None:
    """``NotFound`` unless the user may see the meter (admins: all; others: their projects')."""
    if user.is_admin:
        return
    project_id = device_project(conn, get_device(conn, device_id))
    if project_id is None or not user.can_access(project_id):
        raise NotFound(f"no meter with id {device_id}")


@router.get("/", operation_id="listMeters")
def list_meters(
    conn: ConnDep,
    settings: SettingsDep,
    user: CurrentUser,
    status: Status | None = None,
    type: DeviceType | None = None,
    enabled: bool | None = None,
    search: Annotated[str | None, Query(max_length=64)] = None,
    page: Page = 1,
    page_size: PageSize = 100,
) -> MetersPublic:
    """Meters with their poll health and latest reading, filtered and paginated.

    Administrators see every meter; other users the meters of their projects' houses.
    """
    where = MeterFilter(
        status=status,
        type=type,
        enabled=enabled,
        search=search,
        project_ids=user.visible_projects,
    )
    total, views = list_meter_views(conn, where, offset=offset(page, page_size), limit=page_size)
    return MetersPublic(
        **paging(total, page, page_size),
        results=[_public(v, settings) for v in views],
    )


@router.post("/", status_code=201, operation_id="createMeter")
def create_meter(
    body: MeterCreate, conn: ConnDep, settings: SettingsDep, _admin: AdminUser
) -> MeterPublic:
    """Register a meter (administrators); with a port it is polled within a second."""
    register_meter(conn, body, settings)
    return _public(meter_view(conn, body.device_id), settings)


def register_meter(conn: Connection, body: MeterCreate, settings: Settings) -> None:
    """Register the meter ``body`` describes; a port alone means the configured meter host."""
    if body.host is not None and body.port is None:
        raise InvalidInput.field("port", "required when host is given")
    host = body.host or (settings.meter_host if body.port is not None else None)
    create_device(
        conn,
        body.device_id,
        body.type,
        host=host,
        port=body.port,
        enabled=body.enabled,
        water_kind=body.water_kind,
        wiring=body.wiring,
    )


async def bulk_body(request: Request, settings: SettingsDep) -> bytes:
    """A bulk request's body, up to ``settings.bulk_max_bytes`` (413 beyond)."""
    return await read_bounded(request, settings.bulk_max_bytes)


BulkBody = Annotated[bytes, Depends(bulk_body)]


def _body_doc(content_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {content_type: {"schema": schema}}}}


def _meter_list_schema() -> dict[str, Any]:
    item = MeterImport.model_json_schema(ref_template="#/components/schemas/{model}")
    item.pop("$defs", None)
    return {"type": "array", "items": item}


@router.post(
    "/bulk",
    operation_id="importMeters",
    openapi_extra=_body_doc("application/json", _meter_list_schema()),
)
def import_meters(
    _admin: AdminUser, body: BulkBody, conn: ConnDep, settings: SettingsDep
) -> MetersImported:
    """Register or update many meters at once (administrators): a JSON list of meters as
    ``POST /api/v1/meters/`` takes them, each may also name its ``house_id``.

    Every item is checked first; with any problem nothing is stored and the answer (400)
    names each one by index and field (``[3].port``). Otherwise all are stored in one
    transaction. An item naming a registered meter updates the fields it gives (the same
    values again change nothing). At most ``METERHUB_BULK_MAX_ROWS`` items and
    ``METERHUB_BULK_MAX_BYTES`` bytes (413 beyond).
    """
    return import_json(conn, body, settings)


@router.post(
    "/import.csv",
    operation_id="importMetersCsv",
    openapi_extra=_body_doc("text/csv", {"type": "string"}),
)
def import_meters_csv(
    _admin: AdminUser, body: BulkBody, conn: ConnDep, settings: SettingsDep
) -> MetersImported:
    """``/bulk`` for a CSV file in the format of ``export.csv`` (a header line, then a
    meter a line); errors name the file's line (``line 4: port``)."""
    return import_csv(conn, body, settings)


@router.get(
    "/export.csv",
    operation_id="exportMeters",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "The meters as CSV."}},
)
def export_meters(conn: ConnDep, user: CurrentUser) -> Response:
    """Every meter the caller sees as CSV (``device_id, type, water_kind, host, port,
    enabled, house_id, protocol, unit_id, model``), in registration order: ``import.csv``
    takes it back as it is."""
    return csv_response(export_csv(conn, user.visible_projects))


def csv_response(text: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="meters.csv"'},
    )


@router.get("/{device_id}/", operation_id="getMeter")
def get_meter(
    device_id: str, conn: ConnDep, settings: SettingsDep, user: CurrentUser
) -> MeterPublic:
    """One meter with its poll health and latest reading."""
    check_meter(conn, user, device_id)
    return _public(meter_view(conn, device_id), settings)


@router.patch("/{device_id}/", operation_id="updateMeter")
def update_meter(
    device_id: str, body: MeterUpdate, conn: ConnDep, settings: SettingsDep, user: CurrentUser
) -> MeterPublic:
    """Enable or disable polling of a meter."""
    check_meter(conn, user, device_id)
    set_enabled(conn, device_id, body.enabled)
    return _public(meter_view(conn, device_id), settings)


@router.delete(
    "/{device_id}/", status_code=204, response_class=Response, operation_id="deleteMeter"
)
def delete_meter(device_id: str, conn: ConnDep, _admin: AdminUser) -> None:
    """Remove a meter (administrators); its stored readings are kept."""
    delete_device(conn, device_id)
