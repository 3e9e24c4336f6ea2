"""Each rule kind's condition, evaluated over every meter the rule watches at once: one or
a few set-based statements per rule, never a query per meter.

An evaluation answers a ``Verdict``: the meters for which the condition holds (with what
was found), and the rule's new watermark. Kinds measured over closed periods (consumption
per hour or day, the night window) look at each period once, when it has closed (and
``SETTLE_US`` has passed, for the reading after its end to arrive), and answer ``None``
in between: nothing changed, every open alert stays as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import (
    Connection,
    ScalarSelect,
    Select,
    Subquery,
    and_,
    case,
    exists,
    func,
    or_,
    select,
)

from meterhub.alerts.rules import Per, Rule, RuleKind
from meterhub.alerts.usage import consumptions_above
from meterhub.billing.cron import next_fire
from meterhub.billing.runs import REGISTER_CHANNEL
from meterhub.billing.tables import billing_tasks, bills
from meterhub.billing.tasks import Task
from meterhub.collector.health_store import meter_status
from meterhub.registry.channels import DeviceType
from meterhub.registry.tables import devices, houses, tags
from meterhub.storage.daily import local_midnight
from meterhub.storage.points import TimeRange
from meterhub.storage.series import read_span
from meterhub.storage.tables import chunks, points
from meterhub.times import HOUR_US, from_us, to_us

MINUTE_US = 60_000_000
SETTLE_US = 5 * MINUTE_US
"""How long after a period's end it is evaluated: time for the reading after it to arrive."""
LATE_US = MINUTE_US
"""How late a reading may be stored after its time and still be seen by an evaluation."""


@dataclass(frozen=True, slots=True)
class Finding:
    """A meter for which a rule's condition holds, and what was found (JSON-ready)."""

    device_pk: int
    device_id: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The meters whose condition holds now (every other open alert of the rule ends), and
    the instant up to which the rule's readings have been looked at."""

    holding: dict[int, Finding]
    watermark: int


Evaluate = Callable[[Connection, Rule, int, ZoneInfo], Verdict | None]


# --- periods (pure) -----------------------------------------------------------------------


def last_full_period(now: int, per: Per, zone: ZoneInfo) -> tuple[int, int]:
    """The last local hour or day in ``zone`` ended by ``now``, as µs bounds (an hour is 60
    minutes from a full local hour, which need not be a full UTC hour: Asia/Kolkata)."""
    local = from_us(now, zone)
    if per is Per.HOUR:
        end = to_us(local.replace(minute=0, second=0, microsecond=0), zone)
        return end - HOUR_US, end
    today = local.date()
    return local_midnight(today - timedelta(days=1), zone), local_midnight(today, zone)


def last_night(now: int, start: str, end: str, zone: ZoneInfo) -> tuple[int, int]:
    """The last night window (local ``HH:MM`` to ``HH:MM`` in ``zone``, across midnight when
    ``start`` is later than ``end``) ended by ``now``, as µs bounds."""
    local = from_us(now, zone)
    end_at = _local(local.date(), end, zone)
    if end_at > now:
        end_at = _local(local.date() - timedelta(days=1), end, zone)
    end_day = from_us(end_at, zone).date()
    start_day = end_day - timedelta(days=1) if start > end else end_day
    return _local(start_day, start, zone), end_at


def _local(day: date, hh_mm: str, zone: ZoneInfo) -> int:
    hour, minute = map(int, hh_mm.split(":"))
    return to_us(datetime(day.year, day.month, day.day, hour, minute), zone)


# --- the meters a rule watches ------------------------------------------------------------


def watched(rule: Rule) -> Select[Any]:
    """The meters of ``rule`` with their register's tag: its meter, or the meters (of its
    type) in the houses of its project."""
    register = case(
        *((devices.c.type == kind.value, name) for kind, name in REGISTER_CHANNEL.items())
    )
    query = (
        select(
            devices.c.id.label("device_pk"),
            devices.c.device_id,
            devices.c.type,
            devices.c.enabled,
            devices.c.created_at,
            tags.c.id.label("tag_id"),
        )
        .join(houses, houses.c.id == devices.c.house_id)
        .join(tags, and_(tags.c.device_pk == devices.c.id, tags.c.channel == register))
        .where(houses.c.project_id == rule.project_id)
    )
    if rule.device_pk is not None:
        query = query.where(devices.c.id == rule.device_pk)
    if rule.device_type is not None:
        query = query.where(devices.c.type == rule.device_type.value)
    return query


