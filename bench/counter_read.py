"""``GET /counter-data/<id>/`` under wrk, against a bare FastAPI endpoint on the same server.

Builds a fleet of 1,000 electricity meters (channels A and kW, three days of readings every
5 minutes, poll health) on SQLite, and on PostgreSQL when reachable. For each worker count
N it starts ``meterhub serve --workers N --verbose`` (collector, scheduler and compaction
off, so only request work is timed) and a bare FastAPI app answering constant JSON under
uvicorn with the same options (httptools, uvloop, info log with access lines, as
``--verbose`` logs) and ``--workers N``, then runs ``wrk -t2 -c64 -d10s`` against each
after a 2 s warm-up. The counter-data requests pick a random meter of the fleet each (a wrk
Lua script), once with an API token and once with open ingest (no token, as the original
connector client calls). Prints req/s and latency p50/p99 of both, and the counter/bare
ratio against the 0.6x goal.
Usage: .venv/bin/python -m bench.counter_read [--meters 1000] [--workers 1 2] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from fastapi import FastAPI

from bench.databases import scratch_postgres, scratch_sqlite
from bench.servers import meterhub_started, running, uvicorn_started
from meterhub.collector.health import Health, Status
from meterhub.collector.health_store import save_health
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device
from meterhub.registry.users import create_user, issue_token
from meterhub.storage import Point, write_points
from meterhub.times import now_us

GOAL = 0.6
FIRST_ID = 10_000
DAYS = 3
STEP_US = 300_000_000
WRK = ["-t2", "-c64", "-d10s"]
UVICORN = ["--http", "httptools", "--loop", "uvloop", "--log-level", "info"]

bare = FastAPI()


@bare.get("/bare/")
async def constant() -> dict[str, object]:
    """The reference: constant JSON of the counter-data shape."""
    return {"id": 44, "A": 21.3, "kW": 44325.125}


RESULT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""

COUNTER_LUA = """
local token = os.getenv("BENCH_TOKEN")
if token ~= "" then wrk.headers["Authorization"] = "token " .. token end
request = function()
  return wrk.format(nil, "/counter-data/" .. math.random({first}, {last}) .. "/")
