"""A billing run: every device of a task's project and type billed for one period, once.

The period of a device runs from its previous bill's end (or its first reading) to the
run's scheduled time. Registers at both ends are interpolated between neighbouring
readings; the tariff prices the consumption. Everything is read with a few set-based
queries (index seeks per device, no query per device) and written in the caller's
transaction. Exactly once: a run is claimed by a unique (task, scheduled time) row and a
bill by a unique (task, device, period end), so a repeated run, a second scheduler or a
run killed half-way (its transaction rolls back) never bills a period twice.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, RowMapping, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.billing.consumption import register_at, register_value, usage
from meterhub.billing.tables import billing_runs, billing_tasks, bills
from meterhub.billing.tariff_store import project_tariffs
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tasks import Task, get_task
from meterhub.errors import InvalidInput
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import Project, get_project
from meterhub.registry.tables import houses, residents
from meterhub.storage import Point
from meterhub.times import now_us, parse_iso

REGISTER_CHANNEL = {DeviceType.ELECTRICITY: "kW", DeviceType.WATER: "V"}

_TARGETS = text("""
WITH d AS (
  SELECT dev.id AS device_pk, dev.device_id, dev.water_kind, dev.house_id, t.id AS tag_id,
    h.address AS house_address,
    (SELECT max(b.to_time) FROM bills b WHERE b.device_pk = dev.id AND b.to_time <= :end)
      AS prev_end
  FROM devices dev
  JOIN houses h ON h.id = dev.house_id
  JOIN tags t ON t.device_pk = dev.id AND t.channel = :channel
  WHERE h.project_id = :project AND dev.type = :type
), s AS (
  SELECT d.*, COALESCE(d.prev_end,
    (SELECT min(p.ts) FROM points p WHERE p.tag_id = d.tag_id)) AS start_ts
  FROM d
), n AS (
  SELECT s.*,
    (SELECT max(p.ts) FROM points p WHERE p.tag_id = s.tag_id AND p.ts <= s.start_ts) AS b0,
    (SELECT min(p.ts) FROM points p WHERE p.tag_id = s.tag_id AND p.ts >= s.start_ts) AS a0,
    (SELECT max(p.ts) FROM points p WHERE p.tag_id = s.tag_id AND p.ts <= :end) AS b1,
    (SELECT min(p.ts) FROM points p WHERE p.tag_id = s.tag_id AND p.ts >= :end) AS a1
  FROM s
)
SELECT n.device_pk, n.device_id, n.water_kind, n.house_id, n.house_address, n.tag_id,
  n.prev_end, n.start_ts,
  n.b0, pb0.value AS vb0, n.a0, pa0.value AS va0,
  n.b1, pb1.value AS vb1, n.a1, pa1.value AS va1
FROM n
LEFT JOIN points pb0 ON pb0.tag_id = n.tag_id AND pb0.ts = n.b0
LEFT JOIN points pa0 ON pa0.tag_id = n.tag_id AND pa0.ts = n.a0
LEFT JOIN points pb1 ON pb1.tag_id = n.tag_id AND pb1.ts = n.b1
LEFT JOIN points pa1 ON pa1.tag_id = n.tag_id AND pa1.ts = n.a1
ORDER BY n.device_pk
""")

_RESETS = text("""
SELECT f.tag_id, f.ts, f.value,
  (SELECT p.value FROM points p WHERE p.tag_id = f.tag_id AND p.ts < f.ts
   ORDER BY p.ts DESC LIMIT 1) AS before_value
FROM points f
JOIN tags t ON t.id = f.tag_id AND t.channel = :channel
JOIN devices dev ON dev.id = t.device_pk AND dev.type = :type
JOIN houses h ON h.id = dev.house_id AND h.project_id = :project
WHERE f.quality != 0 AND f.ts <= :end
ORDER BY f.tag_id, f.ts
""")


@dataclass(frozen=True, slots=True)
class RunReport:
    task_key: str
    scheduled_at: int
    run_id: int | None
    """``None`` when this (task, time) had already been run: nothing was billed again."""
    billed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What a run recorded: its period end, when it ran, and what it billed or skipped."""

    id: int
    scheduled_at: int
    started_at: int
    finished_at: int | None
    billed: int
    skipped: list[dict[str, str]]
    """``{device_id, reason}`` of each device not billed."""


