"""The meters list: filters, pages, a CSV download, and (administrators) adding, switching,
deleting and importing meters."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar
from urllib.parse import urlencode

from fastapi import File, Request, Response, UploadFile
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy import Connection
from starlette.datastructures import QueryParams

from meterhub.api.deps import MAX_ROW_ID, ConnDep, SettingsDep, check_project
from meterhub.api.meter_rows import MeterCreate, import_csv
from meterhub.api.meters import csv_response, register_meter
from meterhub.collector.health import Status
from meterhub.collector.meter_view import MeterFilter, MeterView, list_meter_views
from meterhub.errors import InvalidInput, NotFound, TooLarge
from meterhub.registry.channels import CHANNELS, Channel, DeviceType
from meterhub.registry.devices import WATER_KINDS, MeterProtocol, delete_device, set_enabled
from meterhub.registry.meter_csv import COLUMNS, export_csv
from meterhub.registry.meter_models import list_models
from meterhub.registry.projects import HousePlace, get_project, house_places
from meterhub.web.forms import form_text, project_choices
from meterhub.web.paging import PAGE_SIZES, paged
from meterhub.web.routing import notice_redirect, page_router
from meterhub.web.session import FormDep, Viewer, ViewerDep, require_admin
from meterhub.web.templating import render

router = page_router()

T = TypeVar("T")
SEARCH_MAX = 64
NEW_METER_FIELDS = (
    "device_id",
    "type",
    "water_kind",
    "host",
    "port",
    "protocol",
    "unit_id",
    "model",
)
IMPORT_ERRORS_SHOWN = 200
"""Problems an import page lists (the rest are counted)."""


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The list's filters and page, as read from the query string."""

    status: Status | None = None
    type: DeviceType | None = None
    project: int | None = None
    enabled: bool | None = None
    search: str = ""
    page: int = 1
    size: int = PAGE_SIZES[0]


@dataclass(frozen=True, slots=True)
class MeterRow:
    """One meter as listed: its view, its house's place and its channels' latest values."""

    view: MeterView
    place: HousePlace | None
    readings: list[tuple[Channel, float | None]]


@dataclass(frozen=True, slots=True)
class NewMeter:
    """The add form's values, and its errors by field after a refused submission."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImportProblems:
    """A refused CSV import: the file's name and its problems by line and column."""

    filename: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def shown(self) -> list[tuple[str, list[str]]]:
        return list(self.errors.items())[:IMPORT_ERRORS_SHOWN]

    @property
    def hidden(self) -> int:
        return max(0, len(self.errors) - IMPORT_ERRORS_SHOWN)


def readings(
    view: MeterView, channels: tuple[Channel, ...] | None = None
) -> list[tuple[Channel, float | None]]:
    """Each of ``channels`` (default: the standard channels of the meter's type) with its
    value in the meter's latest reading (``None``: none)."""
    shown = CHANNELS[view.device.type] if channels is None else channels
    return [(channel, view.values.get(channel.name)) for channel in shown]


@router.get("/meters")
def meters_page(request: Request, viewer: ViewerDep, conn: ConnDep) -> Response:
    return _list_page(request, viewer, conn, NewMeter())


@router.post("/meters")
def add_meter(
    request: Request, viewer: ViewerDep, form: FormDep, conn: ConnDep, settings: SettingsDep
) -> Response:
    """Register a meter (administrators); refused input shows the form again with 400."""
    require_admin(viewer)
    values = {name: form_text(form, name).strip() for name in NEW_METER_FIELDS}
    try:
        register_meter(conn, _meter_create(values), settings)
    except InvalidInput as exc:
        return _list_page(request, viewer, conn, NewMeter(values, exc.errors), status=400)
    return _back_to_list(request, f"Meter {values['device_id']} added.")


@router.get("/meters.csv")
def export_meters(viewer: ViewerDep, conn: ConnDep) -> Response:
    """The meters the viewer sees as CSV, in the format the import takes (beside, not under,
    ``/meters/``: a device id may be ``export.csv``)."""
    return csv_response(export_csv(conn, viewer.user.visible_projects))


