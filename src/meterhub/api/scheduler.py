"""Scheduled billing (the third seed): ``/api/v1/scheduler/...``.

Billing tasks (create, list, read, replace, delete, enable, run by hand, preview) and bill
history (paginated, by date range, CSV export). Every answer is the seed's envelope
``{"meta": {"code": 0, "message": ...}, "data": ...}``; errors get the same envelope with a
non-zero code from the one error handler. Every route checks the project of what it touches.

Device type codes are the seed's, and differ per endpoint: tasks and ``/history/`` use
1 water, 2 electricity (0 = all in filters); ``/history/time/`` uses 0 electricity, 1 water
(10 = all). Money travels as a string with 2 decimals, readings with the 3 they are stored
with; times are ISO 8601 in the project's timezone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import IntEnum
from typing import Annotated, Generic, Literal, Self, TypeVar

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlalchemy import Engine

from meterhub.api.deps import (
    ConnDep,
    CurrentUser,
    EngineDep,
    ProjectDep,
    VisibleTask,
    check_project,
    visible_task,
)
from meterhub.api.pagination import Page, Paged, offset, paging
from meterhub.billing.cron import upcoming
from meterhub.billing.history import (
    Bill,
    BillFilter,
    csv_text,
    days_window,
    iter_bills,
    page_bills,
    parse_day,
)
from meterhub.billing.runs import manual_instant, run_task
from meterhub.billing.tasks import (
    Task,
    create_task,
    delete_task,
    list_tasks,
    set_enabled,
    update_task,
)
from meterhub.errors import InvalidInput
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import Project, get_project
from meterhub.times import iso

router = APIRouter(prefix="/api/v1/scheduler", tags=["scheduler"])

T = TypeVar("T")

TASK_TYPES: dict[int, DeviceType] = {1: DeviceType.WATER, 2: DeviceType.ELECTRICITY}
"""Device type codes of tasks and ``/history/``."""
TASK_CODES = {kind: code for code, kind in TASK_TYPES.items()}
PERIOD_TYPES: dict[int, DeviceType] = {0: DeviceType.ELECTRICITY, 1: DeviceType.WATER}
"""Device type codes of ``/history/time/`` (and the CSV export)."""
PERIOD_CODES = {kind: code for code, kind in PERIOD_TYPES.items()}
WM_TYPES = {"自来水表": "tap", "纯净水表": "purified", "tap": "tap", "purified": "purified"}
"""``wm_type`` values: the seed's Chinese names and meterhub's own water kinds."""
PREVIEW_FIRES = 5


class TypeFilter(IntEnum):
    """``device_type`` filter of ``/tasks/`` and ``/history/``."""

    ALL = 0
    WATER = 1
    ELECTRICITY = 2


class PeriodTypeFilter(IntEnum):
    """``device_type`` filter of ``/history/time/`` and the CSV export."""

    ALL = 10
    ELECTRICITY = 0
    WATER = 1


# --- schemas -------------------------------------------------------------------------------


class Meta(BaseModel):
    code: int = 0
    message: str


class Envelope(BaseModel, Generic[T]):
    """Every answer of this surface: ``meta`` says how it went, ``data`` carries the result.

    Each route answers a named subclass (``TaskEnvelope``...), so the OpenAPI reads cleanly.
    """

    meta: Meta
    data: T

    @classmethod
    def ok(cls, message: str, data: T) -> Self:
        return cls(meta=Meta(message=message), data=data)


class Empty(BaseModel):
    """``{}``."""


def _text(value: object) -> object:
    """Cron fields may be sent as integers; they are kept as the strings cron reads."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


CronField = Annotated[str, Field(max_length=200, examples=["*"]), BeforeValidator(_text)]


class Crontab(BaseModel):
    """Each field is ``*``, ``N``, ``N-M``, ``*/S``, ``N-M/S`` or a comma list of them."""

    model_config = ConfigDict(extra="forbid")

    month: CronField
    day: CronField
    hour: CronField
    minute: CronField


Name = Annotated[str, Field(min_length=1, max_length=255)]
Description = Annotated[str, Field(max_length=10_000)]


class TaskCreate(BaseModel):
    name: Name
    project_id: int
    crontab: Crontab
    device_type: Literal[1, 2] = Field(description="1 water, 2 electricity")
    enabled: bool = True
    description: Description = ""


class TaskUpdate(BaseModel):
    name: Name
    crontab: Crontab
    enabled: bool
    description: Description