def list_runs(
    conn: Connection, task_key: str, *, offset: int, limit: int
) -> tuple[int, list[RunRecord]]:
    """How many runs a task has, and one page of them, latest period end first."""
    where = billing_runs.c.task_key == task_key
    total = conn.execute(select(func.count()).select_from(billing_runs).where(where))
    query = select(billing_runs).where(where).order_by(billing_runs.c.scheduled_at.desc())
    page = conn.execute(query.offset(offset).limit(limit))
    records = [
        RunRecord(
            row.id,
            row.scheduled_at,
            row.started_at,
            row.finished_at,
            row.billed,
            json.loads(row.skipped),
        )
        for row in page
    ]
    return total.scalar_one(), records


def manual_instant(text: str | None, zone: tzinfo) -> int:
    """The period end of a run by hand: ``text`` (ISO 8601, naive read in ``zone``), or now to
    the minute; ``InvalidInput`` naming ``at`` for a bad or future time."""
    now = now_us()
    if text is None:
        return now - now % 60_000_000
    try:
        at = parse_iso(text, zone)
    except ValueError as exc:
        raise InvalidInput.field("at", f"not an ISO 8601 time: {exc}") from None
    if at > now:
        raise InvalidInput.field("at", "must not be in the future")
    return at


def run_task(conn: Connection, task_key: str, scheduled_at: int) -> RunReport:
    """Bill the period ending at ``scheduled_at`` (µs) for every device of the task."""
    task = get_task(conn, task_key)
    run_id = _claim(conn, task.key, scheduled_at)
    if run_id is None:
        return RunReport(task.key, scheduled_at, None)
    project = get_project(conn, task.project_id)
    params = {
        "project": project.id,
        "type": task.device_type.value,
        "channel": REGISTER_CHANNEL[task.device_type],
        "end": scheduled_at,
    }
    targets = list(conn.execute(_TARGETS, params).mappings())
    resets = _resets(conn, params)
    people = _residents(conn, project.id)
    tariffs = project_tariffs(conn, project.id)
    rows, skipped = _bills(task, project, tariffs, targets, resets, scheduled_at)
    created = now_us()
    for row in rows:
        row.update(
            run_id=run_id, created_at=created, residents=people.get(row.pop("house_id"), "[]")
        )
    _insert_bills(conn, rows)
    conn.execute(
        update(billing_runs)
        .where(billing_runs.c.id == run_id)
        .values(finished_at=now_us(), billed=len(rows), skipped=json.dumps(skipped))
    )
    last = max(task.last_run_at or scheduled_at, scheduled_at)
    query = update(billing_tasks).where(billing_tasks.c.natrual_key == task.key)
    conn.execute(query.values(last_run_at=last))
    return RunReport(task.key, scheduled_at, run_id, len(rows), skipped)


