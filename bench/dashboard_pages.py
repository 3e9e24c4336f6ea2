"""Server time of every dashboard page with 56,001 meters and a year of minute readings.

Builds the database of ``bench/dashboard_data.py`` (SQLite, and PostgreSQL when reachable),
starts ``meterhub serve`` on it (collector and scheduler off, so only page work is timed),
logs in through the form and fetches each page REPEAT times. Prints the server time
(its ``Server-Timing`` header) as median / 95th percentile / max, the wall time seen by
the client, and each page's max against the 300 ms budget. For scale, the JSON API's
meter list and the platform history query of the same data are timed in the same run.
Usage: .venv/bin/python -m bench.dashboard_pages [--meters 56001] [--repeat 15] [--no-postgres]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.dashboard_data import METERS, PASSWORD, USERNAME, Dataset, build
from bench.databases import scratch_postgres, scratch_sqlite
from bench.servers import serving
from meterhub.db import make_engine
from meterhub.migrations import upgrade

BUDGET_MS = 300.0
HOUR_US = 3_600_000_000
RANGES = {"hour": 1, "day": 24, "week": 24 * 7, "month": 24 * 30, "year": 24 * 365}


def pages(data: Dataset) -> list[tuple[str, str]]:
    """(label, path) of every page and JSON feed the dashboard's screens load."""
    meter, now = data.meter, data.now
    found = [
        ("overview", "/"),
        ("meters, page 1", "/meters"),
        ("meters, last page", f"/meters?page={METERS // 50 + 1}&size=50"),
        ("meters, offline", "/meters?status=offline"),
        ("meters, search", "/meters?search=6400"),
        ("meters, one project", f"/meters?project={data.project_id}&size=200"),
        ("meter page", f"/meters/{meter}"),
        ("meter live values", f"/meters/{meter}/live"),
    ]
    for name, hours in RANGES.items():
        window = f"from={now - hours * HOUR_US}&to={now}"
        found.append((f"chart A, {name}", f"/meters/{meter}/series?channel=A&{window}"))
    year = f"from={now - RANGES['year'] * HOUR_US}&to={now}"
    week = f"from={now - RANGES['week'] * HOUR_US}&to={now}"
    found += [
        ("chart kW, year", f"/meters/{meter}/series?channel=kW&{year}"),
        ("daily consumption, year", f"/meters/{meter}/daily?{year}"),
        ("poll health, week", f"/meters/{meter}/health?{week}"),
        ("projects", "/projects"),
        ("project", f"/projects/{data.project_id}"),
        ("bills", f"/projects/{data.project_id}/bills"),
        ("billing tasks", "/billing/tasks"),
        ("billing task", f"/billing/tasks/{data.task_key}"),
        ("new task form", "/billing/tasks/new"),
        ("data sources", "/sources"),
        ("data source", f"/sources/{data.source_id}"),
    ]
    return found


def references(data: Dataset) -> list[tuple[str, str, dict[str, object] | None]]:
    """(label, path, JSON body to POST) of the JSON API answering the same questions."""
    year = data.now - RANGES["year"] * HOUR_US
    history = {"tagId": f"{data.meter}.A", "from": year, "to": data.now, "maxCount": 1000}
    return [
        ("API meter list, 25", "/api/v1/meters/?page_size=25", None),
        ("API history A, year, maxCount 1000", "/smt/data/get", history),
    ]


def timed(
    client: httpx.Client, path: str, repeat: int, body: dict[str, object] | None = None
) -> tuple[list[float], list[float]]:
    """Server and wall milliseconds of ``repeat`` fetches (after one warm-up); POST ``body``
    when there is one."""
    server, wall = [], []
    for attempt in range(repeat + 1):
        started = time.perf_counter()
        answer = client.get(path) if body is None else client.post(path, json=body)
        took = (time.perf_counter() - started) * 1000
        if answer.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {answer.status_code} {answer.text[:300]}")
        if attempt:
            dur = re.search(r"dur=([\d.]+)", answer.headers["server-timing"])
            assert dur is not None
            server.append(float(dur.group(1)))
            wall.append(took)
    return server, wall


def report(label: str, server: list[float], wall: list[float]) -> float:
    ordered = sorted(server)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(
        f"  {label:36} {statistics.median(server):7.1f} {p95:7.1f} {max(server):7.1f}"
        f" {statistics.median(wall):8.1f} {max(server) / BUDGET_MS:7.2f}"
    )
    return max(server)


def measure(url: str, meters: int, repeat: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    started = time.perf_counter()
    data = build(engine, meters)
    engine.dispose()
    kind = url.split(":", 1)[0].split("+", 1)[0]
    print(f"{kind}: {meters} meters, a year of minute readings for meter {data.meter}", end="")
    print(f" (built in {time.perf_counter() - started:.0f} s); {repeat} fetches each, ms:")
    print(f"  {'page':36} {'median':>7} {'p95':>7} {'max':>7} {'wall':>8} {'/300ms':>7}")
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving(url, Path(tmp)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        form = {"username": USERNAME, "password": PASSWORD}
        assert client.post("/login", data=form).status_code == 303
        worst = max(report(label, *timed(client, path, repeat)) for label, path in pages(data))
        client.headers["Authorization"] = f"token {client.cookies['meterhub_session']}"
        print("  for scale, the JSON API on the same data:")
        for label, path, body in references(data):
            report(label, *timed(client, path, repeat, body))
    verdict = "within" if worst <= BUDGET_MS else "OVER"
    print(f"  slowest page: {worst:.1f} ms server time, {verdict} the {BUDGET_MS:.0f} ms budget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=METERS)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", dest="use_postgres", action="store_false")
    args = parser.parse_args()
    with scratch_sqlite("dashboard") as url:
        measure(url, args.meters, args.repeat)
    if args.use_postgres:
        with scratch_postgres(args.postgres, "dashboard") as url:
            measure(url, args.meters, args.repeat)


if __name__ == "__main__":
    main()
