"""An alert's life: fired when its condition starts, kept open (quietly) while it holds,
reminded after ``remind_after_minutes`` unless acknowledged, resolved when it ends.

Every transition is one guarded statement, so two evaluators at once change each alert
once: an alert is opened by an insert that the unique open (rule, meter) index turns into
nothing for the second; a reminder and a resolution are updates whose condition the
second finds no longer true. Only the evaluator that made a transition notifies it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.alerts.batches import in_batches
from meterhub.alerts.conditions import MINUTE_US, Finding, Verdict
from meterhub.alerts.notify import Event, enqueue
from meterhub.alerts.rules import Rule
from meterhub.alerts.tables import alerts

OPEN = alerts.c.resolved_at.is_(None)


@dataclass(frozen=True, slots=True)
class Transitions:
    """Ids of the alerts this evaluation fired, reminded of and resolved."""

    fired: list[int]
    reminded: list[int]
    resolved: list[int]


def apply(conn: Connection, rule: Rule, verdict: Verdict, now: int) -> Transitions:
    """Bring the rule's alerts in line with ``verdict`` and queue the notifications."""
    query = select(alerts.c.device_pk, alerts.c.id).where(alerts.c.rule_id == rule.id, OPEN)
    open_now = conn.execute(query).all()
    ended = [alert for pk, alert in open_now if pk not in verdict.holding]
    opened = {pk for pk, _ in open_now}
    started = [found for pk, found in verdict.holding.items() if pk not in opened]
    fired = _fire(conn, rule, started, now)
    resolved = _resolve(conn, ended, now)
    reminded = _remind(conn, rule, now)
    enqueue(conn, fired, Event.FIRED, now)
    enqueue(conn, reminded, Event.REMINDER, now)
    enqueue(conn, resolved, Event.RESOLVED, now)
    return Transitions(fired, reminded, resolved)


def _fire(conn: Connection, rule: Rule, started: list[Finding], now: int) -> list[int]:
    if not started:
        return []
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(alerts)
        .on_conflict_do_nothing(index_elements=["rule_id", "device_pk"], index_where=OPEN)
        .returning(alerts.c.id)
    )
    rows = [
        {
            "rule_id": rule.id,
            "project_id": rule.project_id,
            "device_pk": found.device_pk,
            "device_id": found.device_id,
            "fired_at": now,
            "last_notified_at": now,
            "detail": json.dumps(found.detail),
        }
        for found in started
    ]
    fired: list[int] = []
    for batch in in_batches(rows):
        fired.extend(conn.scalars(statement, list(batch)))
    return fired


def _resolve(conn: Connection, ended: list[int], now: int) -> list[int]:
    resolved: list[int] = []
    for batch in in_batches(ended):
        statement = (
            update(alerts)
            .where(alerts.c.id.in_(batch), OPEN)
            .values(resolved_at=now)
            .returning(alerts.c.id)
        )
        resolved.extend(conn.scalars(statement))
    return resolved


def _remind(conn: Connection, rule: Rule, now: int) -> list[int]:
    """Open, unacknowledged alerts of the rule notified ``remind_after_minutes`` ago."""
    if rule.remind_after_minutes is None:
        return []
    due = now - rule.remind_after_minutes * MINUTE_US
    statement = (
        update(alerts)
        .where(
            alerts.c.rule_id == rule.id,
            OPEN,
            alerts.c.acknowledged_at.is_(None),
            alerts.c.last_notified_at <= due,
        )
        .values(last_notified_at=now)
        .returning(alerts.c.id)
    )
    return list(conn.scalars(statement))
