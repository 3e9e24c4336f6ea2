"""Alerts: rules and notification channels per project, the alerts they fired (open
first), acknowledgements and the log of delivery attempts.

Access follows projects (``api.projects``): everything under a project the caller cannot
see answers 404, as if it did not exist. Bad input is 400 naming each field
(``params.minutes``, ``url``, ...). Times are ISO 8601 in the project's timezone; the
``detail`` of an alert is what its condition found (times there in µs since the epoch).
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from meterhub.alerts import history, rule_store
from meterhub.alerts.history import AlertFilter, AlertRecord, AlertState, AttemptRecord
from meterhub.alerts.notify import ChannelKind
from meterhub.alerts.rule_store import Channel
from meterhub.alerts.rules import Rule, RuleKind
from meterhub.api.deps import ConnDep, CurrentUser, ProjectDep, SettingsDep, check_project
from meterhub.api.pagination import NumberedPage, Page, PageSize, offset, paging
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import get_project
from meterhub.times import iso, now_us

router = APIRouter(prefix="/api/v1", tags=["alerts"])

RowId = Annotated[int, Path(ge=1, le=2_147_483_647)]

# Schemas


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertRuleCreate(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "Meter silent", "kind": "offline", "params": {"minutes": 30}},
                {
                    "name": "Leak",
                    "kind": "night_flow",
                    "params": {"from": "01:00", "to": "05:00", "min_flow": 0},
                    "remind_after_minutes": 240,
                },
            ]
        }
    )

    name: str = Field(description="1-255 characters.")
    kind: RuleKind
    device_id: str | None = Field(None, max_length=64, description="One meter of the project.")
    device_type: DeviceType | None = Field(
        None, description="Every meter of this type in the project (neither: every meter)."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="By kind: see README.")
    remind_after_minutes: int | None = Field(
        None, description="Remind of an open, unacknowledged alert this often; null: never."
    )
    enabled: bool = True


class AlertRuleUpdate(Strict):
    name: str | None = None
    params: dict[str, Any] | None = None
    remind_after_minutes: int | None = None
    enabled: bool | None = None


class AlertRulePublic(BaseModel):
    id: int
    project_id: int
    name: str
    kind: RuleKind
    device_id: str | None
    device_type: DeviceType | None
    params: dict[str, Any]
    remind_after_minutes: int | None
    enabled: bool
    created_at: str


class AlertRulesPublic(BaseModel):
    count: int
    results: list[AlertRulePublic]


class AlertChannelCreate(Strict):
    kind: ChannelKind
    url: str | None = Field(None, description="Webhook: the http(s) URL posted to.")
    secret: str | None = Field(
        None, description="Webhook: the HMAC-SHA256 key of its signature, 16-255 characters."
    )
    addresses: list[str] = Field(default_factory=list, description="E-mail: the recipients.")
    enabled: bool = True


class AlertChannelPublic(BaseModel):
    """A channel; its secret is never answered."""

    id: int
    project_id: int
    kind: ChannelKind
    url: str | None
    addresses: list[str]
    enabled: bool
    created_at: str


class AlertChannelsPublic(BaseModel):
    count: int
    results: list[AlertChannelPublic]


class AlertPublic(BaseModel):
    id: int
    rule_id: int
    rule_name: str
    kind: RuleKind
    project_id: int
    device_id: str
    state: AlertState
    fired_at: str
    acknowledged_at: str | None
    acknowledged_by: str | None
    resolved_at: str | None
    detail: dict[str, Any]


class AlertsPublic(NumberedPage):
    results: list[AlertPublic]


class AttemptPublic(BaseModel):
    id: int
    notification_id: int
    alert_id: int
    channel_id: int
    channel_kind: ChannelKind
    event: str
    attempted_at: str
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float


class AttemptsPublic(NumberedPage):
    results: list[AttemptPublic]


# Access


def _check(user: CurrentUser, conn: ConnDep, project_id: int) -> ZoneInfo:
    """The zone of a project the caller may see; 404 (as if missing) otherwise."""
    check_project(user, project_id)
    return get_project(conn, project_id).zone


def visible_rule(rule_id: RowId, user: CurrentUser, conn: ConnDep) -> Rule:
    rule = rule_store.get_rule(conn, rule_id)
    check_project(user, rule.project_id)
    return rule


def visible_alert(alert_id: RowId, user: CurrentUser, conn: ConnDep) -> AlertRecord:
    alert = history.get_alert(conn, alert_id)
    check_project(user, alert.project_id)
    return alert


RuleDep = Annotated[Rule, Depends(visible_rule)]
AlertDep = Annotated[AlertRecord, Depends(visible_alert)]


def _when(us: int | None, zone: ZoneInfo) -> str | None:
    return None if us is None else iso(us, zone)


def _rule_public(rule: Rule, zone: ZoneInfo) -> AlertRulePublic:
    return AlertRulePublic(
        id=rule.id,
        project_id=rule.project_id,
        name=rule.name,
        kind=rule.kind,
        device_id=rule.device_id,
        device_type=rule.device_type,
        params=dict(rule.params),
        remind_after_minutes=rule.remind_after_minutes,
        enabled=rule.enabled,
        created_at=iso(rule.created_at, zone),
    )


def _channel_public(channel: Channel, zone: ZoneInfo) -> AlertChannelPublic:
    return AlertChannelPublic(
        id=channel.id,
        project_id=channel.project_id,
        kind=channel.kind,
        url=channel.url,
        addresses=channel.addresses,
        enabled=channel.enabled,
        created_at=iso(channel.created_at, zone),
    )


def _alert_public(alert: AlertRecord, zone: ZoneInfo) -> AlertPublic:
    return AlertPublic(
        id=alert.id,
        rule_id=alert.rule_id,
        rule_name=alert.rule_name,
        kind=RuleKind(alert.kind),
        project_id=alert.project_id,
        device_id=alert.device_id,
        state=alert.state,
        fired_at=iso(alert.fired_at, zone),
        acknowledged_at=_when(alert.acknowledged_at, zone),
        acknowledged_by=alert.acknowledged_by,
        resolved_at=_when(alert.resolved_at, zone),
        detail=dict(alert.detail),
    )


def _attempt_public(attempt: AttemptRecord, zone: ZoneInfo) -> AttemptPublic:
    return AttemptPublic(
        id=attempt.id,
        notification_id=attempt.notification_id,
        alert_id=attempt.alert_id,
        channel_id=attempt.channel_id,
        channel_kind=ChannelKind(attempt.channel_kind),
        event=attempt.event,
        attempted_at=iso(attempt.attempted_at, zone),
        ok=attempt.ok,
        status_code=attempt.status_code,
        error=attempt.error,
        duration_ms=attempt.duration_ms,
    )


# Rules


@router.post("/projects/{project_id}/alert-rules/", status_code=201, operation_id="createAlertRule")
def create_rule(project: ProjectDep, body: AlertRuleCreate, conn: ConnDep) -> AlertRulePublic:
    """Add an alert rule to a project."""
    rule = rule_store.create_rule(
        conn,
        project.id,
        name=body.name,
        kind=body.kind,
        device_id=body.device_id,
        device_type=None if body.device_type is None else body.device_type.value,
        params=body.params,
        remind_after_minutes=body.remind_after_minutes,
        enabled=body.enabled,
    )
    return _rule_public(rule, project.zone)


@router.get("/projects/{project_id}/alert-rules/", operation_id="listAlertRules")
def list_rules(project: ProjectDep, conn: ConnDep) -> AlertRulesPublic:
    """A project's alert rules, oldest first."""
    found = rule_store.list_rules(conn, project.id)
    return AlertRulesPublic(
        count=len(found), results=[_rule_public(r, project.zone) for r in found]
    )


