"""Billing task pages: the list, one task with its runs, the create and edit form (with a
preview of the next fire times before saving), and enable, disable, run now and delete.

Who may do what mirrors the scheduler API: anyone who sees a project manages its tasks;
another project's task answers 404, as if it did not exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import Connection
from starlette.datastructures import FormData

from meterhub.api.deps import ConnDep, check_project, visible_project
from meterhub.api.errors import invalid_response
from meterhub.api.scheduler import PREVIEW_FIRES
from meterhub.billing.cron import FIELDS, Cron, next_fire, upcoming
from meterhub.billing.runs import RunReport, list_runs, manual_instant, run_task
from meterhub.billing.tasks import (
    Task,
    create_task,
    delete_task,
    find_tasks,
    get_task,
    set_enabled,
    update_task,
)
from meterhub.errors import InvalidInput
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import Project, get_project, list_projects
from meterhub.times import from_us, to_us
from meterhub.web.paging import paged
from meterhub.web.projects import device_type_filter
from meterhub.web.routing import page_router
from meterhub.web.session import FormDep, Viewer, ViewerDep
from meterhub.web.templating import render

router = page_router()

CRON_ORDER = ("month", "day", "hour", "minute")
DEFAULT_CRON = {"month": "*", "day": "1", "hour": "0", "minute": "0"}
NAME_MAX = 255
DESCRIPTION_MAX = 10_000
PROJECT_CHOICES = 1000
"""The most projects a select lists."""
ROW_ID = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class VisibleTask:
    task: Task
    project: Project


def _visible_task(key: str, viewer: ViewerDep, conn: ConnDep) -> VisibleTask:
    """The task in the path; 404 alike when it does not exist and when its project is hidden."""
    task = get_task(conn, key)
    check_project(viewer.user, task.project_id)
    return VisibleTask(task, get_project(conn, task.project_id))


TaskDep = Annotated[VisibleTask, Depends(_visible_task)]


@dataclass(frozen=True, slots=True)
class TaskForm:
    """The task form's fields as typed, so that they can be shown again."""

    name: str = ""
    project_id: str = ""
    device_type: str = DeviceType.ELECTRICITY.value
    crontab: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CRON))
    enabled: bool = True
    description: str = ""

    @classmethod
    def posted(cls, form: FormData) -> TaskForm:
        return cls(
            name=_text(form, "name").strip(),
            project_id=_text(form, "project_id"),
            device_type=_text(form, "device_type"),
            crontab={name: _text(form, name) for name in FIELDS},
            enabled=form.get("enabled") is not None,
            description=_text(form, "description"),
        )

    @classmethod
    def of(cls, task: Task) -> TaskForm:
        return cls(
            task.name,
            str(task.project_id),
            task.device_type.value,
            dict(task.cron.source),
            task.enabled,
            task.description,
        )

    def problems(self, *, saving: bool) -> dict[str, list[str]]:
        """Bad fields with their messages: the schedule, and when ``saving`` the rest too."""
        errors: dict[str, list[str]] = {}
        try:
            Cron.parse(self.crontab)
        except InvalidInput as exc:
            errors.update(exc.errors)
        if not saving:
            return errors
        if not 1 <= len(self.name) <= NAME_MAX:
            errors["name"] = [f"must be 1-{NAME_MAX} characters"]
        if len(self.description) > DESCRIPTION_MAX:
            errors["description"] = [f"must be at most {DESCRIPTION_MAX} characters"]
        if self.device_type not in tuple(DeviceType):
            errors["device_type"] = [f"one of {', '.join(DeviceType)}"]
        return errors


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _chosen_project(text: str, viewer: Viewer, conn: Connection) -> Project:
    """The project a form or filter names; 404 when the viewer may not see it."""
    if not ROW_ID.fullmatch(text.strip()):
        raise InvalidInput.field("project_id", "choose a project")
    return visible_project(int(text), viewer.user, conn)


def _fires(cron: Cron, project: Project) -> list[datetime]:
    """The next fire times (as the API's preview), in the project's timezone."""
    zone = project.zone
    return [
        fire.astimezone(zone) for fire in upcoming(cron, datetime.now(UTC), zone, PREVIEW_FIRES)
    ]


def _done(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode({'notice': notice})}", status_code=303)


