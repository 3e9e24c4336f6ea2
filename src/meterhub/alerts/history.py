"""Alerts as history: listed open first (then newest first), acknowledged by a user, and
the log of every notification attempt."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, case, func, select, update

from meterhub.alerts.tables import alert_channels, alert_rules, alerts, notification_attempts
from meterhub.alerts.tables import notifications as outbox
from meterhub.errors import NotFound
from meterhub.registry.tables import projects


class AlertState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: int
    rule_id: int
    rule_name: str
    kind: str
    project_id: int
    device_id: str
    fired_at: int
    acknowledged_at: int | None
    acknowledged_by: str | None
    resolved_at: int | None
    last_notified_at: int
    detail: Mapping[str, Any]

    @property
    def state(self) -> AlertState:
        return AlertState.OPEN if self.resolved_at is None else AlertState.RESOLVED

    @classmethod
    def from_row(cls, row: Any) -> AlertRecord:
        return cls(
            row.id,
            row.rule_id,
            row.rule_name,
            row.kind,
            row.project_id,
            row.device_id,
            row.fired_at,
            row.acknowledged_at,
            row.acknowledged_by,
            row.resolved_at,
            row.last_notified_at,
            json.loads(row.detail),
        )


_ALERTS: Select[Any] = select(
    alerts, alert_rules.c.name.label("rule_name"), alert_rules.c.kind
).join(alert_rules, alert_rules.c.id == alerts.c.rule_id)
_OPEN_FIRST = (case((alerts.c.resolved_at.is_(None), 0), else_=1), alerts.c.fired_at.desc())


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts: of these projects (``None``: all), a rule, a meter, a state."""

    project_ids: Collection[int] | None = None
    rule_id: int | None = None
    device_id: str | None = None
    state: AlertState | None = None
    device_pk: int | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.project_ids is not None:
            where.append(alerts.c.project_id.in_(list(self.project_ids)))
        if self.rule_id is not None:
            where.append(alerts.c.rule_id == self.rule_id)
        if self.device_id is not None:
            where.append(alerts.c.device_id == self.device_id)
        if self.device_pk is not None:
            where.append(alerts.c.device_pk == self.device_pk)
        if self.state is AlertState.OPEN:
            where.append(alerts.c.resolved_at.is_(None))
        elif self.state is AlertState.RESOLVED:
            where.append(alerts.c.resolved_at.is_not(None))
        return where


def page_alerts(
    conn: Connection, where: AlertFilter, *, offset: int, limit: int
) -> tuple[int, list[AlertRecord]]:
    """How many alerts match, and one page of them: open ones first, newest first."""
    clauses = where.clauses()
    total = conn.execute(select(func.count()).select_from(alerts).where(*clauses)).scalar_one()
    query = _ALERTS.where(*clauses).order_by(*_OPEN_FIRST, alerts.c.id.desc())
    rows = conn.execute(query.offset(offset).limit(limit))
    return total, [AlertRecord.from_row(row) for row in rows]


def get_alert(conn: Connection, alert_id: int) -> AlertRecord:
    row = conn.execute(_ALERTS.where(alerts.c.id == alert_id)).first()
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    return AlertRecord.from_row(row)


def acknowledge(conn: Connection, alert_id: int, username: str, now: int) -> AlertRecord:
    """Record who acknowledged the alert and when (the first acknowledgement counts); it
    stays open until its condition ends, without reminders."""
    conn.execute(
        update(alerts)
        .where(alerts.c.id == alert_id, alerts.c.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by=username)
    )
    return get_alert(conn, alert_id)


@dataclass(frozen=True, slots=True)
class OpenCount:
    project_id: int
    project_name: str
    open: int


def open_counts(conn: Connection, project_ids: Collection[int] | None) -> list[OpenCount]:
    """Projects (of ``project_ids``; ``None``: every project) with open alerts, and how
    many, most first."""
    count = func.count().label("open")
    query = (
        select(alerts.c.project_id, projects.c.name, count)
        .join(projects, projects.c.id == alerts.c.project_id)
        .where(*AlertFilter(project_ids, state=AlertState.OPEN).clauses())
        .group_by(alerts.c.project_id, projects.c.name)
        .order_by(count.desc(), alerts.c.project_id)
    )
    return [OpenCount(*row) for row in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One try of delivering a notification, and what came of it."""

    id: int
    notification_id: int
    alert_id: int
    channel_id: int
    channel_kind: str
    event: str
    attempted_at: int
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float


def page_attempts(
    conn: Connection, project_id: int, alert_id: int | None, *, offset: int, limit: int
) -> tuple[int, list[AttemptRecord]]:
    """Delivery attempts of a project's notifications (of one alert), newest first."""
    where = [alert_channels.c.project_id == project_id]
    if alert_id is not None:
        where.append(outbox.c.alert_id == alert_id)
    joined = notification_attempts.join(
        outbox, outbox.c.id == notification_attempts.c.notification_id
    )
    joined = joined.join(alert_channels, alert_channels.c.id == outbox.c.channel_id)
    total = conn.execute(select(func.count()).select_from(joined).where(*where)).scalar_one()
    query = (
        select(
            notification_attempts,
            outbox.c.alert_id,
            outbox.c.channel_id,
            outbox.c.event,
            alert_channels.c.kind,
        )
        .select_from(joined)
        .where(*where)
        .order_by(notification_attempts.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    records = [
        AttemptRecord(
            row.id,
            row.notification_id,
            row.alert_id,
            row.channel_id,
            row.kind,
            row.event,
            row.attempted_at,
            row.ok,
            row.status_code,
            row.error,
            row.duration_ms,
        )
        for row in conn.execute(query)
    ]
    return total, records
