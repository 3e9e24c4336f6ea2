"""``serve`` killed with SIGKILL in the middle of everything, then started again.

While connectors push points through the SDK, the collector polls simulated meters and a
billing run is under way, the server process is killed outright. After a restart: every
point whose write was acknowledged is stored, once, with its value; the collector and the
scheduler go on by themselves; and the bills equal those of a clean run.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, delete, func, select, update

from meterhub.billing.tables import billing_runs, billing_tasks, bills
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device
from meterhub.registry.sources import create_source
from meterhub.registry.tables import tags
from meterhub.registry.tags import TagSpec
from meterhub.storage import TimeRange
from meterhub.storage.series import read_span
from meterhub.times import now_us
from meterhub_client import DataInteractionClient
from meterhub_client.exceptions import MeterhubClientError
from meterhub_client.tags import Tag, TagId
from tests.support import (
    Server,
    billing_estate,
    claim_probe,
    run_holds_its_claim,
    simulator,
    wait_until,
)

DEVICES = 10_000
DAY_US = 86_400_000_000
NOV_1 = 1_793_491_200_000_000  # 2026-11-01 UTC
DEC_1 = 1_796_083_200_000_000  # 2026-12-01 UTC: the fire the run bills
SOURCE, PUSHED_TAGS, BATCHES, PER_BATCH = "dur", 20, 40, 25


def estate(engine: Engine) -> str:
    """DEVICES meters billed monthly (their task disabled, created on 30 November: its one
    due fire is 1 December), three November readings each; and the pushed tags."""
    key = billing_estate(
        engine,
        DEVICES,
        lambda i: [
            (NOV_1 + day * 10 * DAY_US, 50.0 + i % 89 + day * (i % 7) * 2.5) for day in range(3)
        ],
    )
    with engine.begin() as conn:
        conn.execute(update(billing_tasks).values(enabled=False, create_time=DEC_1 - DAY_US))
        specs = [TagSpec(ref=f"{SOURCE}.t{n}") for n in range(PUSHED_TAGS)]
        create_source(conn, SOURCE, "Pushed", tag_specs=specs)
    return key


class Pusher(threading.Thread):
    """A connector: batches of new points through the SDK, each resent until acknowledged,
    against whichever server runs now (``base``)."""

    def __init__(self, token: str) -> None:
        super().__init__(daemon=True)
        self.base = ""
        self.token = token
        self.sent: dict[tuple[str, int], float] = {}
        self.failures = 0
        self.batches_done = 0
        self.stop = threading.Event()

    def run(self) -> None:
        names = [f"t{n}" for n in range(PUSHED_TAGS)]
        tags = [Tag(TagId(name, SOURCE)) for name in names]
        start = now_us() - DAY_US
        for batch in range(BATCHES):
            for name, tag in zip(names, tags, strict=True):
                for k in range(PER_BATCH):
                    x = start + (batch * PER_BATCH + k) * 1_000_000
                    value = float(batch * 1000 + k)
                    tag.add_data(x, value)
                    self.sent[(f"{SOURCE}.{name}", x)] = value
            while not self.stop.is_set():
                try:
                    headers = {"Authorization": f"token {self.token}"}
                    with DataInteractionClient(self.base, retries=0, headers=headers) as client:
                        client.set_data(tags)
                    break
                except MeterhubClientError:
                    self.failures += 1  # the points stay buffered and go with the next try
                    time.sleep(0.1)
            self.batches_done += 1
            time.sleep(0.05)


def bill_totals(engine: Engine) -> tuple[int, Decimal]:
    with engine.connect() as conn:
        count, charged = conn.execute(select(func.count(), func.sum(bills.c.charge))).one()
    return count, Decimal(charged or 0)


def test_sigkill_of_serve_loses_and_doubles_nothing(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    key = estate(engine)
    env = {"METERHUB_SCHEDULER_INTERVAL": "0.2", "METERHUB_COMPACT_ENABLED": "false"}
    with simulator(10) as sim:
        with engine.begin() as conn:
            polled = [
                create_device(conn, str(p), DeviceType.ELECTRICITY, host="127.0.0.1", port=p)
                for p in sim.config.ports
            ]
            meter_tags = [channel_tags(conn, device.pk)["kW"] for device in polled]
        server = Server(database_url, tmp_path, **env)
        server.start()
        pusher = Pusher(server.token)
        pusher.base = server.url
        pusher.start()
        wait_until(lambda: pusher.batches_done >= 3, timeout=30)
        with server.client() as client:
            answer = client.put(f"/api/v1/scheduler/tasks/{key}/status/", json={"enabled": True})
            assert answer.status_code == 200, answer.text
        probe = claim_probe(database_url)
        wait_until(lambda: run_holds_its_claim(probe, key, DEC_1), timeout=30, interval=0.005)
        probe.dispose()
        server.kill()
        assert pusher.batches_done < BATCHES  # killed in the middle of the pushes too
        assert bill_totals(engine)[0] in (0, DEVICES)

        restarted_at = now_us()
        again = Server(database_url, tmp_path, **env)
        again.start()
        pusher.base = again.url
        try:
            pusher.join(timeout=120)
            wait_until(lambda: bill_totals(engine)[0] == DEVICES, timeout=60)
            wait_until(lambda: _read_since(engine, meter_tags, restarted_at), timeout=30)
        finally:
            pusher.stop.set()
            again.stop()
    assert not pusher.is_alive()
    assert pusher.failures > 0  # the kill was seen by the connector
    stored = _pushed(engine)
    assert stored == pusher.sent
    after_kill = bill_totals(engine)
    with engine.begin() as conn:  # forget the bills and bill once more, cleanly
        conn.execute(delete(bills))
        conn.execute(delete(billing_runs))
        conn.execute(update(billing_tasks).values(last_run_at=None))
    with Server(database_url, tmp_path, **env):
        wait_until(lambda: bill_totals(engine)[0] == DEVICES, timeout=60)
    assert bill_totals(engine) == after_kill


def _polled_meters(engine: Engine, ports: range) -> list[int]:
    """Meters of the simulator, polled; their register tags."""
    with engine.begin() as conn:
        polled = [
            create_device(conn, str(port), DeviceType.ELECTRICITY, host="127.0.0.1", port=port)
            for port in ports
        ]
        return [channel_tags(conn, device.pk)["kW"] for device in polled]


def _pushed(engine: Engine) -> dict[tuple[str, int], float]:
    """Every stored point of the pushed tags; none stored twice."""
    stored: dict[tuple[str, int], float] = {}
    with engine.connect() as conn:
        for n in range(PUSHED_TAGS):
            key = f"{SOURCE}.t{n}"
            tag_id = conn.execute(select(tags.c.id).where(tags.c.key == key)).scalar_one()
            columns = read_span(conn, tag_id, TimeRange())
            assert len(set(columns.ts.tolist())) == len(columns.ts)
            times, values = columns.ts.tolist(), columns.value.tolist()
            stored.update(((key, ts), value) for ts, value in zip(times, values, strict=True))
    return stored


def _read_since(engine: Engine, tag_ids: list[int], since: int) -> bool:
    """Whether every polled meter has a reading taken after ``since``."""
    with engine.connect() as conn:
        return all(len(read_span(conn, t, TimeRange(since, None)).ts) > 0 for t in tag_ids)
