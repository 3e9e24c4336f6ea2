"""``meterhub serve --workers 2``: real worker processes on one port, background jobs in one."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from meterhub.collector.simulator import read_records
from tests.support import Server, simulator, wait_until

WORKERS = {"METERHUB_WORKERS": "2"}
API_ONLY_WORKERS = {**WORKERS, "METERHUB_COLLECTOR_ENABLED": "false"}


def _worker_pids(server: Server) -> dict[int, int]:
    """``{worker number: pid}`` from the log (of ``serve --verbose``)."""
    started = re.findall(
        r"worker(\d) INFO \S+ Started server process \[(\d+)\]", server.log.read_text()
    )
    return {int(n): int(pid) for n, pid in started}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _served_by(server: Server) -> set[str]:
    """The workers whose access log shows a counter read."""
    return set(
        re.findall(r"(worker\d) INFO uvicorn\.access .*GET /counter-data/", server.log.read_text())
    )


def _polls(record: Path) -> Counter[int]:
    return Counter(line["port"] for line in read_records(record))


def test_two_workers_answer_and_poll_once(database_url: str, tmp_path: Path) -> None:
    record = tmp_path / "served"
    with (
        simulator(4, record=record) as sim,
        Server(database_url, tmp_path, **WORKERS).verbose() as server,
        server.client() as client,
    ):
        pids = _worker_pids(server)
        assert sorted(pids) == [0, 1]
        assert len(set(pids.values())) == 2  # two processes
        for meter_id, port in sim.meters:
            assert client.post("/counter/", json={"id": meter_id, "port": port}).status_code == 201
        wait_until(lambda: all(_polls(record)[port] >= 2 for _, port in sim.meters), timeout=15)

        def read(meter_id: int) -> int:
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as fresh:
                return fresh.get(f"/counter-data/{meter_id}/").status_code

        with ThreadPoolExecutor(8) as pool:  # a new connection per read, 8 at a time
            deadline = time.monotonic() + 30
            while _served_by(server) != {"worker0", "worker1"} and time.monotonic() < deadline:
                meters = [meter_id for meter_id, _ in sim.meters] * 10
                assert set(pool.map(read, meters)) == {200}
        assert _served_by(server) == {"worker0", "worker1"}

        before = _polls(record)
        time.sleep(5)  # a poll interval is 1 s: one collector polls each meter about 5 times
        after = _polls(record)
        for _, port in sim.meters:
            assert 3 <= after[port] - before[port] <= 6
        assert server.stop() == 0
    assert not any(_alive(pid) for pid in pids.values())
    assert "Traceback" not in server.log.read_text()


def test_a_dead_worker_stops_the_others(database_url: str, tmp_path: Path) -> None:
    with Server(database_url, tmp_path, **API_ONLY_WORKERS).verbose() as server:
        pids = _worker_pids(server)
        os.kill(pids[1], signal.SIGKILL)
        assert server.wait(timeout=30) == 1
        assert not _alive(pids[0])
    assert "meterhub-worker-1 ended (exit code -9): stopped the others" in server.log.read_text()


def test_workers_stop_when_the_parent_is_killed(database_url: str, tmp_path: Path) -> None:
    with Server(database_url, tmp_path, **API_ONLY_WORKERS).verbose() as server:
        pids = _worker_pids(server)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        wait_until(lambda: not any(_alive(pid) for pid in pids.values()), timeout=30)