class TaskStatus(BaseModel):
    enabled: bool


class TaskRun(BaseModel):
    at: str | None = Field(
        None,
        description="The instant to bill up to (ISO 8601, naive = project time); "
        "default: now, to the minute.",
        examples=["2026-11-01T00:00:00+01:00"],
    )


class TaskPublic(BaseModel):
    name: str
    crontab: Crontab
    natrual_key: str = Field(description="The task id (the seed's spelling).")
    project_id: int
    device_type: int = Field(description="1 water, 2 electricity")
    last_run_at: str | None
    enabled: bool
    update_time: str
    create_time: str
    description: str


class TasksPublic(Paged):
    results: list[TaskPublic]


class SkippedDevice(BaseModel):
    device_id: str
    reason: str


class RunPublic(BaseModel):
    run_id: int | None = Field(description="None when this instant had already been run.")
    scheduled_at: str
    billed: int
    skipped: list[SkippedDevice]
    already_run: bool


class TaskPreview(BaseModel):
    timezone: str
    fires: list[str] = Field(description=f"The next {PREVIEW_FIRES} fire times.")


class BillItemPublic(BaseModel):
    """One period of a time-of-use bill."""

    period: str
    start_reading: str = Field(description="The register at the period's first instant.")
    end_reading: str = Field(description="The register at the period's last instant.")
    consumption: str = Field(description="Over all the period's stretches in the bill.")
    price: str
    charge: str = Field(description="consumption x price, shown rounded half-up to cents.")
    estimated: bool
    note: str | None = Field(description="Which boundary is estimated, and how.")


class BillPublic(BaseModel):
    id: str
    device_id: str
    device_type: int = Field(description="1 water, 2 electricity")
    charge: str
    reading_data: str
    from_time: str
    to_time: str
    created_at: str
    items: list[BillItemPublic] = Field(
        default_factory=list,
        exclude_if=lambda items: not items,
        description="Time-of-use bills only: one per period, in the tariff's order.",
    )


class BillsPublic(Paged):
    results: list[BillPublic]


class ResidentSnapshot(BaseModel):
    """A resident as the bill recorded them."""

    name: str
    cellphone: str


class BillPeriodPublic(BaseModel):
    id: str
    house_address: list[str]
    residents: list[ResidentSnapshot]
    device_id: str
    device_type: int = Field(description="0 electricity, 1 water")
    charge: str
    previous_reading_data: str
    reading_data: str
    from_time: str
    to_time: str
    created_at: str
    items: list[BillItemPublic] = Field(
        default_factory=list,
        exclude_if=lambda items: not items,
        description="Time-of-use bills only: one per period, in the tariff's order.",
    )


class TaskEnvelope(Envelope[TaskPublic]):
    pass


class TasksEnvelope(Envelope[TasksPublic]):
    pass


class EmptyEnvelope(Envelope[Empty]):
    pass


class RunEnvelope(Envelope[RunPublic]):
    pass


class PreviewEnvelope(Envelope[TaskPreview]):
    pass


class BillsEnvelope(Envelope[BillsPublic]):
    pass


class BillPeriodsEnvelope(Envelope[list[BillPeriodPublic]]):
    pass


# --- rendering ------------------------------------------------------------------------------


def _task_public(task: Task, project: Project) -> TaskPublic:
    zone = project.zone
    return TaskPublic(
        name=task.name,
        crontab=Crontab.model_validate(task.cron.source),
        natrual_key=task.key,
        project_id=task.project_id,
        device_type=TASK_CODES[task.device_type],
        last_run_at=None if task.last_run_at is None else iso(task.last_run_at, zone),
        enabled=task.enabled,
        update_time=iso(task.update_time, zone),
        create_time=iso(task.create_time, zone),
        description=task.description,
    )


def _bill_public(bill: Bill, project: Project) -> BillPublic:
    zone = project.zone
    return BillPublic(
        id=str(bill.id),
        device_id=bill.device_id,
        device_type=TASK_CODES[bill.device_type],
        charge=str(bill.charge),
        reading_data=str(bill.reading),
        from_time=iso(bill.from_time, zone),
        to_time=iso(bill.to_time, zone),
        created_at=iso(bill.created_at, zone),
        items=_items_public(bill),
    )


def _items_public(bill: Bill) -> list[BillItemPublic]:
    return [
        BillItemPublic(
            period=item.period,
            start_reading=str(item.start_register),
            end_reading=str(item.end_register),
            consumption=str(item.consumption),
            price=format(item.price, "f"),
            charge=str(item.charge),
            estimated=item.estimated,
            note=item.note,
        )
        for item in bill.items
    ]


