"""The billing task form: create and edit a task, with a preview of its next fire times
before saving, and the live preview's JSON (``/billing/cron-preview``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Connection
from starlette.datastructures import FormData

from meterhub.api.deps import ConnDep
from meterhub.api.errors import invalid_response
from meterhub.billing.cron import FIELDS, Cron
from meterhub.billing.tasks import Task, create_task, update_task
from meterhub.errors import InvalidInput
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import Project
from meterhub.web.billing_tasks import (
    CRON_ORDER,
    TaskDep,
    fire_times,
)
from meterhub.web.forms import chosen_project, form_text, project_choices
from meterhub.web.routing import json_feed, notice_redirect, page_router
from meterhub.web.session import FormDep, Viewer, ViewerDep
from meterhub.web.templating import render

router = page_router()

DEFAULT_CRON = {"month": "*", "day": "1", "hour": "0", "minute": "0"}
NAME_MAX = 255
DESCRIPTION_MAX = 10_000


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
            name=form_text(form, "name").strip(),
            project_id=form_text(form, "project_id"),
            device_type=form_text(form, "device_type"),
            crontab={name: form_text(form, name) for name in FIELDS},
            enabled=form.get("enabled") is not None,
            description=form_text(form, "description"),
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
        project = chosen_project(form.project_id, viewer, conn)
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
    return notice_redirect(f"/billing/tasks/{task.key}", f"Task “{task.name}” created")


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
    return notice_redirect(f"/billing/tasks/{task.key}", f"Task “{form.name}” saved")


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
    fires = None if errors else fire_times(Cron.parse(form.crontab), project)
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
        "projects": [] if task else project_choices(conn, viewer),
        "errors": errors or {},
        "fires": fires,
        "fields": CRON_ORDER,
        "device_types": list(DeviceType),
    }
    return render(request, "task_form.html", viewer, context, status=400 if errors else 200)


@router.get("/billing/cron-preview")
@json_feed
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
        project = chosen_project(project_id, viewer, conn)
        cron = Cron.parse({"month": month, "day": day, "hour": hour, "minute": minute})
    except InvalidInput as exc:
        return invalid_response(exc.errors)
    fires = [fire.isoformat() for fire in fire_times(cron, project)]
    return JSONResponse({"timezone": project.timezone, "fires": fires})
