"""Alert evaluation over a whole site: 56,001 meters (every fifth a water meter) in one
project, a few hours of readings for a subset of them (the rest read once, lately; some
silent, some with a reset register, some water meters running all night), and one rule of
each kind over every meter it applies to, notifying a webhook receiver started here. Times
one full evaluation tick (every rule looks at its period) against the 5 s goal, then the
delivery of the notifications it queued, as digests (the default) against one request a
notification (``METERHUB_ALERT_DIGEST_FROM=0``), then an incremental tick after one new
reading of every meter (hour and night already evaluated: only what changed is read).

Usage: .venv/bin/python -m bench.alerts [--meters 56001] [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine, func, select, update
from tests.alerts_support import Receiver, webhook_receiver

from bench.databases import scratch_postgres, scratch_sqlite
from meterhub.alerts.conditions import last_night
from meterhub.alerts.evaluator import AlertEvaluator
from meterhub.alerts.notify import Deliverer
from meterhub.alerts.rule_store import create_channel, create_rule
from meterhub.alerts.tables import alert_rules, alerts, notification_attempts, notifications
from meterhub.billing.tasks import create_task
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.channels import DeviceType
from meterhub.registry.device_import import DeviceRow, RowNames, import_devices
from meterhub.registry.projects import create_house, create_project
from meterhub.registry.tables import tags
from meterhub.settings import Settings
from meterhub.storage.points import PointColumns, Quality, write_columns
from meterhub.times import HOUR_US, from_us, now_us

GOAL_S = 5.0
MINUTE = 60_000_000
ZONE = "Europe/Berlin"
HISTORY_METERS = 5000
"""Meters with some hours of readings (every 5 minutes); the others have one recent one."""
HOURS = 6
BATCH = 200_000


def build(engine: Engine, meters: int, now: int) -> None:
    """The site, its readings and its rules (see the module)."""
    with engine.begin() as conn:
        project = create_project(conn, "Site", ZONE, "EUR")
        house = create_house(conn, project.id, ["Site", "", "", "", ""])
        rows = [
            DeviceRow(
                n, f"m{n}", {"type": DeviceType.WATER, "water_kind": "tap", "house_id": house}
            )
            if n % 5 == 4
            else DeviceRow(n, f"m{n}", {"type": DeviceType.ELECTRICITY, "house_id": house})
            for n in range(meters)
        ]
        import_devices(conn, rows, names=RowNames("[{}]", "[{}].{}"), default_host="127.0.0.1")
        registers = conn.execute(
            select(tags.c.id, tags.c.channel)
            .where(tags.c.channel.in_(["kW", "V"]))
            .order_by(tags.c.device_pk)
        ).all()
        daily = {
            "month": "*",
            "day": "*",
            "hour": str(from_us(now + 3 * HOUR_US, ZoneInfo(ZONE)).hour),
            "minute": "0",
        }
        create_task(conn, project.id, "daily", DeviceType.ELECTRICITY, daily)
        for kind, fields in (
            ("offline", {"params": {"minutes": 15}}),
            ("consumption_above", {"device_type": "electricity", "params": {"limit": 5}}),
            ("consumption_above", {"device_type": "water", "params": {"limit": 2, "per": "day"}}),
            ("night_flow", {"params": {}}),
            ("register_backwards", {"params": {}}),
            ("missing_before_billing", {"params": {"hours_ahead": 6}}),
        ):
            create_rule(conn, project.id, name=kind, kind=kind, **fields)
    write_readings(engine, [tag for tag, _ in registers], [ch == "V" for _, ch in registers], now)


def write_readings(engine: Engine, tag_ids: list[int], water: list[bool], now: int) -> None:
    """Every meter read 2 minutes ago but every hundredth (silent for an hour); the others
    of the first ``HISTORY_METERS`` read every 5 minutes for ``HOURS`` hours (one in fifty
    using ten times as much), a few with a reset; water meters among them read every 5
    minutes through last night, one in ten running all night."""
    rng = np.random.default_rng(7)
    ids = np.array(tag_ids, np.int64)
    is_water = np.array(water)
    silent = np.arange(len(ids)) % 100 == 0
    parts = [(ids[~silent], np.full((~silent).sum(), now - 2 * MINUTE))]
    parts.append((ids[silent], np.full(silent.sum(), now - HOUR_US)))
    steps = np.arange(now - HOURS * HOUR_US, now - 2 * MINUTE, 5 * MINUTE)
    history = ids[:HISTORY_METERS][~silent[:HISTORY_METERS]]
    parts.append((np.repeat(history, len(steps)), np.tile(steps, len(history))))
    start, end = last_night(now, "01:00", "05:00", ZoneInfo(ZONE))
    night = np.arange(start, end + 1, 5 * MINUTE)
    sleepers = ids[:HISTORY_METERS][is_water[:HISTORY_METERS]]
    parts.append((np.repeat(sleepers, len(night)), np.tile(night, len(sleepers))))
    tag = np.concatenate([p[0] for p in parts])
    ts = np.concatenate([p[1] for p in parts])
    order = np.lexsort((ts, tag))
    tag, ts = tag[order], ts[order]
    rise = rng.uniform(0, 0.2, len(ts)) * np.where(tag % 50 == 1, 10, 1)  # a few heavy users
    running = (tag % 10 == 0) & np.isin(tag, sleepers) & (ts >= start) & (ts <= end)
    rise[np.isin(tag, sleepers) & (ts >= start) & (ts <= end) & ~running] = 0
    rise[running] += 0.01
    first = np.r_[True, tag[1:] != tag[:-1]]
    total = np.cumsum(rise)
    value = 1000.0 + total - total[np.maximum.accumulate(np.where(first, np.arange(len(ts)), 0))]
    quality = np.zeros(len(ts), np.int64)
    reset = (tag % 997 == 0) & (ts == now - 2 * MINUTE)
    value[reset] = 0.0
    quality[reset] = Quality.REGISTER_DECREASED
    columns = PointColumns(tag, ts, value, quality)
    for begin in range(0, len(ts), BATCH):
        with engine.begin() as conn:
            write_columns(conn, columns.take(slice(begin, begin + BATCH)))


def timed_tick(evaluator: AlertEvaluator, now: int) -> float:
    started = time.perf_counter()
    evaluator.tick(now)
    return time.perf_counter() - started


def open_alerts(engine: Engine) -> str:
    """Open alerts by rule kind."""
    query = (
        select(alert_rules.c.kind, func.count())
        .join(alerts, alerts.c.rule_id == alert_rules.c.id)
        .where(alerts.c.resolved_at.is_(None))
        .group_by(alert_rules.c.kind)
        .order_by(alert_rules.c.kind)
    )
    with engine.connect() as conn:
        return ", ".join(f"{kind} {count:,}" for kind, count in conn.execute(query))


def measure(url: str, meters: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    real = now_us()
    now = real - real % HOUR_US + HOUR_US + 10 * MINUTE  # every rule has a period to look at
    started = time.perf_counter()
    build(engine, meters, now)
    kind = engine.dialect.name
    built = time.perf_counter() - started
    print(f"{kind}: {meters:,} meters, their readings and rules built in {built:.1f} s")
    with webhook_receiver() as hook:
        with engine.begin() as conn:
            project = conn.execute(select(alert_rules.c.project_id).limit(1)).scalar_one()
            create_channel(conn, project, kind="webhook", url=hook.url, secret="bench" * 7)
        evaluator = AlertEvaluator(engine)
        full = timed_tick(evaluator, now)
        print(
            f"{kind}: full tick        {full:6.2f} s, {full / GOAL_S:.2f} x the {GOAL_S:.0f} s goal"
        )
        print(f"{kind}:   open: {open_alerts(engine)}")
        digests = deliver_all(engine, hook, Settings(database_url=url), now)
        alone = deliver_all(engine, hook, Settings(database_url=url, alert_digest_from=0), now)
        print(
            f"{kind}: delivery of the {alone[0]:,} notifications queued: as digests"
            f" {digests[1]:,} requests in {digests[2]:.2f} s, one a notification"
            f" {alone[1]:,} requests in {alone[2]:.2f} s ({digests[2] / alone[2]:.2f}x the time)"
        )
    read_every_meter(engine, now + MINUTE)
    again = timed_tick(evaluator, now + 2 * MINUTE)
    print(f"{kind}: incremental tick {again:6.2f} s, {again / GOAL_S:.2f} x the goal")
    print(f"{kind}:   after a new reading of every meter, open: {open_alerts(engine)}")
    engine.dispose()


def deliver_all(
    engine: Engine, hook: Receiver, settings: Settings, now: int
) -> tuple[int, int, float]:
    """Deliver every notification queued (all made pending again, untried, first) under
    ``settings``: how many there are, the requests it took and the seconds. Every try must
    succeed."""
    with engine.begin() as conn:
        conn.execute(notification_attempts.delete())
        fresh = {"state": "pending", "attempts": 0, "digest": None, "next_attempt_at": now}
        conn.execute(update(notifications).values(**fresh))
        queued = conn.execute(select(func.count()).select_from(notifications)).scalar_one()
    deliverer = Deliverer(engine, settings)
    before = len(hook.requests)
    started = time.perf_counter()
    while asyncio.run(deliverer.deliver(now)):
        pass
    took = time.perf_counter() - started
    with engine.connect() as conn:
        states = conn.execute(select(notifications.c.state).distinct()).scalars().all()
    assert states == ["delivered"], states
    return queued, len(hook.requests) - before, took


def read_every_meter(engine: Engine, at: int) -> None:
    """One more reading of every register, at ``at``."""
    with engine.begin() as conn:
        query = select(tags.c.id).where(tags.c.channel.in_(["kW", "V"]))
        ids = np.array(conn.execute(query).scalars().all(), np.int64)
        count = len(ids)
        values = np.full(count, 2000.0)
        write_columns(
            conn, PointColumns(ids, np.full(count, at), values, np.zeros(count, np.int64))
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=56_001)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", dest="use_postgres", action="store_false")
    args = parser.parse_args()
    with scratch_sqlite("alerts") as url:
        measure(url, args.meters)
    if args.use_postgres:
        with scratch_postgres(args.postgres, "alerts") as url:
            measure(url, args.meters)


if __name__ == "__main__":
    main()