def _claim(conn: Connection, task_key: str, scheduled_at: int) -> int | None:
    """Insert the run row; ``None`` if (task, time) already has one (committed elsewhere)."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = (
        dialect.insert(billing_runs)
        .values(
            task_key=task_key,
            scheduled_at=scheduled_at,
            started_at=now_us(),
            billed=0,
            skipped="[]",
        )
        .on_conflict_do_nothing(
            index_elements=[billing_runs.c.task_key, billing_runs.c.scheduled_at]
        )
        .returning(billing_runs.c.id)
    )
    run_id: int | None = conn.execute(stmt).scalar_one_or_none()
    return run_id


def _resets(
    conn: Connection, params: Mapping[str, Any]
) -> dict[int, list[tuple[int, float, float]]]:
    """Per register tag, its flagged drops ``(ts, value before, value after)`` up to the end."""
    found: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
    for row in conn.execute(_RESETS, params):
        if row.before_value is not None:
            found[row.tag_id].append((row.ts, row.before_value, row.value))
    return found


def _residents(conn: Connection, project_id: int) -> dict[int, str]:
    """The residents of each house of the project that has any, as bills keep them (JSON)."""
    people: dict[int, list[dict[str, str]]] = defaultdict(list)
    query = (
        select(residents)
        .join(houses, houses.c.id == residents.c.house_id)
        .where(houses.c.project_id == project_id)
        .order_by(residents.c.id)
    )
    for row in conn.execute(query):
        people[row.house_id].append({"name": row.name, "cellphone": row.cellphone})
    return {house: json.dumps(found) for house, found in people.items()}


def _point(tag_id: int, ts: int | None, value: float | None) -> Point | None:
    return None if ts is None or value is None else Point(tag_id, ts, value)


def _bills(
    task: Task,
    project: Project,
    tariffs: Mapping[tuple[DeviceType, str], Tariff],
    targets: Sequence[RowMapping],
    resets: Mapping[int, list[tuple[int, float, float]]],
    end: int,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Bill rows for the billable targets, and why each other one was skipped."""
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for target in targets:
        tariff = tariffs.get((task.device_type, target["water_kind"] or ""))
        reason = _unbillable(target, tariff, end)
        if reason or tariff is None:
            skipped.append({"device_id": target["device_id"], "reason": reason or "no tariff"})
            continue
        drops = resets.get(target["tag_id"], [])
        rows.append(_bill(task, project, tariff, target, drops, end))
    return rows, skipped


def _unbillable(target: RowMapping, tariff: Tariff | None, end: int) -> str | None:
    if target["start_ts"] is None:
        return "no readings"
    if target["prev_end"] == end:
        return "already billed up to this time"
    if target["start_ts"] >= end:
        return "no reading before the period end"
    if tariff is None:
        return "no tariff for this device type"
    return None


def _bill(
    task: Task,
    project: Project,
    tariff: Tariff,
    t: RowMapping,
    drops: list[tuple[int, float, float]],
    end: int,
) -> dict[str, Any]:
    tag, start_ts = t["tag_id"], t["start_ts"]
    start = register_at(_point(tag, t["b0"], t["vb0"]), _point(tag, t["a0"], t["va0"]), start_ts)
    stop = register_at(_point(tag, t["b1"], t["vb1"]), _point(tag, t["a1"], t["va1"]), end)
    assert start is not None
    assert stop is not None
    inside = [(register_value(b), register_value(a)) for ts, b, a in drops if start_ts < ts <= end]
    used = usage(start, stop, inside)
    return {
        "task_key": task.key,
        "project_id": project.id,
        "device_pk": t["device_pk"],
        "device_id": t["device_id"],
        "device_type": task.device_type.value,
        "water_kind": t["water_kind"],
        "house_id": t["house_id"],
        "house_address": t["house_address"],
        "from_time": start_ts,
        "to_time": end,
        "previous_reading": start.value,
        "reading": stop.value,
        "consumption": used.consumption,
        "charge": tariff.charge(used.consumption),
        "currency": project.currency,
        "estimated": start.estimated or stop.estimated,
        "rule": used.rule,
    }


BILL_COLUMNS = tuple(c.name for c in bills.columns if c.name != "id")


def _insert_bills(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert bills; one already there for (task, device, period end) is left as it is.

    Straight through the driver's executemany: the rows are plain values already.
    """
    if not rows:
        return
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO bills ({', '.join(BILL_COLUMNS)}) "
        f"VALUES ({', '.join([marker] * len(BILL_COLUMNS))}) "
        "ON CONFLICT (task_key, device_pk, to_time) DO NOTHING"
    )
    as_text = conn.dialect.name == "sqlite"  # sqlite3 cannot bind Decimal
    conn.exec_driver_sql(
        sql,
        [
            tuple(
                str(v) if as_text and isinstance(v, Decimal) else v
                for v in map(row.get, BILL_COLUMNS)
            )
            for row in rows
        ],
    )