@router.get("/alert-rules/{rule_id}/", operation_id="getAlertRule")
def get_rule(rule: RuleDep, user: CurrentUser, conn: ConnDep) -> AlertRulePublic:
    """One alert rule."""
    return _rule_public(rule, _check(user, conn, rule.project_id))


@router.patch("/alert-rules/{rule_id}/", operation_id="updateAlertRule")
def update_rule(
    rule: RuleDep, body: AlertRuleUpdate, user: CurrentUser, conn: ConnDep
) -> AlertRulePublic:
    """Rename a rule, change its parameters or reminders, or switch it off (its open alerts
    are then resolved at the next evaluation); its kind and meters stay."""
    given = body.model_dump(exclude_unset=True)  # null: unchanged, but for reminders (none)
    changes = {k: v for k, v in given.items() if v is not None or k == "remind_after_minutes"}
    changed = rule_store.update_rule(conn, rule, changes)
    return _rule_public(changed, _check(user, conn, rule.project_id))


@router.delete(
    "/alert-rules/{rule_id}/",
    status_code=204,
    response_class=Response,
    operation_id="deleteAlertRule",
)
def delete_rule(rule: RuleDep, conn: ConnDep) -> None:
    """Remove a rule with the history of its alerts (switch it off to keep that)."""
    rule_store.delete_rule(conn, rule.id)