def _choices(conn: Connection, viewer: Viewer) -> list[Project]:
    only = None if viewer.user.is_admin else viewer.user.project_ids
    return list_projects(conn, only, offset=0, limit=PROJECT_CHOICES)[1]


# --- pages ----------------------------------------------------------------------------------


@router.get("/billing/tasks")
def tasks_page(
    request: Request,
    viewer: ViewerDep,
    conn: ConnDep,
    project_id: str = "",
    device_type: str = "",
    page: int = 1,
    size: int = 25,
) -> Response:
    """The tasks of the projects the viewer sees (or of one), with their next fire."""
    only = None if viewer.user.is_admin else viewer.user.project_ids
    if project_id:
        only = frozenset({_chosen_project(project_id, viewer, conn).id})
    kind = device_type_filter(device_type)
    pager, found = paged(
        request.url,
        page,
        size,
        lambda offset, limit: find_tasks(conn, only, kind, offset=offset, limit=limit),
    )
    ids = {task.project_id for task in found}
    projects = {p.id: p for p in list_projects(conn, ids, offset=0, limit=len(ids))[1]}
    now = datetime.now(UTC)
    rows = [(task, projects[task.project_id]) for task in found]
    context = {
        "rows": [(task, project, _next(task, project, now)) for task, project in rows],
        "pager": pager,
        "projects": _choices(conn, viewer),
        "project_id": project_id,
        "device_type": device_type,
        "device_types": list(DeviceType),
    }
    return render(request, "billing_tasks.html", viewer, context)


def _next(task: Task, project: Project, now: datetime) -> int | None:
    """When an enabled task fires next (µs)."""
    if not task.enabled:
        return None
    return to_us(next_fire(task.cron, now, project.zone), UTC)


@router.get("/billing/tasks/new")
def new_task_page(
    request: Request, viewer: ViewerDep, conn: ConnDep, project_id: str = ""
) -> Response:
    return _form_page(request, viewer, conn, TaskForm(project_id=project_id))


@router.post("/billing/tasks")
def create(request: Request, viewer: ViewerDep, posted: FormDep, conn: ConnDep) -> Response:
    """Save a new task, or show the form again with a preview or with what is wrong."""
    form = TaskForm.posted(posted)
    try:
        project = _chosen_project(form.project_id, viewer, conn)
    except InvalidInput as exc:
        errors = {**exc.errors, **form.problems(saving=True)}
        return _form_page(request, viewer, conn, form, errors=errors)
    shown = _unless_saved(request, viewer, conn, _previewing(posted), form, project)
    if shown:
        return shown
    task = create_task(
        conn,
        project.id,
        form.name,
        DeviceType(form.device_type),
        form.crontab,
        enabled=form.enabled,
        description=form.description,
    )
    return _done(f"/billing/tasks/{task.key}", f"Task “{task.name}” created")


@router.get("/billing/tasks/{key}/edit")
def edit_task_page(
    request: Request, viewer: ViewerDep, conn: ConnDep, visible: TaskDep
) -> Response:
    form = TaskForm.of(visible.task)
    return _form_page(request, viewer, conn, form, project=visible.project, task=visible.task)


@router.post("/billing/tasks/{key}")
def update(
    request: Request, viewer: ViewerDep, posted: FormDep, conn: ConnDep, visible: TaskDep
) -> Response:
    """Save the task's name, schedule, state and description (its project and type stay)."""
    task = visible.task
    form = replace(
        TaskForm.posted(posted),
        project_id=str(task.project_id),
        device_type=task.device_type.value,
    )
    shown = _unless_saved(request, viewer, conn, _previewing(posted), form, visible.project, task)
    if shown:
        return shown
    update_task(
        conn,
        task.key,
        name=form.name,
        crontab=form.crontab,
        enabled=form.enabled,
        description=form.description,
    )
    return _done(f"/billing/tasks/{task.key}", f"Task “{form.name}” saved")


def _unless_saved(
    request: Request,
    viewer: Viewer,
    conn: Connection,
    previewing: bool,
    form: TaskForm,
    project: Project,
    task: Task | None = None,
) -> Response | None:
    """The form again, with the preview asked for or with the errors (400); ``None`` when
    the form is to be saved."""
    errors = form.problems(saving=not previewing)
    if not previewing and not errors:
        return None
    fires = None if errors else _fires(Cron.parse(form.crontab), project)
    return _form_page(
        request, viewer, conn, form, project=project, task=task, errors=errors, fires=fires
    )