end
"""


@dataclass(frozen=True, slots=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    """Timeouts (over wrk's 2 s) and broken connections."""


def build(url: str, meters: int) -> str:
    """Fill a new database with the fleet; returns an administrator's token."""
    upgrade(url)
    engine = make_engine(url)
    now = now_us() // STEP_US * STEP_US
    with engine.begin() as conn:
        token = issue_token(conn, create_user(conn, "bench", "correct horse", is_admin=True).id)
        tags = [
            channel_tags(conn, create_device(conn, str(FIRST_ID + n), DeviceType.ELECTRICITY).pk)
            for n in range(meters)
        ]
        health = Health(Status.ONLINE, now, now, None, None, 0, 4.2, 1000, 0)
        save_health(conn, dict.fromkeys(range(1, meters + 1), health))
    steps = DAYS * 86_400_000_000 // STEP_US
    for first in range(0, meters, 20):
        batch = [
            Point(tag_ids[channel], now - (steps - k) * STEP_US, value)
            for n, tag_ids in enumerate(tags[first : first + 20], first)
            for k in range(1, steps + 1)
            for channel, value in (("A", 5.0 + (n + k) % 70 / 10), ("kW", 1000.0 + n + k / 8))
        ]
        with engine.begin() as conn:
            write_points(conn, batch)
    engine.dispose()
    return token


def wrk(url: str, script: Path, token: str, seconds: str | None = None) -> Result:
    """One wrk run; ``token`` (or none, ``""``) goes with each request of the counter script."""
    options = [*WRK[:-1], f"-d{seconds}"] if seconds else WRK
    command = ["wrk", *options, "-s", str(script), url]
    env = {**os.environ, "BENCH_TOKEN": token}
    run = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    out = run.stdout
    found = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no result from wrk: {out}{run.stderr}")
    requests, duration_us, p50, p99, failed, socket_errors = map(int, found.groups())
    if failed:
        raise RuntimeError(f"{url}: {failed} non-2xx answers of {requests}: {out}")
    return Result(requests / (duration_us / 1e6), p50 / 1000, p99 / 1000, socket_errors)


def timed(url: str, script: Path, token: str = "") -> Result:
    wrk(url, script, token, "2s")  # warm-up: connection pools, code paths
    return wrk(url, script, token)


def bare_server(workers: int) -> list[str]:
    return [
        *[sys.executable, "-m", "uvicorn", "bench.counter_read:bare", "--port", "0"],
        *[*UVICORN, "--workers", str(workers)],
    ]


def meterhub_env(url: str, open_ingest: bool) -> dict[str, str]:
    return {
        **os.environ,
        "METERHUB_DATABASE_URL": url,
        "METERHUB_COLLECTOR_ENABLED": "false",
        "METERHUB_SCHEDULER_ENABLED": "false",
        "METERHUB_COMPACT_ENABLED": "false",
        "METERHUB_OPEN_INGEST": str(open_ingest).lower(),
    }


def row(label: str, reference: Result, result: Result) -> str:
    ratio = result.rps / reference.rps
    return (
        f"  {label:<14} | {reference.rps:>6.0f} {reference.p50_ms:>6.1f} {reference.p99_ms:>6.1f}"
        f" | {result.rps:>6.0f} {result.p50_ms:>6.1f} {result.p99_ms:>6.1f}"
        f" | {ratio:>5.2f} {'met' if ratio >= GOAL else 'MISSED'}"
        + "".join(
            f"  ({r.socket_errors} {name} socket errors)"
            for name, r in (("bare", reference), ("counter", result))
            if r.socket_errors
        )
    )


def measure(url: str, meters: int, worker_counts: list[int]) -> None:
    started = time.perf_counter()
    token = build(url, meters)
    kind = url.split(":", 1)[0].split("+", 1)[0]
    print(
        f"{kind}: {meters} meters, {DAYS} days of 5-minute readings"
        f" (built in {time.perf_counter() - started:.0f} s); wrk {' '.join(WRK)}"
    )
    columns = f"{'req/s':>6} {'p50 ms':>6} {'p99 ms':>6}"
    print(f"  {'':14} | {'bare constant JSON':^20} | {'GET /counter-data/':^20} | ratio")
    print(f"  {'workers, auth':14} | {columns} | {columns} | goal {GOAL}x")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        plain, counter = tmp / "bare.lua", tmp / "counter.lua"
        plain.write_text(RESULT_LUA)
        counter.write_text(
            COUNTER_LUA.format(first=FIRST_ID, last=FIRST_ID + meters - 1) + RESULT_LUA
        )
        for workers in worker_counts:
            log = tmp / f"bare{workers}.log"
            bare_started = uvicorn_started(workers)
            with running(bare_server(workers), dict(os.environ), log, bare_started) as base:
                reference = timed(base + "/bare/", plain)
            for auth, open_ingest in (("token", False), ("open ingest", True)):
                command = [sys.executable, "-m", "meterhub.cli", "serve", "--port", "0"]
                command += ["--workers", str(workers), "--verbose"]  # access lines, as bare's
                log = tmp / f"serve{workers}{auth}.log"
                env = meterhub_env(url, open_ingest)
                with running(command, env, log, meterhub_started) as base:
                    result = timed(base, counter, "" if open_ingest else token)
                print(row(f"{workers}, {auth}", reference, result), flush=True)


def postgres_problem(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", dest="use_postgres", action="store_false")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: `make bench` installs it (as root), or apt-get install wrk")
    with scratch_sqlite("counter_read") as url:
        measure(url, args.meters, args.workers)
    if not args.use_postgres:
        return
    problem = postgres_problem(args.postgres)
    if problem:
        print(f"postgresql: skipped, {args.postgres} is unreachable: {problem}")
        return
    with scratch_postgres(args.postgres, "counter_read") as url:
        measure(url, args.meters, args.workers)


if __name__ == "__main__":
    main()