def _findings(rows: Any, detail: Callable[[Any], dict[str, Any]]) -> dict[int, Finding]:
    return {row.device_pk: Finding(row.device_pk, row.device_id, detail(row)) for row in rows}


def _newest_ts(w: Subquery) -> ScalarSelect[int]:
    """The time of the newest point of ``w``'s tag: one seek down the row table's key."""
    return select(func.max(points.c.ts)).where(points.c.tag_id == w.c.tag_id).scalar_subquery()


# --- the kinds ----------------------------------------------------------------------------


def offline(conn: Connection, rule: Rule, now: int, zone: ZoneInfo) -> Verdict:
    """Enabled meters whose last reading (stored, or seen by the poller) is older than
    ``minutes``; a meter never read counts from its registration."""
    minutes = rule.params["minutes"]
    w = watched(rule).where(devices.c.enabled.is_(True)).subquery()
    stored = func.coalesce(_newest_ts(w), 0)
    polled = func.coalesce(meter_status.c.last_seen, 0)
    seen = case((stored > polled, stored), else_=polled)
    since = case((seen > 0, seen), else_=w.c.created_at)
    query = (
        select(w.c.device_pk, w.c.device_id, seen.label("seen"))
        .select_from(w.outerjoin(meter_status, meter_status.c.device_pk == w.c.device_pk))
        .where(since < now - minutes * MINUTE_US)
    )
    rows = conn.execute(query)
    return Verdict(
        _findings(rows, lambda r: {"last_reading_at": r.seen or None, "minutes": minutes}), now
    )


def consumption_above(conn: Connection, rule: Rule, now: int, zone: ZoneInfo) -> Verdict | None:
    """Meters whose register rose by more than ``limit`` over the last full hour or local
    day, drops counted as billing counts them (``billing.consumption``)."""
    per, limit = Per(rule.params["per"]), rule.params["limit"]
    start, end = last_full_period(now - SETTLE_US, per, zone)
    if rule.watermark is not None and rule.watermark >= end:
        return None
    detail = {"limit": limit, "per": per.value, "from": start, "to": end}
    holding = {
        row.device_pk: Finding(row.device_pk, row.device_id, {"consumption": used, **detail})
        for row, used in consumptions_above(conn, watched(rule), start, end, limit)
    }
    return Verdict(holding, end)


def night_flow(conn: Connection, rule: Rule, now: int, zone: ZoneInfo) -> Verdict | None:
    """Water meters whose register rose faster than ``min_flow`` per hour in every step
    between two readings of the last night window (at least two steps): a leak. Judged in
    one statement over the row table; a meter whose night lies partly in compacted days
    (``METERHUB_COMPACT_AFTER`` under a day) is judged from all its stored points."""
    params = rule.params
    start, end = last_night(now - SETTLE_US, params["from"], params["to"], zone)
    if rule.watermark is not None and rule.watermark >= end:
        return None
    w = watched(rule).subquery()

    def before(column: Any) -> Any:
        return func.lag(column).over(partition_by=points.c.tag_id, order_by=points.c.ts)

    steps = (
        select(
            w.c.device_pk,
            w.c.device_id,
            (points.c.value - before(points.c.value)).label("rise"),
            (points.c.ts - before(points.c.ts)).label("span"),
        )
        .select_from(w.join(points, points.c.tag_id == w.c.tag_id))
        .where(points.c.ts.between(start, end))
        .subquery()
    )
    flowing = steps.c.rise * float(HOUR_US) > params["min_flow"] * steps.c.span
    count = func.count()
    query = (
        select(
            steps.c.device_pk,
            steps.c.device_id,
            count.label("steps"),
            func.sum(steps.c.rise).label("rise"),
        )
        .where(steps.c.rise.is_not(None))
        .group_by(steps.c.device_pk, steps.c.device_id)
        .having(and_(count >= 2, func.sum(case((flowing, 1), else_=0)) == count))
    )
    rows = conn.execute(query)
    detail = {"from": start, "to": end, "min_flow": params["min_flow"]}
    found = _findings(rows, lambda r: {**detail, "steps": r.steps, "rise": r.rise})
    c = chunks.c
    compacted = exists().where(c.tag_id == w.c.tag_id, c.last_ts >= start, c.first_ts <= end)
    for row in conn.execute(select(w.c.device_pk, w.c.device_id, w.c.tag_id).where(compacted)):
        found.pop(row.device_pk, None)
        night = read_span(conn, row.tag_id, TimeRange(start, end))
        rise, span = np.diff(night.value), np.diff(night.ts)
        if len(rise) >= 2 and bool((rise * float(HOUR_US) > params["min_flow"] * span).all()):
            counted = {"steps": len(rise), "rise": float(rise.sum())}
            found[row.device_pk] = Finding(row.device_pk, row.device_id, detail | counted)
    return Verdict(found, end)


