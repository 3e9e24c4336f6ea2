"""Chunks on SQLite and PostgreSQL: the channels of a reading share their times, borrowers keep
their points whatever their lender goes through, reads never see a stale decoded chunk,
thinning a long compacted period reads stored points only where rollups cannot answer, and
a compaction pass on SQLite writes its chunks in an order that fills pages."""

from __future__ import annotations

import itertools
import random
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, select

from meterhub.collector.simulated_values import meter_values
from meterhub.db import make_engine
from meterhub.storage import Point, TimeRange, compactor, delete_points, write_points
from meterhub.storage.chunks import SHARED_TIMES_MIN_BYTES, find
from meterhub.storage.codec import Columns
from meterhub.storage.compactor import compact, compact_day, roll_up_unrolled
from meterhub.storage.series import read_rows, read_span
from meterhub.storage.tables import chunks, rollups
from meterhub.storage.thinning import _Parts, thin, thin_span
from meterhub.times import DAY_US

DAY0 = 20_454  # 2026-01-01
T0 = DAY0 * DAY_US
MINUTE = 60_000_000


def reading_times(days: int, jitter: int = 500_000) -> list[int]:
    """One reading a minute with up to ``jitter`` µs of poll delay."""
    rng = random.Random(7)
    return [T0 + n * MINUTE + rng.randrange(jitter + 1) for n in range(days * 1440)]


def write_meter(conn: Connection, amps: int, kwh: int, times: list[int]) -> None:
    """A meter's two channels, each reading at the same time (as the collector writes them)."""
    batch = []
    for n, ts in enumerate(times):
        batch += [Point(amps, ts, 20.0 + n % 7), Point(kwh, ts, 1000.0 + n * 0.01)]
    write_points(conn, batch)


def chunk_rows(conn: Connection) -> dict[tuple[int, int], tuple[int | None, int]]:
    """(tag, day) -> (the tag it borrows times from, the size of its own times)."""
    c = chunks.c
    query = select(c.tag_id, c.day, c.ts_tag, c.ts_blob)
    return {(tag, day): (lender, len(blob)) for tag, day, lender, blob in conn.execute(query)}


def plain(columns: Columns) -> list[tuple[int, float, int]]:
    ts, value, quality = (column.tolist() for column in columns)
    return list(zip(ts, value, quality, strict=True))


def stored(conn: Connection, tag: int) -> list[tuple[int, float, int]]:
    return plain(read_span(conn, tag, TimeRange()))


def lenders(conn: Connection, tags: tuple[int, ...], day: int) -> dict[int, int | None]:
    """Of each of ``tags``, the tag whose times its chunk of ``day`` borrows, or ``None``; a
    lender's own times are large enough to share, a borrower's own are empty."""
    rows = chunk_rows(conn)
    for tag in tags:
        lender, size = rows[(tag, day)]
        assert (size >= SHARED_TIMES_MIN_BYTES) if lender is None else (size == 0)
    return {tag: rows[(tag, day)][0] for tag in tags}


def test_channels_of_a_reading_share_their_times(engine: Engine) -> None:
    with engine.begin() as conn:
        write_meter(conn, 1, 2, reading_times(2))
        write_meter(conn, 3, 4, reading_times(2, jitter=0))  # regular times: nothing to share
        before = {tag: stored(conn, tag) for tag in (1, 2, 3, 4)}
    compact(engine, settle_us=0, now=T0 + 3 * DAY_US)
    with engine.connect() as conn:
        rows = chunk_rows(conn)
        for day in (DAY0, DAY0 + 1):
            assert sorted(lenders(conn, (1, 2), day).values(), key=str) in ([1, None], [2, None])
            assert rows[(3, day)][0] is None
            assert rows[(4, day)][0] is None
        assert {tag: stored(conn, tag) for tag in (1, 2, 3, 4)} == before


