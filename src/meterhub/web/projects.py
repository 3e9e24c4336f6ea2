"""Project pages: the projects list (with open alerts), one project (houses, residents,
meters, tariffs) and its bills (filtered, paginated, totalled per period, downloadable as
CSV)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from meterhub.alerts.history import open_counts
from meterhub.api.deps import ConnDep, EngineDep, visible_project
from meterhub.api.scheduler import WM_TYPES
from meterhub.billing.history import (
    BillFilter,
    bill_totals,
    csv_text,
    days_window,
    iter_bills,
    page_bills,
    parse_day,
    period_totals,
)
from meterhub.billing.tariff_store import project_tariffs
from meterhub.errors import InvalidInput
from meterhub.registry.channels import CHANNELS, ChannelKind, DeviceType
from meterhub.registry.projects import Project, list_houses, list_projects, project_sizes
from meterhub.web.paging import paged
from meterhub.web.routing import page_router
from meterhub.web.session import ViewerDep
from meterhub.web.templating import render

router = page_router()

UNITS = {
    kind: next(c.unit for c in CHANNELS[kind] if c.kind == ChannelKind.REGISTER)
    for kind in DeviceType
}
"""The unit each device type is billed in (its register's)."""
WATER_KINDS = sorted(set(WM_TYPES.values()))
PERIODS_SHOWN = 60


def _project(project_id: int, viewer: ViewerDep, conn: ConnDep) -> Project:
    """The project in the path, if the viewer may see it (404 alike otherwise)."""
    return visible_project(project_id, viewer.user, conn)


ProjectPage = Annotated[Project, Depends(_project)]


def device_type_filter(text: str) -> DeviceType | None:
    """The meter type a filter names, ``None`` for any; ``InvalidInput`` naming ``device_type``."""
    if not text:
        return None
    if text not in tuple(DeviceType):
        raise InvalidInput.field("device_type", f"one of {', '.join(DeviceType)}")
    return DeviceType(text)


@dataclass(frozen=True, slots=True)
class BillQuery:
    """The bill filters as typed into the form (query fields), checked by ``where``."""

    device_type: str = ""
    device_id: str = ""
    water_kind: str = ""
    start_date: str = ""
    end_date: str = ""

    def where(self, project: Project) -> BillFilter:
        """The filter; ``InvalidInput`` naming the first bad field."""
        kind = device_type_filter(self.device_type)
        water = WM_TYPES.get(self.water_kind.strip()) if self.water_kind else None
        if self.water_kind and water is None:
            raise InvalidInput.field("water_kind", f"one of {', '.join(WATER_KINDS)}")
        start = parse_day(self.start_date, "start_date") if self.start_date else None
        end = parse_day(self.end_date, "end_date") if self.end_date else None
        ends_from = None if start is None else days_window(start, end or start, project.zone)[0]
        ends_before = None if end is None else days_window(start or end, end, project.zone)[1]
        return BillFilter(
            project.id, kind, self.device_id.strip() or None, water, ends_from, ends_before
        )

    @property
    def query(self) -> str:
        """The filters as a query string (without the empty ones)."""
        return urlencode({name: value for name, value in asdict(self).items() if value})


BillQueryDep = Annotated[BillQuery, Depends()]


@router.get("/projects")
def projects_page(
    request: Request, viewer: ViewerDep, conn: ConnDep, page: int = 1, size: int = 25
) -> Response:
    """The projects the viewer may see, with how many houses, meters and open alerts each
    has."""
    only = viewer.user.visible_projects
    pager, found = paged(
        request.url,
        page,
        size,
        lambda offset, limit: list_projects(conn, only, offset=offset, limit=limit),
    )
    ids = [project.id for project in found]
    alerting = {row.project_id: row.open for row in open_counts(conn, ids)}
    context = {
        "projects": found,
        "sizes": project_sizes(conn, ids),
        "alerting": alerting,
        "pager": pager,
    }
    return render(request, "projects.html", viewer, context)


@router.get("/projects/{project_id}")
def project_page(
    request: Request,
    viewer: ViewerDep,
    conn: ConnDep,
    project: ProjectPage,
    page: int = 1,
    size: int = 25,
) -> Response:
    """A project's houses with their residents and meters, and its tariffs."""
    pager, houses = paged(
        request.url,
        page,
        size,
        lambda offset, limit: list_houses(conn, project.id, offset=offset, limit=limit),
    )
    context = {
        "project": project,
        "houses": houses,
        "pager": pager,
        "tariffs": project_tariffs(conn, project.id),
        "units": UNITS,
    }
    return render(request, "project.html", viewer, context)


@router.get("/projects/{project_id}/bills")
def bills_page(
    request: Request,
    viewer: ViewerDep,
    conn: ConnDep,
    project: ProjectPage,
    filters: BillQueryDep,
    page: int = 1,
    size: int = 25,
) -> Response:
    """The bills matching the filters, newest first, with totals per period and overall."""
    where = filters.where(project)
    pager, found = paged(
        request.url,
        page,
        size,
        lambda offset, limit: page_bills(conn, where, offset=offset, limit=limit),
    )
    context = {
        "project": project,
        "filters": filters,
        "bills": found,
        "pager": pager,
        "periods": period_totals(conn, where, limit=PERIODS_SHOWN),
        "periods_shown": PERIODS_SHOWN,
        "totals": bill_totals(conn, where),
        "units": UNITS,
        "water_kinds": WATER_KINDS,
        "device_types": list(DeviceType),
    }
    return render(request, "project_bills.html", viewer, context)


@router.get("/projects/{project_id}/bills.csv")
def bills_csv(project: ProjectPage, filters: BillQueryDep, engine: EngineDep) -> Response:
    """The filtered bills as CSV (the API export's columns), streamed without a row limit."""
    where = filters.where(project)
    return StreamingResponse(
        _csv_stream(engine, where, project),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="bills-{project.id}.csv"'},
    )


def _csv_stream(engine: Engine, where: BillFilter, project: Project) -> Iterator[str]:
    """Read after the request's transaction ended, on a connection of its own."""
    with engine.begin() as conn:
        yield from csv_text(iter_bills(conn, where), project.zone)