# Channels


@router.post(
    "/projects/{project_id}/alert-channels/", status_code=201, operation_id="createAlertChannel"
)
def create_channel(
    project: ProjectDep, body: AlertChannelCreate, conn: ConnDep, settings: SettingsDep
) -> AlertChannelPublic:
    """Send a project's notifications to a webhook (signed) or to e-mail addresses."""
    channel = rule_store.create_channel(
        conn,
        project.id,
        kind=body.kind,
        url=body.url,
        secret=body.secret,
        addresses=body.addresses,
        enabled=body.enabled,
        targets=settings.webhook_targets,
    )
    return _channel_public(channel, project.zone)


@router.get("/projects/{project_id}/alert-channels/", operation_id="listAlertChannels")
def list_channels(project: ProjectDep, conn: ConnDep) -> AlertChannelsPublic:
    """A project's notification channels (without their secrets)."""
    found = rule_store.list_channels(conn, project.id)
    return AlertChannelsPublic(
        count=len(found), results=[_channel_public(c, project.zone) for c in found]
    )


@router.delete(
    "/alert-channels/{channel_id}/",
    status_code=204,
    response_class=Response,
    operation_id="deleteAlertChannel",
)
def delete_channel(channel_id: RowId, user: CurrentUser, conn: ConnDep) -> None:
    """Remove a channel; its notifications not yet delivered are dropped."""
    channel = rule_store.get_channel(conn, channel_id)
    check_project(user, channel.project_id)
    rule_store.delete_channel(conn, channel.id)


# Alerts


@router.get("/projects/{project_id}/alerts/", operation_id="listAlerts")
def list_alerts(
    project: ProjectDep,
    conn: ConnDep,
    state: AlertState | None = None,
    rule_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
    device_id: Annotated[str | None, Query(max_length=64, pattern=r"^[^\x00-\x1f]*$")] = None,
    page: Page = 1,
    page_size: PageSize = 100,
) -> AlertsPublic:
    """A project's alerts, open ones first, then newest first; filtered by state, rule and
    meter."""
    where = AlertFilter([project.id], rule_id=rule_id, device_id=device_id, state=state)
    total, found = history.page_alerts(conn, where, offset=offset(page, page_size), limit=page_size)
    return AlertsPublic(
        **paging(total, page, page_size),
        results=[_alert_public(a, project.zone) for a in found],
    )


@router.get("/alerts/{alert_id}/", operation_id="getAlert")
def get_alert(alert: AlertDep, user: CurrentUser, conn: ConnDep) -> AlertPublic:
    """One alert."""
    return _alert_public(alert, _check(user, conn, alert.project_id))


@router.post("/alerts/{alert_id}/ack/", operation_id="acknowledgeAlert")
def acknowledge(alert: AlertDep, user: CurrentUser, conn: ConnDep) -> AlertPublic:
    """Acknowledge an alert: who and when are kept (the first acknowledgement counts); it
    stays open until its condition ends, and is not reminded of any more."""
    acked = history.acknowledge(conn, alert.id, user.username, now_us())
    return _alert_public(acked, _check(user, conn, alert.project_id))


@router.get(
    "/projects/{project_id}/notification-attempts/", operation_id="listNotificationAttempts"
)
def list_attempts(
    project: ProjectDep,
    conn: ConnDep,
    alert_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
    page: Page = 1,
    page_size: PageSize = 100,
) -> AttemptsPublic:
    """Every try of delivering a project's notifications (of one alert), newest first:
    its outcome, HTTP status and error."""
    total, found = history.page_attempts(
        conn, project.id, alert_id, offset=offset(page, page_size), limit=page_size
    )
    return AttemptsPublic(
        **paging(total, page, page_size),
        results=[_attempt_public(a, project.zone) for a in found],
    )
