"""Faulty meters beside good ones: reported, never stalling the others, nothing lost."""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import Engine, select

from meterhub.collector.health_store import meter_status
from meterhub.collector.simulator import Faults, fault_of, read_records
from meterhub.registry.tables import devices, tags
from meterhub.storage.tables import points
from tests.support import Server, simulator, wait_until

EXPECTED_ERROR = {
    "timeout": "timed out",
    "garbage": "not JSON",
    "wrong_id": "wrong id",
    "reset": "went backwards",
}


def _stored(engine: Engine) -> dict[str, list[tuple[int, float, float, int]]]:
    """device id -> [(ts, A, kW, kW quality)] oldest first."""
    channels: dict[tuple[str, int], dict[str, tuple[float, int]]] = defaultdict(dict)
    query = (
        select(tags.c.key, points.c.ts, points.c.value, points.c.quality)
        .join(points, points.c.tag_id == tags.c.id)
        .order_by(points.c.ts)
    )
    with engine.connect() as conn:
        for key, ts, value, quality in conn.execute(query):
            device_id, channel = key.rsplit(".", 1)
            channels[(device_id, ts)][channel] = (value, quality)
    rows: dict[str, list[tuple[int, float, float, int]]] = defaultdict(list)
    for (device_id, ts), values in sorted(channels.items(), key=lambda item: item[0][1]):
        rows[device_id].append((ts, values["A"][0], values["kW"][0], values["kW"][1]))
    return rows


def _health(engine: Engine) -> dict[str, dict[str, object]]:
    query = select(devices.c.device_id, meter_status).join(
        meter_status, meter_status.c.device_pk == devices.c.id
    )
    with engine.connect() as conn:
        return {row.device_id: dict(row._mapping) for row in conn.execute(query)}


def test_faulty_meters_are_reported_and_good_ones_keep_schedule(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    record = tmp_path / "served"
    faults = Faults(timeout=0.15, garbage=0.15, wrong_id=0.15, reset=0.15)
    with simulator(40, faults=faults, record=record) as sim:
        kinds = {str(m): fault_of(sim.config, port) for m, port in sim.meters}
        assert set(kinds.values()) == {None, *EXPECTED_ERROR}
        server = Server(database_url, tmp_path)
        server.start()
        with server.client() as client:
            for meter_id, port in sim.meters:
                client.post("/counter/", json={"id": meter_id, "port": port}).raise_for_status()
            started = time.monotonic()
            wait_until(lambda: len(_health(engine)) == 40, timeout=10)
            time.sleep(max(0.0, 6.5 - (time.monotonic() - started)))
        assert server.stop() == 0
    assert "Traceback" not in server.log.read_text()

    health, stored = _health(engine), _stored(engine)
    served: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line in read_records(record):
        if kinds[str(line["port"])] not in (None, "reset"):
            continue
        body = json.loads(line["body"])
        served[str(line["port"])].append((float(body["A"]), float(body["kW"])))

    for device_id, kind in kinds.items():
        status = health[device_id]
        if kind is None:
            assert status["status"] == "online"
            assert status["failures"] == 0
            stamps = [ts for ts, *_ in stored[device_id]]
            gaps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
            assert len(gaps) >= 4
            assert all(0.7e6 < gap < 1.3e6 for gap in gaps), gaps
        else:
            assert EXPECTED_ERROR[kind] in str(status["last_error"]), (kind, status)
        if kind in ("timeout", "garbage", "wrong_id"):
            assert status["status"] == "offline"
            assert device_id not in stored
        if kind in (None, "reset"):  # every answer served is stored exactly once
            assert [(a, kw) for _, a, kw, _ in stored[device_id]] == served[device_id]
        if kind == "reset":
            assert status["status"] == "online"
            assert any(quality == 1 for *_, quality in stored[device_id])
