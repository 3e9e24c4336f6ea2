"""Platform API speed through the running server, each figure beside a reference measured in
the same run, on SQLite and on PostgreSQL:

- creating the 20,000 tags of 10,000 meters x 2 channels in one data-source call
  (``POST /api/v1/data-sources/``; goal: at most 1 s);
- ingest through the SDK (``set_data``, 5,000 points a call) of READINGS time-major readings
  of every tag, against the plain upsert loop (SQLite) or COPY (PostgreSQL) of the same
  points into the ``points`` table of a migrated database of its own (goal: at least 0.8x):
  the table the platform writes, so both write the same shape (on SQLite a WITHOUT ROWID
  table, one B-tree, where a bare rowid table with its key index keeps two). ROUNDS rounds,
  each of new readings, the reference written right before the SDK sends the same points,
  so both meet the same load; each round's ratio is printed, and their median;
- the latest values of 10,000 of those tags in one ``/smt/data/get`` through the SDK,
  against the plain SQL query for them over the same points (goal: at most 3x).

Medians of REPEAT calls where a call can be repeated.
Usage: .venv/bin/python -m bench.api_speed [--meters 10000] [--readings 10] [--rounds 5]
[--postgres URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import Connection, text

from bench.databases import scratch_postgres, scratch_sqlite
from bench.long_range import median_ms
from bench.servers import serving
from bench.storage_size import plain_write, write_rate
from meterhub.collector.simulated_values import meter_values
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.users import create_user, issue_token
from meterhub.storage import Point
from meterhub_client import DataInteractionClient
from meterhub_client.tags import Tag, TagId

SOURCE = "fleet"
CHANNELS = ("A", "kWh")
START_US = 1_767_225_600_000_000  # 2026-01-01 UTC
MINUTE_US = 60_000_000
BATCH = 5000
LATEST = 10_000


def readings(meters: int, count: int, first: int = 0) -> list[tuple[int, int, int, float]]:
    """(meter, channel, µs, value) of every channel of every meter for ``count`` minutes from
    minute ``first``, time-major as meters report, each meter at its own phase of the minute."""
    found: list[tuple[int, int, int, float]] = []
    for minute in range(first, first + count):
        for meter in range(meters):
            ts = START_US + minute * MINUTE_US + meter * 5_999 % MINUTE_US
            values = meter_values(1, meter, ts / 1e6)
            found.extend((meter, channel, ts, value) for channel, value in enumerate(values))
    return found


def plain_latest(conn: Connection, ids: list[int]) -> int:
    """The reference: each tag's newest row of the row table, the plainest query per database."""
    if conn.dialect.name == "postgresql":
        sql = text(
            "SELECT l.* FROM unnest(CAST(:ids AS integer[])) t(id), LATERAL (SELECT tag_id, ts,"
            " value, quality FROM points WHERE tag_id = t.id ORDER BY ts DESC LIMIT 1) l"
        )
        return len(conn.execute(sql, {"ids": ids}).all())
    sql = text(
        "SELECT tag_id, max(ts), value, quality FROM points"
        " WHERE tag_id IN (SELECT value FROM json_each(:ids)) GROUP BY tag_id"
    )
    return len(conn.execute(sql, {"ids": str(ids)}).all())


def measure(
    url: str, reference_url: str, meters: int, count: int, rounds: int, repeat: int
) -> None:
    kind = url.split(":", 1)[0].split("+", maxsplit=1)[0]
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        user = create_user(conn, "bench", "bench password", is_admin=True)
        headers = {"Authorization": f"token {issue_token(conn, user.id)}"}
    body = {
        "id": SOURCE,
        "tags": [
            {"id": {"tagName": channel, "parentObjectId": f"m{meter}"}}
            for meter in range(meters)
            for channel in CHANNELS
        ],
    }
    upgrade(reference_url)
    reference_engine = make_engine(reference_url)
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving(url, Path(tmp)) as base,
        DataInteractionClient(base, timeout=300, headers=headers) as client,
    ):
        started = time.perf_counter()
        answer = httpx.post(f"{base}/api/v1/data-sources/", json=body, headers=headers, timeout=300)
        create_ms = (time.perf_counter() - started) * 1000
        answer.raise_for_status()
        print(
            f"  {kind:10s} {len(body['tags'])} tags in one data-source call:"
            f" {create_ms:6.0f} ms (goal <= 1000 ms)"
        )
        client.connect(SOURCE)
        tags = [[Tag(TagId(ch, f"m{meter}")) for ch in CHANNELS] for meter in range(meters)]
        reference = "upsert loop" if kind == "sqlite" else "COPY"
        ratios: list[tuple[float, float]] = []
        for round_ in range(rounds):
            found = readings(meters, count, round_ * count)
            plain = write_rate(
                reference_engine,
                (
                    [Point(2 * m + c + 1, ts, v) for m, c, ts, v in found[lo : lo + BATCH]]
                    for lo in range(0, len(found), BATCH)
                ),
                plain_write,
            )
            started = time.perf_counter()
            for meter, channel, ts, value in found:
                tags[meter][channel].add_data(ts, value)
            buffered = time.perf_counter()
            written = client.set_data([tag for pair in tags for tag in pair])
            sent = time.perf_counter()
            assert written == len(found), (written, len(found))
            rate, send_rate = len(found) / (sent - started), len(found) / (sent - buffered)
            ratios.append((rate / plain, send_rate / plain))
            print(
                f"  {kind:10s} SDK ingest of {len(found)} points: {rate:7.0f} points/s with"
                f" add_data = {rate / plain:4.2f}x, set_data alone {send_rate:7.0f}/s ="
                f" {send_rate / plain:4.2f}x the plain {reference} ({plain:.0f}/s)"
            )
        with_add, alone = (statistics.median(column) for column in zip(*ratios, strict=True))
        print(
            f"  {kind:10s} SDK ingest, median of {rounds} rounds: {with_add:4.2f}x with add_data,"
            f" {alone:4.2f}x set_data alone (goal >= 0.8x)"
        )
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT id, key FROM tags ORDER BY id LIMIT {LATEST}")).all()
            pks, keys = [row.id for row in rows], [row.key for row in rows]
            query_ms = median_ms(lambda: plain_latest(conn, pks), repeat)

        def latest() -> None:
            answer = client.get_data(tag_id=keys)
            assert [len(a["data"]) for a in answer] == [1] * len(keys)

        latest_ms = median_ms(latest, repeat)
        print(
            f"  {kind:10s} latest of {len(keys)} tags in one /smt/data/get: {latest_ms:6.1f} ms"
            f" = {latest_ms / query_ms:4.2f}x the plain query ({query_ms:.1f} ms; goal <= 3x)"
        )
    engine.dispose()
    reference_engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--readings", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    args = parser.parse_args()
    print(f"{args.meters} meters x {len(CHANNELS)} channels, {args.readings} readings each:")
    with scratch_sqlite("api") as url, scratch_sqlite("plain") as plain:
        measure(url, plain, args.meters, args.readings, args.rounds, args.repeat)
    with (
        scratch_postgres(args.postgres, "api") as url,
        scratch_postgres(args.postgres, "plain") as plain,
    ):
        measure(url, plain, args.meters, args.readings, args.rounds, args.repeat)


if __name__ == "__main__":
    main()