def register_backwards(conn: Connection, rule: Rule, now: int, zone: ZoneInfo) -> Verdict:
    """Meters with a reading flagged ``REGISTER_DECREASED`` since the last evaluation (and
    ``LATE_US`` before it: a reading stored late is still seen; one already seen keeps its
    open alert open, so it is not notified again)."""
    since = rule.created_at if rule.watermark is None else rule.watermark - LATE_US
    w = watched(rule).subquery()
    query = (
        select(
            w.c.device_pk,
            w.c.device_id,
            func.count().label("drops"),
            func.max(points.c.ts).label("last_drop_at"),
        )
        .select_from(w.join(points, points.c.tag_id == w.c.tag_id))
        .where(points.c.quality != 0, points.c.ts > since, points.c.ts <= now)
        .group_by(w.c.device_pk, w.c.device_id)
    )
    rows = conn.execute(query)
    return Verdict(
        _findings(rows, lambda r: {"drops": r.drops, "last_drop_at": r.last_drop_at}), now
    )


def missing_before_billing(conn: Connection, rule: Rule, now: int, zone: ZoneInfo) -> Verdict:
    """Meters of a type whose enabled billing task fires within ``hours_ahead`` hours and
    that have had no reading since their last bill (or ever)."""
    due = _due_tasks(conn, rule, zone, now, now + rule.params["hours_ahead"] * HOUR_US)
    if not due:
        return Verdict({}, now)
    w = watched(rule).where(devices.c.type.in_([kind.value for kind in due])).subquery()
    billed_to = (
        select(func.max(bills.c.to_time)).where(bills.c.device_pk == w.c.device_pk)
    ).scalar_subquery()
    last = _newest_ts(w)
    query = (
        select(
            w.c.device_pk, w.c.device_id, w.c.type, last.label("last"), billed_to.label("billed")
        )
        .select_from(w)
        .where(or_(last.is_(None), last <= func.coalesce(billed_to, -1)))
    )
    holding = {}
    for row in conn.execute(query):
        task, fires_at = due[DeviceType(row.type)]
        detail = {"task": task.key, "task_name": task.name, "fires_at": fires_at}
        detail |= {"last_reading_at": row.last, "billed_to": row.billed}
        holding[row.device_pk] = Finding(row.device_pk, row.device_id, detail)
    return Verdict(holding, now)


def _due_tasks(
    conn: Connection, rule: Rule, zone: ZoneInfo, now: int, horizon: int
) -> dict[DeviceType, tuple[Task, int]]:
    """The project's enabled billing tasks firing by ``horizon``, the first per meter type,
    with its fire time."""
    query = select(billing_tasks).where(
        billing_tasks.c.project_id == rule.project_id, billing_tasks.c.enabled.is_(True)
    )
    if rule.device_type is not None:
        query = query.where(billing_tasks.c.device_type == rule.device_type.value)
    due: dict[DeviceType, tuple[Task, int]] = {}
    for row in conn.execute(query):
        task = Task.from_row(row)
        fires_at = to_us(next_fire(task.cron, from_us(now, UTC), zone), UTC)
        earlier = due.get(task.device_type)
        if fires_at <= horizon and (earlier is None or fires_at < earlier[1]):
            due[task.device_type] = (task, fires_at)
    return due


EVALUATE: dict[RuleKind, Evaluate] = {
    RuleKind.OFFLINE: offline,
    RuleKind.CONSUMPTION_ABOVE: consumption_above,
    RuleKind.NIGHT_FLOW: night_flow,
    RuleKind.REGISTER_BACKWARDS: register_backwards,
    RuleKind.MISSING_BEFORE_BILLING: missing_before_billing,
}