def test_the_shared_times_go_where_they_take_fewer_pages(engine: Engine) -> None:
    """On SQLite a row over a page fills its overflow pages to the brim, so the big chunk takes
    the times whichever is compacted first; PostgreSQL keeps them with the first."""
    times = reading_times(2)
    rng = random.Random(3)
    with engine.begin() as conn:
        write_points(conn, [Point(1, ts, rng.uniform(0, 100)) for ts in times])  # big values
        write_points(conn, [Point(2, ts, 5.0) for ts in times])  # tiny ones
        compact_day(conn, 1, DAY0)
        compact_day(conn, 2, DAY0)
        compact_day(conn, 2, DAY0 + 1)
        compact_day(conn, 1, DAY0 + 1)
        second = {1: 2, 2: None} if conn.dialect.name == "postgresql" else {1: None, 2: 1}
        assert lenders(conn, (1, 2), DAY0) == {1: None, 2: 1}
        assert lenders(conn, (1, 2), DAY0 + 1) == second
        assert [ts for ts, _, _ in stored(conn, 1)] == times
        assert stored(conn, 2) == [(ts, 5.0, 0) for ts in times]


def test_a_borrower_keeps_its_times_when_its_lender_changes_or_goes(engine: Engine) -> None:
    times = reading_times(1)
    with engine.begin() as conn:
        write_meter(conn, 1, 2, times)
        write_meter(conn, 5, 6, times)  # a second meter read at the very same instants
    compact(engine, settle_us=0, now=T0 + 2 * DAY_US)
    with engine.connect() as conn:
        found = lenders(conn, (1, 2, 5, 6), DAY0)
        (lender,) = [tag for tag, held in found.items() if held is None]
        assert set(found.values()) == {None, lender}
        before = {tag: stored(conn, tag) for tag in (1, 2, 5, 6)}
    with engine.begin() as conn:  # a late point moves the lender's times
        write_points(conn, [Point(lender, T0 + 30_000_000, 99.0)])
        compact_day(conn, lender, DAY0)
        assert stored(conn, lender)[1] == (T0 + 30_000_000, 99.0, 0)
        others = tuple(tag for tag in (1, 2, 5, 6) if tag != lender)
        assert {tag: stored(conn, tag) for tag in others} == {t: before[t] for t in others}
        assert lenders(conn, (lender,), DAY0) == {lender: None}
        found = lenders(conn, others, DAY0)
        (second,) = [tag for tag, held in found.items() if held is None]
        assert set(found.values()) == {None, second}
    with engine.begin() as conn:
        delete_points(conn, [second])
        rest = tuple(tag for tag in others if tag != second)
        assert {tag: stored(conn, tag) for tag in rest} == {t: before[t] for t in rest}
        assert list(lenders(conn, rest, DAY0).values()).count(None) == 1


def test_a_rewritten_chunk_is_read_anew(engine: Engine) -> None:
    times = reading_times(1)
    with engine.begin() as conn:
        write_meter(conn, 1, 2, times)
    compact(engine, settle_us=0, now=T0 + 2 * DAY_US)
    with engine.connect() as conn:
        assert stored(conn, 2)[10][1] == 1000.1  # decoded, and now cached
    with engine.begin() as conn:
        write_points(conn, [Point(2, times[10], 5.5)])
        assert stored(conn, 2)[10][1] == 5.5  # the row wins
        compact_day(conn, 2, DAY0)
    with engine.connect() as conn:
        assert read_rows(conn, 2, TimeRange()).ts.tolist() == [times[-1]]  # the newest stays
        assert stored(conn, 2)[10] == (times[10], 5.5, 0)


