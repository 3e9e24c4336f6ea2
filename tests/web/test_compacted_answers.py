"""Every answer the product gives about a meter is the same, byte for byte, whether its history
lies in rows or in compacted chunks (with and without rollups in use).

Two meters get the same random history (jittered minutes, gaps, flagged register drops,
late rewrites); the second's days are then compacted, some of them before further late
writes. The counter API, the platform's history calls in all their forms, and the
dashboard's chart, daily and live feeds must then answer alike for both.
"""

from __future__ import annotations

import random
import re
from datetime import UTC
from urllib.parse import urlencode

import pytest
from sqlalchemy import delete

from meterhub.db import make_engine
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device
from meterhub.storage import Point, write_points
from meterhub.storage.compactor import compact_day
from meterhub.storage.tables import rollups
from meterhub.times import DAY_US, iso
from tests.web.conftest import Dashboard

DAY0 = 20_454  # 2026-01-01
T0 = DAY0 * DAY_US
MINUTE = 60_000_000
DAYS = 3
PLAIN, PACKED = "7001", "7002"
_ID = re.compile(rb"(?<![\d.])" + PACKED.encode() + rb"(?!\d)")
"""The second meter's id where it stands alone (not inside a number), as answers echo it."""
_REGISTERED = re.compile(rb"<dt>Registered</dt><dd>[^<]*</dd>")


def same(answer: bytes) -> bytes:
    """An answer with the meter's id and its registration time (not a reading) made alike."""
    return _REGISTERED.sub(b"", _ID.sub(PLAIN.encode(), answer))


def history(seed: int) -> list[tuple[int, float, float, int]]:
    """(µs, amperes, kWh, quality of the kWh point), in time order."""
    rng = random.Random(seed)
    ts, kwh, found = T0 + rng.randrange(MINUTE), 1000.0, []
    while ts < T0 + DAYS * DAY_US:
        dropped = rng.random() < 0.002
        kwh = rng.uniform(0, kwh) if dropped else kwh + round(rng.expovariate(20), 3)
        found.append((ts, round(rng.uniform(5, 40), 2), kwh, int(dropped)))
        ts += MINUTE * (1 if rng.random() > 0.01 else rng.randint(2, 200)) + rng.randrange(500_000)
    return found


def requests(seed: int, meter: str) -> list[tuple[str, str, dict[str, object] | None]]:
    """(method, path, JSON body) of every read, with bounds on, between and beyond points."""
    rng = random.Random(seed)
    marks = [T0 + rng.randrange(-DAY_US, (DAYS + 1) * DAY_US) for _ in range(6)]
    marks += [T0, T0 + DAY_US, T0 + DAYS * DAY_US - 1]
    found: list[tuple[str, str, dict[str, object] | None]] = [
        ("GET", f"/counter-data/{meter}/", None),
        ("GET", f"/counter-archive/?counter_id={meter}", None),
        ("GET", f"/meters/{meter}/live", None),
    ]
    for n in range(6):
        a, b = sorted(rng.sample(marks, 2))
        bounds = urlencode({"timestamp__gte": iso(a, UTC), "timestamp__lt": iso(b, UTC)})
        if n % 2:
            found.append(("GET", f"/counter-archive/?counter_id={meter}&{bounds}", None))
        for tag in (f"{meter}.kW", f"{meter}.A"):
            for extra in (
                {},
                {"actual": True},
                {"maxCount": rng.choice([1, 5, 40, 400])},
                {"timeStep": rng.choice([MINUTE, 3_600_000_000, 7 * MINUTE])},
                {"format": True, "maxCount": 100},
            ):
                params = {"tagId": tag, "from": a, "to": b, **extra}
                found.append(("POST", "/smt/data/get", {"params": params}))
        window = urlencode({"from": str(a), "to": str(b)})
        for channel in ("A", "kW"):
            found.append(("GET", f"/meters/{meter}/series?channel={channel}&{window}", None))
        found.append(("GET", f"/meters/{meter}/daily?{window}", None))
    found.append(("POST", "/smt/data/get", {"params": {"tagId": [f"{meter}.kW", f"{meter}.A"]}}))
    return found


@pytest.mark.parametrize(("seed", "with_rollups"), [(1, True), (2, False)])
def test_answers_are_the_same_after_compaction(
    dashboard: Dashboard, database_url: str, seed: int, with_rollups: bool
) -> None:
    engine = make_engine(database_url)
    rng = random.Random(seed)
    points = history(seed)
    late = [(ts, v + 1.0) for ts, _, v, _ in rng.sample(points, 20)]
    late += [(T0 + rng.randrange(DAYS * DAY_US), rng.uniform(0, 2000)) for _ in range(10)]
    with engine.begin() as conn:
        tags = {}
        for meter in (PLAIN, PACKED):
            device = create_device(conn, meter, DeviceType.ELECTRICITY)
            tags[meter] = channel_tags(conn, device.pk)
            amps, kwh = tags[meter]["A"], tags[meter]["kW"]
            batch = [Point(amps, ts, a) for ts, a, _, _ in points]
            batch += [Point(kwh, ts, v, q) for ts, _, v, q in points]
            write_points(conn, batch)
    packed = list(tags[PACKED].values())
    with engine.begin() as conn:
        for day in range(DAY0, DAY0 + DAYS, 2):
            for tag in packed:
                compact_day(conn, tag, day)
    with engine.begin() as conn:
        for meter in (PLAIN, PACKED):
            write_points(conn, [Point(tags[meter]["kW"], ts, v) for ts, v in late])
    with engine.begin() as conn:
        for day in range(DAY0, DAY0 + DAYS - 1):
            for tag in packed:
                compact_day(conn, tag, day)
        if not with_rollups:
            conn.execute(delete(rollups).where(rollups.c.tag_id.in_(packed)))
    engine.dispose()
    headers = {"Authorization": f"token {dashboard.cookies['meterhub_session']}"}
    for (method, plain_path, body), (_, packed_path, packed_body) in zip(
        requests(seed, PLAIN), requests(seed, PACKED), strict=True
    ):
        plain = dashboard.request(method, plain_path, json=body, headers=headers)
        found = dashboard.request(method, packed_path, json=packed_body, headers=headers)
        assert plain.status_code == found.status_code, plain_path
        if _ID.sub(PLAIN.encode(), found.content) != plain.content:
            a, b = _ID.sub(PLAIN.encode(), found.content), plain.content
            i = next(n for n in range(min(len(a), len(b))) if a[n] != b[n])
            print(a[i - 300 : i + 100])
            print(b[i - 300 : i + 100])
        assert same(found.content) == same(plain.content), plain_path
