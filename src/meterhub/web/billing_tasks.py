"""Billing task pages: the list, one task with its runs, and enable, disable, run now and
delete; also what the task form shares with them (the visible task, fire times, notices).

Who may do what mirrors the scheduler API: anyone who sees a project manages its tasks;
another project's task answers 404, as if it did not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy import Connection

from meterhub.api.deps import ConnDep, VisibleTask, visible_task
from meterhub.api.scheduler import PREVIEW_FIRES
from meterhub.billing.cron import Cron, next_fire, upcoming
from meterhub.billing.runs import RunReport, list_runs, manual_instant, run_task
from meterhub.billing.tasks import Task, delete_task, find_tasks, set_enabled
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import Project, list_projects
from meterhub.times import from_us, to_us
from meterhub.web.forms import chosen_project, form_text, project_choices
from meterhub.web.paging import paged
from meterhub.web.projects import device_type_filter
from meterhub.web.routing import notice_redirect, page_router
from meterhub.web.session import FormDep, ViewerDep
from meterhub.web.templating import render

router = page_router()

CRON_ORDER = ("month", "day", "hour", "minute")


def _visible_task(key: str, viewer: ViewerDep, conn: ConnDep) -> VisibleTask:
    """The task in the path, if the viewer may see its project (else 404)."""
    return visible_task(conn, viewer.user, key)


TaskDep = Annotated[VisibleTask, Depends(_visible_task)]


def fire_times(cron: Cron, project: Project) -> list[datetime]:
    """The next fire times (as the API's preview), in the project's timezone."""
    zone = project.zone
    return [
        fire.astimezone(zone) for fire in upcoming(cron, datetime.now(UTC), zone, PREVIEW_FIRES)
    ]


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
    only = viewer.user.visible_projects
    if project_id:
        only = frozenset({chosen_project(project_id, viewer, conn).id})
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
        "projects": project_choices(conn, viewer),
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
        "fires": fire_times(task.cron, visible.project) if task.enabled else None,
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
    return notice_redirect(f"/billing/tasks/{task.key}", f"Task “{task.name}” {state}")


@router.post("/billing/tasks/{key}/run")
def run_now(visible: TaskDep, posted: FormDep, conn: ConnDep) -> Response:
    """Bill the task's meters up to the given instant (default: now, to the minute), once."""
    at = manual_instant(form_text(posted, "at").strip() or None, visible.project.zone)
    report = run_task(conn, visible.task.key, at)
    return notice_redirect(
        f"/billing/tasks/{visible.task.key}", _run_notice(report, visible.project)
    )


def _run_notice(report: RunReport, project: Project) -> str:
    when = from_us(report.scheduled_at, project.zone).strftime("%Y-%m-%d %H:%M %Z")
    if report.run_id is None:
        return f"The run for {when} had already been made: nothing billed again"
    return f"Run for {when}: {report.billed} billed, {len(report.skipped)} not billed"


@router.post("/billing/tasks/{key}/delete")
def delete(visible: TaskDep, _form: FormDep, conn: ConnDep) -> Response:
    """Delete the task; its bills and run records stay in the history."""
    delete_task(conn, visible.task.key)
    return notice_redirect(
        "/billing/tasks", f"Task “{visible.task.name}” deleted; its bills are kept"
    )
