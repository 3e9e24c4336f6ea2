"""A billing run: every device of a task's project and type billed for one period, once.

The period of a device runs from its previous bill's end (or its first reading) to the
run's scheduled time. Registers at both ends are interpolated between neighbouring
readings; the tariff prices the consumption. A time-of-use tariff also reads the register
at each period boundary inside the period, and its bill's items (``tou_items``) are written
beside the bill, keyed by (bill, period). Everything is read with a few set-based
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

import numpy as np
from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.billing.consumption import register_value, registers, usage
from meterhub.billing.tables import billing_runs, billing_tasks, bills
from meterhub.billing.tariff_store import project_tariffs
from meterhub.billing.tasks import Task, get_task
from meterhub.billing.tou import AnyTariff, TouTariff
from meterhub.billing.tou_items import ItemRow, Plan, TouBill, tou_bills
from meterhub.db import insert_rows
from meterhub.errors import InvalidInput
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import Project, get_project
from meterhub.registry.tables import houses, residents
from meterhub.storage import TimeRange
from meterhub.storage.retention import horizon_us
from meterhub.storage.series import drops
from meterhub.storage.sides import sides
from meterhub.times import now_us, parse_iso

REGISTER_CHANNEL = {DeviceType.ELECTRICITY: "kW", DeviceType.WATER: "V"}
BILL_BATCH = 5_000
"""Devices billed together: their readings are read, priced and written in one go, so what
a run holds stays bounded."""

_TARGETS = text("""
WITH d AS (
  SELECT dev.id AS device_pk, dev.device_id, dev.water_kind, dev.house_id, t.id AS tag_id,
    h.address AS house_address,
    (SELECT max(b.to_time) FROM bills b WHERE b.device_pk = dev.id AND b.to_time <= :end)
      AS prev_end
  FROM devices dev
  JOIN houses h ON h.id = dev.house_id
  JOIN tags t ON t.device_pk = dev.id AND t.channel = :channel
  WHERE h.project_id = :project AND dev.type = :type AND dev.id BETWEEN :first AND :last
)
SELECT d.*, COALESCE(d.prev_end, (SELECT min(f.ts) FROM (
    SELECT min(p.ts) AS ts FROM points p WHERE p.tag_id = d.tag_id
    UNION ALL
    SELECT c.first_ts FROM (SELECT first_ts FROM chunks c WHERE c.tag_id = d.tag_id
                            ORDER BY c.day LIMIT 1) AS c
  ) AS f)) AS start_ts