def test_thinning_reads_stored_points_only_where_hours_cross_a_bucket(engine: Engine) -> None:
    with engine.begin() as conn:
        write_meter(conn, 1, 2, reading_times(10))
    compact(engine, settle_us=0, now=T0 + 11 * DAY_US)
    with engine.connect() as conn:  # the newest reading stays a row, after its day's rollups
        span = TimeRange(T0, None)
        every = read_span(conn, 1, span)
        parts = _Parts(conn, 1, span, find(conn, 1, span), read_rows(conn, 1, span))
        assert parts.count == len(every.ts) == 14_400
        thinned = parts.thin(40)  # ten buckets of a day: nine edges, each inside an hour
        assert sum(len(p.ts) for p in parts.points) <= 10 * 60
        assert plain(thinned) == plain(thin(every, 40))
        found, excess = thin_span(conn, 1, span, 40)
        assert excess
        assert plain(found) == plain(thinned)


def test_a_period_thinned_again_after_a_day_is_rewritten_reads_the_new_rollups(
    engine: Engine,
) -> None:
    """A period's rollups are cached joined under its chunks' stamps: once a day of it is
    compacted again (a new stamp), thinning the same period reads that day's new rollups."""
    times = reading_times(3)
    with engine.begin() as conn:
        write_meter(conn, 1, 2, times)
    compact(engine, settle_us=0, now=T0 + 4 * DAY_US)
    span = TimeRange(T0, None)
    with engine.connect() as conn:
        before, _ = thin_span(conn, 1, span, 40)  # joined and cached
    assert (times[1500], 1e6, 0) not in plain(before)
    with engine.begin() as conn:
        write_points(conn, [Point(1, times[1500], 1e6)])  # the highest point of day two
        compact_day(conn, 1, DAY0 + 1)
    with engine.connect() as conn:
        after, excess = thin_span(conn, 1, span, 40)
        assert excess
        assert (times[1500], 1e6, 0) in plain(after)
        assert plain(after) == plain(thin(read_span(conn, 1, span), 40))


def test_db_compact_rolls_up_chunks_made_without_rollups(engine: Engine) -> None:
    with engine.begin() as conn:
        write_meter(conn, 1, 2, reading_times(2))
    compact(engine, settle_us=0, now=T0 + 3 * DAY_US)
    with engine.begin() as conn:
        conn.execute(rollups.delete().where(rollups.c.tag_id == 1))
    assert roll_up_unrolled(engine) == 2
    assert roll_up_unrolled(engine) == 0
    with engine.connect() as conn:
        c, r = chunks.c, rollups.c
        pairs = conn.execute(
            select(c.stamp, r.stamp).join(rollups, (r.tag_id == c.tag_id) & (r.day == c.day))
        ).all()
        assert len(pairs) == 4
        assert all(a == b for a, b in pairs)


def test_a_pass_writes_its_chunks_in_an_order_that_fills_sqlite_pages(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Meters of a gauge (a day of about half a page) and a register (a small one), compacted
    a day at a time as ``serve`` does: the second day's chunks, sized by the first day's,
    take at least a fifth fewer leaf pages than in tag order."""

    def second_day_pages(name: str) -> int:
        path = tmp_path / name
        shutil.copyfile(sqlite_template, path)
        engine = make_engine(f"sqlite:///{path}")
        times = reading_times(2, jitter=0)
        batch = []
        for meter, ts in itertools.product(range(30), times):
            amps, kwh = meter_values(1, meter, ts / 1e6)
            batch += [Point(2 * meter + 1, ts, amps), Point(2 * meter + 2, ts, kwh)]
        with engine.begin() as conn:
            write_points(conn, batch)
        pages = []
        for day in (1, 2):
            compact(engine, settle_us=0, now=T0 + day * DAY_US)
            with engine.connect() as conn:
                pages.append(conn.exec_driver_sql(LEAF_PAGES).scalar_one())
        engine.dispose()
        return int(pages[1] - pages[0])

    filled = second_day_pages("filled.db")
    monkeypatch.setattr(compactor, "_filling_pages", lambda conn, pending: pending)
    in_turn = second_day_pages("in_turn.db")
    assert filled <= 0.8 * in_turn, (filled, in_turn)


LEAF_PAGES = "SELECT count(*) FROM dbstat WHERE name = 'chunks' AND pagetype = 'leaf'"
