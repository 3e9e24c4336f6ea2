"""Onboarding a fleet of meters through the running server, on SQLite and on PostgreSQL:
one ``POST /api/v1/meters/`` a meter (a sample, and what the whole fleet would take at its
rate) against the bulk imports of the whole fleet (56,001 meters, one a port 9000-65000):

- CSV through the API (``POST /api/v1/meters/import.csv``) into the registry (goal on
  SQLite: under 5 s); the same file again (nothing changes); the file with every tenth
  meter disabled (updates);
- the JSON list of ``POST /api/v1/meters/bulk`` (a second fleet, on another host);
- ``meterhub meters import`` (a third fleet): the command's wall time, with Python's start;
- ``GET /api/v1/meters/export.csv`` of everything registered.

Each fleet sits on a host of its own (127.0.0.2, .3, .4; the sample on 127.0.0.1), so all
share one database and one server.
Usage: .venv/bin/python -m bench.onboarding [--meters 56001] [--sample 2000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx

from bench.databases import scratch_postgres, scratch_sqlite
from bench.servers import serving
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.users import create_user, issue_token

FIRST_PORT = 9000
COLUMNS = "device_id,type,water_kind,host,port,enabled,house_id"


def fleet_csv(prefix: str, host: str, meters: int, *, disabled_every: int = 0) -> bytes:
    """``meters`` meters (every fifth a water meter) as the import takes them."""
    lines = [COLUMNS]
    for i in range(meters):
        kind, water = ("water", "tap") if i % 5 == 4 else ("electricity", "")
        enabled = "false" if disabled_every and i % disabled_every == 0 else "true"
        lines.append(f"{prefix}{i},{kind},{water},{host},{FIRST_PORT + i},{enabled},")
    return ("\r\n".join(lines) + "\r\n").encode()


def fleet_json(prefix: str, host: str, meters: int) -> bytes:
    items = [
        {
            "device_id": f"{prefix}{i}",
            "type": "water" if i % 5 == 4 else "electricity",
            "water_kind": "tap" if i % 5 == 4 else None,
            "host": host,
            "port": FIRST_PORT + i,
        }
        for i in range(meters)
    ]
    return json.dumps(items, separators=(",", ":")).encode()


def timed(call: Callable[[], httpx.Response]) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    answer = call()
    took = time.perf_counter() - started
    answer.raise_for_status()
    counts: dict[str, int] = answer.json() if "json" in answer.headers["content-type"] else {}
    return took, counts


def one_at_a_time(client: httpx.Client, sample: int) -> float:
    """Seconds per meter of ``sample`` meters POSTed one after another (one connection)."""
    started = time.perf_counter()
    for i in range(sample):
        body = {"device_id": f"single-{i}", "host": "127.0.0.1", "port": FIRST_PORT + i}
        client.post("/api/v1/meters/", json=body).raise_for_status()
    return (time.perf_counter() - started) / sample


def cli_import(url: str, path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "meterhub.cli", "meters", "import", str(path), "--database", url],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return time.perf_counter() - started


def measure(url: str, meters: int, sample: int) -> None:
    kind = url.split(":", 1)[0].split("+", maxsplit=1)[0]
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        user = create_user(conn, "bench", "bench password", is_admin=True)
        headers = {"Authorization": f"token {issue_token(conn, user.id)}"}
    engine.dispose()
    fleet = fleet_csv("m", "127.0.0.2", meters)
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving(url, Path(tmp)) as base,
        httpx.Client(base_url=base, headers=headers, timeout=600) as client,
    ):
        single = one_at_a_time(client, sample)
        print(
            f"  {kind:10s} one POST a meter: {sample} in {single * sample:5.1f} s"
            f" = {1 / single:5.0f} meters/s; {meters} would take {single * meters:5.1f} s"
        )

        def post_csv(data: bytes) -> httpx.Response:
            return client.post(
                "/api/v1/meters/import.csv", content=data, headers={"content-type": "text/csv"}
            )

        for label, data in (
            ("CSV import, new meters", fleet),
            ("same CSV again", fleet),
            ("CSV, every 10th disabled", fleet_csv("m", "127.0.0.2", meters, disabled_every=10)),
        ):
            took, counts = timed(partial(post_csv, data))
            goal = " (goal < 5 s)" if label.startswith("CSV import") and kind == "sqlite" else ""
            print(
                f"  {kind:10s} {label:26s} {took:5.2f} s{goal}, {single * meters / took:5.0f}x"
                f" one POST a meter: {counts}"
            )
        json_body = fleet_json("j", "127.0.0.3", meters)
        took, counts = timed(
            lambda: client.post(
                "/api/v1/meters/bulk",
                content=json_body,
                headers={"content-type": "application/json"},
            )
        )
        print(
            f"  {kind:10s} {'JSON bulk, new meters':26s} {took:5.2f} s,"
            f" {single * meters / took:5.0f}x one POST a meter: {counts}"
        )
        path = Path(tmp) / "fleet.csv"
        path.write_bytes(fleet_csv("c", "127.0.0.4", meters))
        took = cli_import(url, path)
        print(f"  {kind:10s} {'meterhub meters import':26s} {took:5.2f} s (the whole command)")
        took, _ = timed(lambda: client.get("/api/v1/meters/export.csv"))
        total = sample + 3 * meters
        print(f"  {kind:10s} {'export.csv':26s} {took:5.2f} s for {total} meters")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=56_001)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    args = parser.parse_args()
    print(f"{args.meters} meters in one import; one POST a meter for {args.sample}:")
    with scratch_sqlite("onboarding") as url:
        measure(url, args.meters, args.sample)
    with scratch_postgres(args.postgres, "onboarding") as url:
        measure(url, args.meters, args.sample)


if __name__ == "__main__":
    main()