FROM d
ORDER BY d.device_pk
""")
"""Every device the run bills, with its period start: the previous bill's end, else its first
reading (in the row table or its oldest chunk)."""


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
    run_id = claim_run(conn, task, scheduled_at)
    if run_id is None:
        return RunReport(task.key, scheduled_at, None)
    billed, skipped = bill_devices(conn, task, run_id, scheduled_at)
    finish_run(conn, run_id, billed, skipped)
    return RunReport(task.key, scheduled_at, run_id, billed, skipped)


def bill_devices(
    conn: Connection,
    task: Task,
    run_id: int,
    scheduled_at: int,
    pks: tuple[int, int] = (0, 2**31 - 1),
) -> tuple[int, list[dict[str, str]]]:
    """Bill, for run ``run_id``, the task's devices whose pk lies in ``pks`` (first, last):
    how many were billed, and why each other one was not."""
    project = get_project(conn, task.project_id)
    params = {
        "project": project.id,
        "type": task.device_type.value,
        "channel": REGISTER_CHANNEL[task.device_type],
        "end": scheduled_at,
        "first": pks[0],
        "last": pks[1],
    }
    targets = [dict(row) for row in conn.execute(_TARGETS, params).mappings()]
    tariffs = project_tariffs(conn, project.id)
    people = _residents(conn, project.id)
    kept = horizon_us(conn)
    billed, skipped = 0, []
    for first in range(0, len(targets), BILL_BATCH):
        batch = targets[first : first + BILL_BATCH]
        _add_plans(batch, task, tariffs, scheduled_at, project.zone)
        _add_ends(conn, batch, scheduled_at)
        resets = drops(conn, [t["tag_id"] for t in batch], TimeRange(None, scheduled_at))
        rows, items, passed = _bills(task, project, tariffs, batch, resets, scheduled_at, kept)
        created = now_us()
        for row in rows:
            row.update(
                run_id=run_id, created_at=created, residents=people.get(row.pop("house_id"), "[]")
            )
        _insert_bills(conn, rows)
        _insert_items(conn, task.key, scheduled_at, run_id, items)
        billed += len(rows)
        skipped += passed
    return billed, skipped


def finish_run(
    conn: Connection, run_id: int, billed: int, skipped: Sequence[Mapping[str, str]]
) -> None:
    """Record what run ``run_id`` billed and skipped, and that it is over."""
    conn.execute(
        update(billing_runs)
        .where(billing_runs.c.id == run_id)
        .values(finished_at=now_us(), billed=billed, skipped=json.dumps(list(skipped)))
    )


def claim_run(conn: Connection, task: Task, scheduled_at: int) -> int | None:
    """Insert the run row and move the task's last run on; ``None`` if (task, time) already
    has one (committed elsewhere)."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = (
        dialect.insert(billing_runs)
        .values(
            task_key=task.key,
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
    if run_id is not None:
        last = max(task.last_run_at or scheduled_at, scheduled_at)
        query = update(billing_tasks).where(billing_tasks.c.natrual_key == task.key)
        conn.execute(query.values(last_run_at=last))
    return run_id


def _add_plans(
    targets: list[dict[str, Any]],
    task: Task,
    tariffs: Mapping[tuple[DeviceType, str], AnyTariff],
    end: int,
    zone: tzinfo,
) -> None:
    """Give each target billed by a time-of-use tariff the plan of its period's stretches in
    each of the tariff's periods (``None`` for other targets)."""
    cache: dict[tuple[str, int], Plan] = {}
    for target in targets:
        scope = target["water_kind"] or ""
        tariff = tariffs.get((task.device_type, scope))
        start = target["start_ts"]
        if not isinstance(tariff, TouTariff) or start is None or start >= end:
            target["plan"] = None
            continue
        if (scope, start) not in cache:
            cache[scope, start] = Plan(tariff.stretches(start, end, zone))
        target["plan"] = cache[scope, start]


def _add_ends(conn: Connection, targets: list[dict[str, Any]], end: int) -> None:
    """Give each target with readings the registers at each boundary of its period (its
    start, each stretch's end (time-of-use), its end) and the readings around them: the
    batch's columns, and where the target's own boundaries start in them."""
    billable = [t for t in targets if t["start_ts"] is not None]
    instants = [t["plan"].instants if t["plan"] else [t["start_ts"], end] for t in billable]
    sizes = np.array([len(at) for at in instants], np.int64)
    tags = np.repeat(np.array([t["tag_id"] for t in billable], np.int64), sizes)
    times = np.array([ts for at in instants for ts in at], np.int64)
    found = sides(conn, tags, times)
    inner = np.ones(len(times), bool)
    ends = np.cumsum(sizes)
    inner[ends - sizes] = inner[ends - 1] = False  # a bill's own ends: read as flat bills do
    registers_at = registers(found, times, across_drops=inner)
    for target, stop, size in zip(billable, ends.tolist(), sizes.tolist(), strict=True):
        target["ends"] = registers_at, found, stop - size


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


def _bills(
    task: Task,
    project: Project,
    tariffs: Mapping[tuple[DeviceType, str], AnyTariff],
    targets: Sequence[Mapping[str, Any]],
    resets: Mapping[int, list[tuple[int, float, float]]],
    end: int,
    kept: int | None,
) -> tuple[list[dict[str, Any]], dict[int, tuple[ItemRow, ...]], list[dict[str, str]]]:
    """Bill rows for the billable targets, the items of those with a time-of-use tariff (by
    device pk), and why each other one was skipped (``kept``: the raw retention horizon, if
    points were dropped)."""
    billed: list[tuple[Mapping[str, Any], AnyTariff, list[tuple[int, Decimal, Decimal]]]] = []
    skipped: list[dict[str, str]] = []
    for target in targets:
        tariff = tariffs.get((task.device_type, target["water_kind"] or ""))
        reason = _unbillable(target, tariff, end, kept)
        if reason or tariff is None:
            skipped.append({"device_id": target["device_id"], "reason": reason or "no tariff"})
            continue
        start = target["start_ts"]
        inside = [
            (ts, register_value(b), register_value(a))
            for ts, b, a in resets.get(target["tag_id"], [])
            if start < ts <= end
        ]
        billed.append((target, tariff, inside))
    priced = _time_of_use(billed, project.zone)
    rows = [
        _bill(task, project, tariff, target, inside, end, priced)
        for target, tariff, inside in billed
    ]
    return rows, {pk: bill[6] for pk, bill in priced.items()}, skipped


def _time_of_use(
    billed: Sequence[tuple[Mapping[str, Any], AnyTariff, list[tuple[int, Decimal, Decimal]]]],
    zone: tzinfo,
) -> dict[int, TouBill]:
    """The time-of-use bills of ``billed`` by device pk, priced together per tariff and plan
    (``tou_items.tou_bills``)."""
    groups: dict[tuple[int, int], tuple[TouTariff, list[tuple[Mapping[str, Any], Any, Any]]]] = {}
    for entry in billed:
        target, tariff, _ = entry
        if isinstance(tariff, TouTariff):
            key = (id(tariff), id(target["plan"]))
            if key not in groups:
                groups[key] = (tariff, [])
            groups[key][1].append(entry)
    priced: dict[int, TouBill] = {}
    for tariff, group in groups.values():
        first = group[0][0]
        ends, around, _ = first["ends"]  # one batch: every target's boundaries in these
        found = tou_bills(
            tariff,
            first["plan"],
            ends,
            around,
            [target["ends"][2] for target, _, _ in group],
            [inside for _, _, inside in group],
            zone,
        )
        priced.update(zip((t["device_pk"] for t, _, _ in group), found, strict=True))
    return priced


def _unbillable(
    target: Mapping[str, Any], tariff: AnyTariff | None, end: int, kept: int | None
) -> str | None:
    if target["start_ts"] is None:
        return "no readings"
    if kept is not None and target["start_ts"] < kept:
        return "the period starts before the raw retention horizon: its readings are gone"
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
    tariff: AnyTariff,
    t: Mapping[str, Any],
    inside: list[tuple[int, Decimal, Decimal]],
    end: int,
    priced: Mapping[int, TouBill],
) -> dict[str, Any]:
    """The bill row of target ``t`` (a time-of-use one is in ``priced``, by device pk)."""
    row = {
        "task_key": task.key,
        "project_id": project.id,
        "device_pk": t["device_pk"],
        "device_id": t["device_id"],
        "device_type": task.device_type.value,
        "water_kind": t["water_kind"],
        "house_id": t["house_id"],
        "house_address": t["house_address"],
        "from_time": t["start_ts"],
        "to_time": end,
        "currency": project.currency,
    }
    if isinstance(tariff, TouTariff):
        first, last, consumption, charge, rule, estimated, _ = priced[t["device_pk"]]
        return row | {
            "previous_reading": first,
            "reading": last,
            "consumption": consumption,
            "charge": charge,
            "estimated": estimated,
            "rule": rule,
        }
    ends, _, at = t["ends"]
    start, stop = ends.end(at), ends.end(at + 1)
    used = usage(start, stop, [(b, a) for _, b, a in inside])
    return row | {
        "previous_reading": start.value,
        "reading": stop.value,
        "consumption": used.consumption,
        "charge": tariff.charge(used.consumption),
        "estimated": start.estimated or stop.estimated,
        "rule": used.rule,
    }