def _bill_period_public(bill: Bill, project: Project) -> BillPeriodPublic:
    zone = project.zone
    return BillPeriodPublic(
        id=str(bill.id),
        house_address=bill.house_address,
        residents=[ResidentSnapshot.model_validate(person) for person in bill.residents],
        device_id=bill.device_id,
        device_type=PERIOD_CODES[bill.device_type],
        charge=str(bill.charge),
        previous_reading_data=str(bill.previous_reading),
        reading_data=str(bill.reading),
        from_time=iso(bill.from_time, zone),
        to_time=iso(bill.to_time, zone),
        created_at=iso(bill.created_at, zone),
        items=_items_public(bill),
    )


# --- dependencies ---------------------------------------------------------------------------

PageSize = Annotated[int, Query(ge=1, le=100, description="At most 100.")]


def _visible_task(conn: ConnDep, user: CurrentUser, natrual_key: str) -> VisibleTask:
    """The task in the path, if the caller may see its project (else 404)."""
    return visible_task(conn, user, natrual_key)


TaskDep = Annotated[VisibleTask, Depends(_visible_task)]


@dataclass(frozen=True, slots=True)
class BillPeriod:
    project: Project
    where: BillFilter
    start: date
    end: date


def _bill_period(
    project: ProjectDep,
    start_date: str,
    end_date: str,
    device_type: Annotated[
        PeriodTypeFilter, Query(description="10 all, 0 electricity, 1 water")
    ] = PeriodTypeFilter.ALL,
    device_id: str | None = None,
    wm_type: Annotated[
        str | None,
        Query(
            description="Water kind: 自来水表 or tap, 纯净水表 or purified; "
            "narrows water bills only."
        ),
    ] = None,
) -> BillPeriod:
    """The filters of ``/history/time/`` and the CSV export, checked."""
    start = parse_day(start_date, "start_date")
    end = parse_day(end_date, "end_date")
    ends_from, ends_before = days_window(start, end, project.zone)
    kind = None
    if wm_type:
        kind = WM_TYPES.get(wm_type.strip())
        if kind is None:
            raise InvalidInput.field("wm_type", f"one of {', '.join(WM_TYPES)}")
    where = BillFilter(
        project_id=project.id,
        device_type=PERIOD_TYPES.get(device_type),
        device_id=device_id or None,
        water_kind=kind,
        ends_from=ends_from,
        ends_before=ends_before,
    )
    return BillPeriod(project, where, start, end)


BillPeriodDep = Annotated[BillPeriod, Depends(_bill_period)]


# --- tasks ----------------------------------------------------------------------------------


@router.post("/task/", status_code=201, operation_id="createTask")
def new_task(body: TaskCreate, conn: ConnDep, user: CurrentUser) -> TaskEnvelope:
    """Create a billing task: bill one device type of a project on a crontab schedule."""
    check_project(user, body.project_id)
    task = create_task(
        conn,
        body.project_id,
        body.name,
        TASK_TYPES[body.device_type],
        body.crontab.model_dump(),
        enabled=body.enabled,
        description=body.description,
    )
    project = get_project(conn, task.project_id)
    return TaskEnvelope.ok("create crontab ok.", _task_public(task, project))


@router.get("/tasks/", operation_id="listTasks")
def tasks(
    conn: ConnDep,
    project: ProjectDep,
    device_type: Annotated[
        TypeFilter, Query(description="0 all, 1 water, 2 electricity")
    ] = TypeFilter.ALL,
    page: Page = 1,
    page_size: PageSize = 10,
) -> TasksEnvelope:
    """A project's billing tasks, oldest first, paginated."""
    total, found = list_tasks(
        conn,
        project.id,
        TASK_TYPES.get(device_type),
        offset=offset(page, page_size),
        limit=page_size,
    )
    data = TasksPublic(
        **paging(total, page, page_size),
        results=[_task_public(task, project) for task in found],
    )
    return TasksEnvelope.ok("task list info", data)


@router.get("/tasks/{natrual_key}/", operation_id="getTask")
def task(visible: TaskDep) -> TaskEnvelope:
    """One billing task."""
    return TaskEnvelope.ok("task info", _task_public(visible.task, visible.project))


