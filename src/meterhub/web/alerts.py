"""Alerts of a project: open alerts first, then the history, the rules with a form to add
one (and to switch one off or on, or delete it), the notification channels and the latest
delivery attempts; acknowledging an alert (here or on its meter's page)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request, Response
from sqlalchemy import Connection

from meterhub.alerts import history, rule_store
from meterhub.alerts.history import AlertFilter, AlertState
from meterhub.alerts.notify import ChannelKind
from meterhub.alerts.rules import PARAMS, RuleKind
from meterhub.api.deps import ConnDep, SettingsDep, check_project
from meterhub.errors import InvalidInput, NotFound
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import Project
from meterhub.times import now_us
from meterhub.web.forms import form_text
from meterhub.web.paging import paged
from meterhub.web.projects import ProjectPage
from meterhub.web.routing import notice_redirect, page_router
from meterhub.web.session import FormDep, Viewer, ViewerDep
from meterhub.web.templating import render

router = page_router()

OPEN_SHOWN = 500
"""Open alerts listed at most (the API pages through all of them)."""
ATTEMPTS_SHOWN = 20
RULE_FIELDS = ("name", "kind", "device_id", "device_type", "remind_after_minutes")
PARAM_FIELDS = sorted({name for spec in PARAMS.values() for name in spec})


@router.get("/projects/{project_id}/alerts")
def alerts_page(
    request: Request,
    viewer: ViewerDep,
    project: ProjectPage,
    conn: ConnDep,
    page: int = 1,
    size: int = 25,
) -> Response:
    return _page(request, viewer, conn, project, page, size)


def _page(
    request: Request,
    viewer: Viewer,
    conn: Connection,
    project: Project,
    page: int = 1,
    size: int = 25,
    form: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
) -> Response:
    open_filter = AlertFilter([project.id], state=AlertState.OPEN)
    resolved = AlertFilter([project.id], state=AlertState.RESOLVED)
    pager, past = paged(
        request.url,
        page,
        size,
        lambda offset, limit: history.page_alerts(conn, resolved, offset=offset, limit=limit),
    )
    attempts = history.page_attempts(conn, project.id, None, offset=0, limit=ATTEMPTS_SHOWN)
    context: dict[str, Any] = {
        "project": project,
        "open": history.page_alerts(conn, open_filter, offset=0, limit=OPEN_SHOWN),
        "past": past,
        "pager": pager,
        "rules": rule_store.list_rules(conn, project.id),
        "channels": rule_store.list_channels(conn, project.id),
        "attempts": attempts[1],
        "kinds": list(RuleKind),
        "params": PARAMS,
        "device_types": list(DeviceType),
        "channel_kinds": list(ChannelKind),
        "form": form or {},
        "errors": errors or {},
    }
    return render(request, "alerts.html", viewer, context, status=400 if errors else 200)


@router.post("/projects/{project_id}/alerts/rules")
def add_rule(
    request: Request, viewer: ViewerDep, posted: FormDep, project: ProjectPage, conn: ConnDep
) -> Response:
    """Add a rule; the page again with what is wrong (400) if it does not fit."""
    form = {name: form_text(posted, name).strip() for name in (*RULE_FIELDS, *PARAM_FIELDS)}
    kind = form["kind"]
    given = PARAMS.get(RuleKind(kind), {}) if kind in tuple(RuleKind) else {}
    try:
        rule = rule_store.create_rule(
            conn,
            project.id,
            name=form["name"],
            kind=kind,
            device_id=form["device_id"] or None,
            device_type=form["device_type"] or None,
            params={name: form[name] for name in given if form[name]},
            remind_after_minutes=form["remind_after_minutes"] or None,
        )
    except InvalidInput as exc:
        return _page(request, viewer, conn, project, form=form, errors=exc.errors)
    return notice_redirect(f"/projects/{project.id}/alerts", f"Rule “{rule.name}” added")


@router.post("/projects/{project_id}/alerts/rules/{rule_id}/delete")
def delete_rule(
    viewer: ViewerDep, posted: FormDep, project: ProjectPage, rule_id: int, conn: ConnDep
) -> Response:
    rule = _own(rule_store.get_rule(conn, rule_id).project_id, project, rule_id, "rule")
    rule_store.delete_rule(conn, rule)
    return notice_redirect(f"/projects/{project.id}/alerts", "Rule deleted")


@router.post("/projects/{project_id}/alerts/rules/{rule_id}/{switch}")
def switch_rule(
    viewer: ViewerDep,
    posted: FormDep,
    project: ProjectPage,
    rule_id: int,
    switch: Literal["enable", "disable"],
    conn: ConnDep,
) -> Response:
    """Switch a rule on or off (off: its open alerts resolve at the next evaluation)."""
    rule = rule_store.get_rule(conn, rule_id)
    _own(rule.project_id, project, rule_id, "rule")
    rule_store.update_rule(conn, rule, {"enabled": switch == "enable"})
    return notice_redirect(f"/projects/{project.id}/alerts", f"Rule “{rule.name}” {switch}d")


@router.post("/projects/{project_id}/alerts/channels")
def add_channel(
    request: Request,
    viewer: ViewerDep,
    posted: FormDep,
    project: ProjectPage,
    conn: ConnDep,
    settings: SettingsDep,
) -> Response:
    form = {name: form_text(posted, name).strip() for name in ("kind", "url", "secret")}
    form["addresses"] = form_text(posted, "addresses")
    try:
        rule_store.create_channel(
            conn,
            project.id,
            kind=form["kind"],
            url=form["url"] or None,
            secret=form["secret"] or None,
            addresses=form["addresses"].replace(";", ",").replace("\n", ",").split(","),
            targets=settings.webhook_targets,
        )
    except InvalidInput as exc:
        form.pop("secret")
        return _page(request, viewer, conn, project, form=form, errors=exc.errors)
    return notice_redirect(f"/projects/{project.id}/alerts", "Channel added")


@router.post("/projects/{project_id}/alerts/channels/{channel_id}/delete")
def delete_channel(
    viewer: ViewerDep, posted: FormDep, project: ProjectPage, channel_id: int, conn: ConnDep
) -> Response:
    owner = rule_store.get_channel(conn, channel_id).project_id
    rule_store.delete_channel(conn, _own(owner, project, channel_id, "channel"))
    return notice_redirect(f"/projects/{project.id}/alerts", "Channel deleted")


def _own(owner: int, project: Project, item: int, what: str) -> int:
    """``item`` when it belongs to the project of the path; 404 otherwise."""
    if owner != project.id:
        raise NotFound(f"no alert {what} {item} in this project")
    return item


@router.post("/alerts/{alert_id}/ack")
def acknowledge(viewer: ViewerDep, posted: FormDep, alert_id: int, conn: ConnDep) -> Response:
    """Acknowledge an alert; back to the page it was acknowledged on (``next``)."""
    alert = history.get_alert(conn, alert_id)
    check_project(viewer.user, alert.project_id)
    history.acknowledge(conn, alert.id, viewer.user.username, now_us())
    back = form_text(posted, "next")
    if not back.startswith("/") or back.startswith("//"):
        back = f"/projects/{alert.project_id}/alerts"
    return notice_redirect(back, f"Alert on meter {alert.device_id} acknowledged")
