"""The dashboard benchmark's database: the full meter range, with one meter's year of minutes.

56,001 electricity meters (ports 9000-65000) in houses of ten meters, split over two
projects, each with poll health and a register reading at the last three month starts
and at "now"; meter ``9000`` holds a year of minute readings (525,600 per channel) and a
week of per-minute poll health. The monthly billing task of one project has billed the
last two months, and a data source holds 200 tags with a value each.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, insert, text

from meterhub.billing.runs import run_task
from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tasks import create_task
from meterhub.collector.health import Health, Status
from meterhub.collector.health_store import save_health
from meterhub.collector.poll_log import PollEntry, save_poll_log
from meterhub.registry.channels import DeviceType
from meterhub.registry.projects import create_project
from meterhub.registry.sources import create_source
from meterhub.registry.tables import devices, houses, residents, tags
from meterhub.registry.tags import TagSpec
from meterhub.registry.users import create_user
from meterhub.storage import Point, write_points
from meterhub.times import now_us, to_us

FIRST_PORT, LAST_PORT = 9000, 65000
METERS = LAST_PORT - FIRST_PORT + 1
PER_HOUSE = 10
MINUTE_US = 60_000_000
YEAR_MINUTES = 365 * 24 * 60
WEEK_MINUTES = 7 * 24 * 60
CHUNK = 50_000
MONTHLY = {"month": "*", "day": "1", "hour": "0", "minute": "0"}
USERNAME, PASSWORD = "bench", "correct horse battery"
CHANNELS = (("A", "gauge", "A"), ("kW", "register", "kWh"))


@dataclass(frozen=True, slots=True)
class Dataset:
    """The objects the timed pages show."""

    meter: str
    project_id: int
    task_key: str
    source_id: str
    now: int


def build(engine: Engine, meters: int = METERS) -> Dataset:
    """Fill a migrated, empty database and return what the pages show."""
    now = now_us() // MINUTE_US * MINUTE_US
    with engine.begin() as conn:
        create_user(conn, USERNAME, PASSWORD, is_admin=True)
        berlin = create_project(conn, "Lindenhof estate", "Europe/Berlin", "EUR")
        harbour = create_project(conn, "Harbour towers", "Asia/Shanghai", "CNY")
        for project in (berlin, harbour):
            set_tariff(conn, project.id, DeviceType.ELECTRICITY, Tariff.flat(Decimal("0.31")))
        task = create_task(conn, berlin.id, "monthly", DeviceType.ELECTRICITY, MONTHLY)
        _registry(conn, meters, (berlin.id, harbour.id))
        specs = [TagSpec(ref={"tagName": f"t{i}", "parentObjectId": "bms"}) for i in range(200)]
        source = create_source(conn, "building-bms", "Building BMS", tag_specs=specs)
    month_starts = _month_starts(now)
    _fleet_readings(engine, meters, [*month_starts, now])
    _year_of_minutes(engine, now)
    with engine.begin() as conn:
        save_health(conn, {pk: _health(pk, now) for pk in range(1, meters + 1) if pk % 100})
        save_poll_log(conn, list(_poll_week(now)))
    for end in month_starts[1:]:
        with engine.begin() as conn:
            run_task(conn, task.key, end)
    return Dataset(str(FIRST_PORT), berlin.id, task.key, source.id, now)


def _registry(conn: Connection, meters: int, project_ids: tuple[int, int]) -> None:
    house_count = -(-meters // PER_HOUSE)
    conn.execute(insert(houses), [_house(h, project_ids[h % 2]) for h in range(house_count)])
    conn.execute(
        insert(residents),
        [
            {"house_id": h + 1, "name": f"Resident {h}", "cellphone": "+49 30 1234"}
            for h in range(house_count)
        ],
    )
    conn.execute(insert(devices), [_device(i) for i in range(meters)])
    conn.execute(
        insert(tags),
        [
            {
                "id": 2 * i + c + 1,
                "key": f"{FIRST_PORT + i}.{name}",
                "device_pk": i + 1,
                "channel": name,
                "kind": kind,
                "unit": unit,
                "created_at": 0,
            }
            for i in range(meters)
            for c, (name, kind, unit) in enumerate(CHANNELS)
        ],
    )
    _advance_sequences(conn)


def _advance_sequences(conn: Connection) -> None:
    """PostgreSQL: move the id sequences past the ids given explicitly above."""
    if conn.dialect.name == "postgresql":
        for table in ("houses", "devices", "tags"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
            )


def _house(h: int, project_id: int) -> dict[str, object]:
    address = ["Bench city", f"Street {h // 100}", str(h % 100), "1", str(h)]
    return {"id": h + 1, "project_id": project_id, "address": json.dumps(address), "created_at": 0}


def _device(i: int) -> dict[str, object]:
    return {
        "id": i + 1,
        "device_id": str(FIRST_PORT + i),
        "type": "electricity",
        "host": "127.0.0.1",
        "port": FIRST_PORT + i,
        "enabled": True,
        "created_at": 0,
        "house_id": i // PER_HOUSE + 1,
    }


def _month_starts(now: int) -> list[int]:
    """The starts (UTC) of the month before last, last month and this month."""
    day = datetime.fromtimestamp(now / 1e6, UTC)
    months = [(day.year * 12 + day.month - 1) - back for back in (2, 1, 0)]
    return [to_us(datetime(m // 12, m % 12 + 1, 1, tzinfo=UTC), UTC) for m in months]


def _fleet_readings(engine: Engine, meters: int, times: list[int]) -> None:
    """Every meter's register at ``times`` and its current at the last one."""
    for k, ts in enumerate(times):
        batch = [Point(2 * i + 2, ts, 1000.0 + i % 500 + 150.0 * k) for i in range(meters)]
        batch += (
            [Point(2 * i + 1, times[-1], 5.0 + i % 7) for i in range(meters)]
            if k == len(times) - 1
            else []
        )
        _write(engine, batch)


def _year_of_minutes(engine: Engine, now: int) -> None:
    """Meter 9000 (tags 1 and 2): a minute reading of both channels for the past year."""
    register = 0.0
    batch: list[Point] = []
    for minute in range(YEAR_MINUTES, 0, -1):
        ts = now - minute * MINUTE_US
        current = 8 + 6 * math.sin(minute / 720 * math.pi) + (minute % 13) / 10
        register += current * 230 / 1000 / 60
        batch += [Point(1, ts, round(current, 3)), Point(2, ts, round(register, 3))]
        if len(batch) >= CHUNK:
            _write(engine, batch)
            batch = []
    _write(engine, batch)


def _write(engine: Engine, batch: list[Point]) -> None:
    for start in range(0, len(batch), CHUNK):
        with engine.begin() as conn:
            write_points(conn, batch[start : start + CHUNK])


def _health(pk: int, now: int) -> Health:
    """Most meters online, every 25th offline for a while (every 100th is never seen)."""
    if pk % 25 == 0:
        return Health(
            Status.OFFLINE,
            now,
            now - 3_600_000_000,
            "timed out after 3.0 s",
            now,
            pk % 40 + 1,
            3000.0,
            1000,
            60,
        )
    return Health(Status.ONLINE, now, now, None, None, 0, 4.2, 1000, 0)


def _poll_week(now: int) -> list[PollEntry]:
    """A week of minute polls of meter 9000, one in fifty failing."""
    return [
        PollEntry(
            1, now - m * MINUTE_US, 3.0 + m % 9, bool(m % 50), None if m % 50 else "timed out"
        )
        for m in range(WEEK_MINUTES, 0, -1)
    ]
