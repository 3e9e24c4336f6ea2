"""SDK ingest through the running server while it compacts a backlog, against the same ingest
once it is done.

A closed day of TAGS tags (hourly points) is in the row table when ``meterhub serve`` starts
with compaction on; its first pass moves those TAGS days (a day to a chunk, one small
transaction each), while rounds of ROUND points (recent, ten per tag) are pushed with the
SDK's ``set_data`` (at most ROUNDS). Once the pass is done, ROUNDS rounds again.
Printed per database: each round's points per second and the chunks made by then, and the
medians of the two phases with their ratio.
Usage: .venv/bin/python -m bench.ingest_while_compacting [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine, text

from bench.databases import on_each_database
from bench.servers import serving
from meterhub.db import make_engine
from meterhub.migrations import upgrade
from meterhub.registry.sources import create_source, source_tags
from meterhub.registry.tags import TagSpec
from meterhub.registry.users import create_user, issue_token
from meterhub.storage import Point, write_points
from meterhub.times import DAY_US, HOUR_US
from meterhub_client import DataInteractionClient, Tag, TagId

TAGS = 20_000
PER_TAG = 10
ROUND = TAGS * PER_TAG
ROUNDS = 6
OLD_DAY = 20_454  # 2026-01-01: long closed
SOURCE = "compacting"


def fill(engine: Engine) -> dict[str, str]:
    """The tags, their closed day and newest rows; the headers of an administrator's token."""
    with engine.begin() as conn:
        specs = [
            TagSpec(ref={"tagName": channel, "parentObjectId": f"m{meter}"})
            for meter in range(TAGS // 2)
            for channel in ("a", "b")
        ]
        create_source(conn, SOURCE, "Ingest while compacting", tag_specs=specs)
        ids = [tag.pk for tag in source_tags(conn, SOURCE)]
        user = create_user(conn, "bench", "bench password", is_admin=True)
        headers = {"Authorization": f"token {issue_token(conn, user.id)}"}
    start = OLD_DAY * DAY_US
    for first in range(0, TAGS, 2_000):
        batch = [
            Point(tag, start + hour * HOUR_US, float(hour))
            for tag in ids[first : first + 2_000]
            for hour in range(24)
        ]
        with engine.begin() as conn:
            write_points(conn, batch)
    return headers


def measure(url: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    headers = fill(engine)
    kind = url.split(":", 1)[0]
    phases: tuple[list[float], list[float]] = ([], [])
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving(url, Path(tmp)) as base,
        DataInteractionClient(base, timeout=300, headers=headers) as client,
    ):
        client.connect(SOURCE)
        tags = [Tag(TagId(ch, f"m{m}")) for m in range(TAGS // 2) for ch in ("a", "b")]
        now = time.time_ns() // 1000

        def chunks_made() -> int:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM chunks")).scalar_one())

        for phase in phases:
            if phase is phases[1]:  # the rest of the pass, without ingest
                deadline = time.monotonic() + 900
                while chunks_made() < TAGS and time.monotonic() < deadline:
                    time.sleep(0.5)
            while len(phase) < ROUNDS and (phase is phases[1] or chunks_made() < TAGS):
                for tag in tags:
                    for n in range(PER_TAG):
                        tag.add_data(now + n, float(n))
                now += PER_TAG
                started = time.perf_counter()
                rate = client.set_data(tags) / (time.perf_counter() - started)
                phase.append(rate)
                made = chunks_made()
                print(f"  {kind:18s} {rate:8.0f} points/s, {made:5d} chunks made by then")
    engine.dispose()
    medians = [statistics.median(phase) if phase else 0.0 for phase in phases]
    print(
        f"  {kind:18s} median while compacting {medians[0]:.0f} points/s ({len(phases[0])}"
        f" rounds), after {medians[1]:.0f} ({len(phases[1])}): {medians[0] / medians[1]:.2f}x"
    )


def main() -> None:
    on_each_database(
        __doc__,
        "ingest_compacting",
        f"SDK ingest, rounds of {ROUND} points, while {TAGS} closed days are compacted:",
        measure,
    )


if __name__ == "__main__":
    main()