@router.put("/tasks/{natrual_key}/", operation_id="updateTask")
def replace_task(body: TaskUpdate, visible: TaskDep, conn: ConnDep) -> TaskEnvelope:
    """Replace a task's name, schedule, state and description."""
    task = update_task(
        conn,
        visible.task.key,
        name=body.name,
        crontab=body.crontab.model_dump(),
        enabled=body.enabled,
        description=body.description,
    )
    return TaskEnvelope.ok("task update ok.", _task_public(task, visible.project))


@router.delete("/tasks/{natrual_key}/", operation_id="deleteTask")
def remove_task(visible: TaskDep, conn: ConnDep) -> EmptyEnvelope:
    """Delete a task; the bills it made stay in the history."""
    delete_task(conn, visible.task.key)
    return EmptyEnvelope.ok("delete ok.", Empty())


@router.put("/tasks/{natrual_key}/status/", operation_id="setTaskStatus")
def task_status(body: TaskStatus, visible: TaskDep, conn: ConnDep) -> EmptyEnvelope:
    """Enable or disable a task's scheduled runs."""
    set_enabled(conn, visible.task.key, body.enabled)
    return EmptyEnvelope.ok("update ok.", Empty())


@router.post("/tasks/{natrual_key}/run/", operation_id="runTask")
def run_now(visible: TaskDep, conn: ConnDep, body: TaskRun | None = None) -> RunEnvelope:
    """Bill the task's devices up to an instant now, once per (task, instant).

    Disabled tasks run too: disabling stops the schedule, not the operator. An instant already
    run reports ``already_run`` and bills nothing.
    """
    zone = visible.project.zone
    at = manual_instant(None if body is None else body.at, zone)
    report = run_task(conn, visible.task.key, at)
    data = RunPublic(
        run_id=report.run_id,
        scheduled_at=iso(report.scheduled_at, zone),
        billed=report.billed,
        skipped=[SkippedDevice.model_validate(skip) for skip in report.skipped],
        already_run=report.run_id is None,
    )
    return RunEnvelope.ok("run ok.", data)


@router.get("/tasks/{natrual_key}/preview/", operation_id="previewTask")
def task_preview(visible: TaskDep) -> PreviewEnvelope:
    """The task's next fire times in the project's timezone."""
    zone = visible.project.zone
    fires = upcoming(visible.task.cron, datetime.now(UTC), zone, PREVIEW_FIRES)
    data = TaskPreview(
        timezone=visible.project.timezone,
        fires=[fire.astimezone(zone).isoformat() for fire in fires],
    )
    return PreviewEnvelope.ok("task preview", data)


# --- bill history ---------------------------------------------------------------------------


@router.get("/history/", operation_id="listBills")
def history(
    conn: ConnDep,
    project: ProjectDep,
    device_type: Annotated[
        TypeFilter, Query(description="0 all, 1 water, 2 electricity")
    ] = TypeFilter.ALL,
    device_id: str | None = None,
    page: Page = 1,
    page_size: PageSize = 10,
) -> BillsEnvelope:
    """A project's bills, newest first, paginated."""
    where = BillFilter(project.id, TASK_TYPES.get(device_type), device_id or None)
    total, found = page_bills(conn, where, offset=offset(page, page_size), limit=page_size)
    data = BillsPublic(
        **paging(total, page, page_size),
        results=[_bill_public(bill, project) for bill in found],
    )
    return BillsEnvelope.ok("info list", data)


@router.get("/history/time/", operation_id="listBillsByDate")
def history_by_date(conn: ConnDep, period: BillPeriodDep) -> BillPeriodsEnvelope:
    """Bills whose period ends within [start_date, end_date] (whole days, project time),
    newest first, with the house and residents as they were when billed."""
    found = [_bill_period_public(b, period.project) for b in iter_bills(conn, period.where)]
    return BillPeriodsEnvelope.ok("success", found)


@router.get(
    "/history/export.csv",
    operation_id="exportBills",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The bills as CSV."}},
)
def export(period: BillPeriodDep, engine: EngineDep) -> StreamingResponse:
    """The bills of ``/history/time/`` as CSV, streamed without a row limit."""
    project = period.project
    name = f"bills-{project.id}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    return StreamingResponse(
        _csv_stream(engine, period),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _csv_stream(engine: Engine, period: BillPeriod) -> Iterator[str]:
    """Read after the request's transaction ended, on a connection of its own."""
    with engine.begin() as conn:
        yield from csv_text(iter_bills(conn, period.where), period.project.zone)