@router.post("/meters/import")
def import_meters(
    request: Request,
    viewer: ViewerDep,
    _form: FormDep,
    conn: ConnDep,
    settings: SettingsDep,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Import a CSV file of meters (administrators): all rows, or with any bad one none,
    which the list then shows with 400. (The form is a body parameter, so its files are
    closed whatever the answer.)"""
    require_admin(viewer)
    name, data = _uploaded(file, settings.bulk_max_bytes)
    try:
        done = import_csv(conn, data, settings)
    except TooLarge:
        raise
    except InvalidInput as exc:
        problems = ImportProblems(name, exc.errors)
        return _list_page(request, viewer, conn, NewMeter(), status=400, problems=problems)
    return _back_to_list(
        request,
        f"Imported {name}: {done.created} added, {done.updated} changed, "
        f"{done.unchanged} unchanged.",
    )


def _uploaded(upload: UploadFile | None, limit: int) -> tuple[str, bytes]:
    """The name and content of the uploaded file, at most ``limit`` bytes (413 beyond)."""
    if upload is None or not upload.filename:
        raise InvalidInput.field("file", "choose a CSV file to import")
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge.field("file", f"over {limit} bytes")
    return upload.filename, data


@router.post("/meters/{device_id}/enable")
def enable_meter(
    device_id: str, request: Request, viewer: ViewerDep, _form: FormDep, conn: ConnDep
) -> Response:
    return _switch(request, viewer, conn, device_id, enabled=True)


@router.post("/meters/{device_id}/disable")
def disable_meter(
    device_id: str, request: Request, viewer: ViewerDep, _form: FormDep, conn: ConnDep
) -> Response:
    return _switch(request, viewer, conn, device_id, enabled=False)


@router.post("/meters/{device_id}/delete")
def remove_meter(
    device_id: str, request: Request, viewer: ViewerDep, _form: FormDep, conn: ConnDep
) -> Response:
    """Delete a meter (administrators); its stored readings are kept."""
    require_admin(viewer)
    delete_device(conn, device_id)
    return _back_to_list(request, f"Meter {device_id} deleted; its readings are kept.")


def _switch(
    request: Request, viewer: Viewer, conn: Connection, device_id: str, *, enabled: bool
) -> Response:
    require_admin(viewer)
    set_enabled(conn, device_id, enabled)
    state = "enabled: it is polled again" if enabled else "disabled: it is no longer polled"
    return _back_to_list(request, f"Meter {device_id} {state}.")


def _list_page(
    request: Request,
    viewer: Viewer,
    conn: Connection,
    new: NewMeter,
    status: int = 200,
    problems: ImportProblems | None = None,
) -> Response:
    """One page of the filtered list, with the add form in the state ``new`` holds (and a
    refused import's ``problems``)."""
    query = _list_query(request.query_params)
    where = _meter_filter(conn, viewer, query)
    pages, views = paged(
        request.url.remove_query_params("notice"),
        query.page,
        query.size,
        lambda offset, limit: list_meter_views(conn, where, offset=offset, limit=limit),
    )
    places = house_places(conn, {v.device.house_id for v in views if v.device.house_id})
    rows = [MeterRow(v, places.get(v.device.house_id or 0), readings(v)) for v in views]
    context = {
        "rows": rows,
        "query": query,
        "pager": pages,
        "projects": project_choices(conn, viewer),
        "statuses": list(Status),
        "types": list(DeviceType),
        "water_kinds": WATER_KINDS,
        "protocols": list(MeterProtocol),
        "models": list_models(conn) if viewer.user.is_admin else [],
        "page_sizes": PAGE_SIZES,
        "new": new,
        "problems": problems or ImportProblems(),
        "csv_columns": COLUMNS,
        "back": _list_params(request),
    }
    return render(request, "meters.html", viewer, context, status=status)


def _list_query(params: QueryParams) -> ListQuery:
    """The filters and page in ``params``; ``InvalidInput`` naming each bad one."""
    errors: dict[str, str] = {}

    def read(name: str, parse: Callable[[str], T], message: str) -> T | None:
        text = params.get(name, "").strip()
        if not text:
            return None
        try:
            return parse(text)
        except ValueError:
            errors[name] = message
            return None

    query = ListQuery(
        status=read("status", Status, f"must be one of {', '.join(Status)}"),
        type=read("type", DeviceType, f"must be one of {', '.join(DeviceType)}"),
        project=read("project", _row_id, "must be a project id"),
        enabled=read("enabled", _yes_no, "must be true or false"),
        search=read("search", _search, f"must be at most {SEARCH_MAX} characters") or "",
        page=read("page", _row_id, "must be a whole number from 1") or 1,
        size=read("size", _page_size, f"must be one of {', '.join(map(str, PAGE_SIZES))}")
        or PAGE_SIZES[0],
    )
    if errors:
        raise InvalidInput(errors)
    return query


def _row_id(text: str) -> int:
    number = int(text)
    if not 1 <= number <= MAX_ROW_ID:
        raise ValueError(text)
    return number


def _yes_no(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(text)
    return text == "true"


def _search(text: str) -> str:
    if len(text) > SEARCH_MAX:
        raise ValueError(text)
    return text


def _page_size(text: str) -> int:
    size = int(text)
    if size not in PAGE_SIZES:
        raise ValueError(text)
    return size


def _meter_filter(conn: Connection, viewer: Viewer, query: ListQuery) -> MeterFilter:
    """The services' filter: a non-administrator only ever sees their projects' meters."""
    user = viewer.user
    projects = user.visible_projects
    if query.project is not None:
        try:
            check_project(user, query.project)
            get_project(conn, query.project)
        except NotFound:
            raise InvalidInput.field("project", f"no project with id {query.project}") from None
        projects = frozenset({query.project})
    return MeterFilter(
        status=query.status,
        type=query.type,
        enabled=query.enabled,
        search=query.search or None,
        project_ids=projects,
    )


def _meter_create(values: dict[str, str]) -> MeterCreate:
    """The API's ``MeterCreate`` from the form (blank fields: defaults), with its checks."""
    try:
        return MeterCreate.model_validate({name: v for name, v in values.items() if v})
    except ValidationError as exc:
        errors: dict[str, list[str]] = defaultdict(list)
        for error in exc.errors():
            errors[str(error["loc"][0])].append(error["msg"])
        raise InvalidInput(errors) from None


def _list_params(request: Request) -> str:
    """The list's query string (filters and page), without a notice: what actions return to."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "notice"]
    return urlencode(kept)


def _back_to_list(request: Request, notice: str) -> RedirectResponse:
    """303 to the list as it was (filters and page kept), showing ``notice``."""
    return notice_redirect(f"/meters?{request.url.query}", notice)