BILL_COLUMNS = tuple(c.name for c in bills.columns if c.name != "id")
ITEM_COLUMNS = (
    *("bill_id", "seq", "period", "start_register", "end_register", "consumption"),
    *("price", "charge", "estimated", "note"),
)


def _insert_bills(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert bills, straight through the driver's executemany; one already there for
    (task, device, period end) is left as it is."""
    if not rows:
        return
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO bills ({', '.join(BILL_COLUMNS)})"
        f" VALUES ({', '.join([marker] * len(BILL_COLUMNS))})"
        " ON CONFLICT (task_key, device_pk, to_time) DO NOTHING"
    )
    conn.exec_driver_sql(sql, [tuple(map(row.get, BILL_COLUMNS)) for row in rows])


def _insert_items(
    conn: Connection, task_key: str, end: int, run_id: int, items: Mapping[int, Sequence[ItemRow]]
) -> None:
    """Insert the items of the bills (of ``task_key`` ending at ``end``) that run ``run_id``
    just wrote, of each device pk; a bill found there already, another run's, keeps the
    items it has."""
    if not items:
        return
    query = select(bills.c.id, bills.c.device_pk).where(
        bills.c.task_key == task_key,
        bills.c.to_time == end,
        bills.c.device_pk.between(min(items), max(items)),
        bills.c.run_id == run_id,
    )
    rows = [  # decimals as their text, which SQLite binds quicker than through its adapter
        (bill_id, seq, period, str(start), str(end), str(used), price, str(charge), held, note)
        for bill_id, device_pk in conn.execute(query)
        if device_pk in items
        for seq, period, start, end, used, price, charge, held, note in items[device_pk]
    ]
    insert_rows(conn, "bill_items", ITEM_COLUMNS, rows)