def _previewing(posted: FormData) -> bool:
    """Whether the form was sent with its Preview button rather than Save."""
    return posted.get("action") == "preview"


def _form_page(
    request: Request,
    viewer: Viewer,
    conn: Connection,
    form: TaskForm,
    project: Project | None = None,
    task: Task | None = None,
    errors: dict[str, list[str]] | None = None,
    fires: list[datetime] | None = None,
) -> Response:
    context = {
        "form": form,
        "task": task,
        "project": project,
        "projects": [] if task else _choices(conn, viewer),
        "errors": errors or {},
        "fires": fires,
        "fields": CRON_ORDER,
        "device_types": list(DeviceType),
    }
    return render(request, "task_form.html", viewer, context, status=400 if errors else 200)


@router.get("/billing/cron-preview")
def cron_preview(
    viewer: ViewerDep,
    conn: ConnDep,
    project_id: str = "",
    month: str = "",
    day: str = "",
    hour: str = "",
    minute: str = "",
) -> Response:
    """The next fire times of a schedule in a project's timezone (JSON, for the live preview);
    400 ``{"detail", "errors"}`` naming the bad field."""
    try:
        project = _chosen_project(project_id, viewer, conn)
        cron = Cron.parse({"month": month, "day": day, "hour": hour, "minute": minute})
    except InvalidInput as exc:
        return invalid_response(exc.errors)
    fires = [fire.isoformat() for fire in _fires(cron, project)]
    return JSONResponse({"timezone": project.timezone, "fires": fires})


@router.get("/billing/tasks/{key}")
def task_page(
    request: Request,
    viewer: ViewerDep,
    conn: ConnDep,
    visible: TaskDep,
    page: int = 1,
    size: int = 25,
) -> Response:
    """A task, its next fire times, and the record of each of its runs."""
    task = visible.task
    pager, runs = paged(
        request.url,
        page,
        size,
        lambda offset, limit: list_runs(conn, task.key, offset=offset, limit=limit),
    )
    context = {
        "task": task,
        "project": visible.project,
        "fires": _fires(task.cron, visible.project) if task.enabled else None,
        "runs": runs,
        "pager": pager,
        "fields": CRON_ORDER,
    }
    return render(request, "task.html", viewer, context)


# --- actions --------------------------------------------------------------------------------


@router.post("/billing/tasks/{key}/enable")
def enable(visible: TaskDep, _form: FormDep, conn: ConnDep) -> Response:
    return _switch(conn, visible.task, enabled=True)


@router.post("/billing/tasks/{key}/disable")
def disable(visible: TaskDep, _form: FormDep, conn: ConnDep) -> Response:
    return _switch(conn, visible.task, enabled=False)


def _switch(conn: Connection, task: Task, *, enabled: bool) -> Response:
    set_enabled(conn, task.key, enabled)
    state = "enabled: it runs on its schedule" if enabled else "disabled: it no longer runs"
    return _done(f"/billing/tasks/{task.key}", f"Task “{task.name}” {state}")


@router.post("/billing/tasks/{key}/run")
def run_now(visible: TaskDep, posted: FormDep, conn: ConnDep) -> Response:
    """Bill the task's meters up to the given instant (default: now, to the minute), once."""
    at = manual_instant(_text(posted, "at").strip() or None, visible.project.zone)
    report = run_task(conn, visible.task.key, at)
    return _done(f"/billing/tasks/{visible.task.key}", _run_notice(report, visible.project))


def _run_notice(report: RunReport, project: Project) -> str:
    when = from_us(report.scheduled_at, project.zone).strftime("%Y-%m-%d %H:%M %Z")
    if report.run_id is None:
        return f"The run for {when} had already been made: nothing billed again"
    return f"Run for {when}: {report.billed} billed, {len(report.skipped)} not billed"


@router.post("/billing/tasks/{key}/delete")
def delete(visible: TaskDep, _form: FormDep, conn: ConnDep) -> Response:
    """Delete the task; its bills and run records stay in the history."""
    delete_task(conn, visible.task.key)
    return _done("/billing/tasks", f"Task “{visible.task.name}” deleted; its bills are kept")
