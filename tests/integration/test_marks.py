"""Hour marks stay the hours of their block's rollups through compaction, late points
compacted again, days with too few points to roll up or that do not rise (a gauge's),
deletes and retention; made anew for an upgraded database, they are the same; and billing's
neighbours of the hour boundaries read from them are ``near``'s."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, Engine, delete, select, text

from meterhub.storage import Point, write_points
from meterhub.storage import marks as hour_marks_
from meterhub.storage.compactor import compact, mark_unmarked
from meterhub.storage.removal import delete_points
from meterhub.storage.retention import drop_before
from meterhub.storage.series import near
from meterhub.storage.sides import NO_POINT, sides
from meterhub.storage.tables import hour_marks
from meterhub.times import DAY_US, HOUR_US

DAY0 = 20_484  # 2026-01-31: the days read cross from block 672 (January 2026) into 673
T0 = DAY0 * DAY_US
MINUTE = 60_000_000
QUARTER = 15 * MINUTE
DAYS = 3
DENSE, SPARSE, GONE, GAUGE = 1, 2, 3, 4


def fill(engine: Engine) -> None:
    """A register read every minute with one flagged point, one read every two hours (too few
    to roll up), one more register, and a gauge read every minute, over ``DAYS`` days; all
    compacted."""
    minutes = range(DAYS * 1440)
    with engine.begin() as conn:
        write_points(
            conn,
            [Point(DENSE, T0 + n * MINUTE + 7_000, 100.0 + n, int(n == 1500)) for n in minutes]
            + [Point(SPARSE, T0 + n * 2 * HOUR_US, float(n)) for n in range(DAYS * 12)]
            + [Point(GONE, T0 + n * MINUTE, float(n)) for n in minutes]
            + [Point(GAUGE, T0 + n * MINUTE, float(n * 37 % 11)) for n in minutes],
        )
    compact(engine, settle_us=0, now=T0 + (DAYS + 1) * DAY_US)


def stored(conn: Connection) -> dict[tuple[int, int], hour_marks_.Marks]:
    rows = conn.execute(select(hour_marks).order_by(hour_marks.c.tag_id, hour_marks.c.block))
    return {
        (row.tag_id, row.block): hour_marks_.decode(
            row.block, hour_marks_.Stored(row.int_blob, row.float_blob, row.scale)
        )
        for row in rows
    }


def assert_made_anew_alike(engine: Engine) -> dict[tuple[int, int], hour_marks_.Marks]:
    """The marks kept equal those made from the rollups alone; the marks kept."""
    with engine.connect() as conn, conn.begin() as transaction:
        kept = stored(conn)
        conn.execute(delete(hour_marks))
        for block in {block for _, block in kept}:  # every tag of a block at once
            hour_marks_.make(conn, block, [tag for tag, b in kept if b == block])
        made = stored(conn)
        transaction.rollback()
    assert made.keys() == kept.keys()
    for key, marks in kept.items():
        for column, again in zip(marks, made[key], strict=True):
            assert np.array_equal(column, again), key
    return kept


def test_hour_marks_are_the_hours_of_their_blocks_rollups(engine: Engine) -> None:
    fill(engine)
    kept = assert_made_anew_alike(engine)
    assert sorted(kept) == [(t, b) for t in (DENSE, SPARSE, GONE, GAUGE) for b in (672, 673)]
    dense = kept[DENSE, 672]
    assert len(dense.start) == 24  # DAY0's hours; the newest point, never moved, is a row
    assert dense.first_ts[5] == T0 + 5 * HOUR_US + 7_000
    assert not len(kept[SPARSE, 672].start)  # rolled up empty: none
    assert not len(kept[GAUGE, 672].start) + len(kept[GAUGE, 673].start)  # not a register
    assert int(kept[DENSE, 673].flagged.sum()) == 1

    with engine.begin() as conn:  # late points into a compacted day
        write_points(conn, [Point(DENSE, T0 + 5 * HOUR_US + 10, 399.5), Point(DENSE, T0, 2.0)])
    compact(engine, settle_us=0, now=T0 + (DAYS + 1) * DAY_US)
    kept = assert_made_anew_alike(engine)
    assert kept[DENSE, 672].first_ts[5] == T0 + 5 * HOUR_US + 10
    assert kept[DENSE, 672].first[5] == 399.5
    assert kept[DENSE, 672].first_ts[0] == T0
    assert kept[DENSE, 672].first[0] == 2.0
    with engine.begin() as conn:  # a fall without a flag: the day no longer rises
        write_points(conn, [Point(DENSE, T0 + 5 * HOUR_US + 20, 1.0)])
    compact(engine, settle_us=0, now=T0 + (DAYS + 1) * DAY_US)
    assert not len(assert_made_anew_alike(engine)[DENSE, 672].start)

    with engine.begin() as conn:  # an upgraded database: no marks yet
        conn.execute(delete(hour_marks))
    assert mark_unmarked(engine) == 8
    assert_made_anew_alike(engine)

    with engine.begin() as conn:
        delete_points(conn, [GONE])
        assert {tag for tag, _ in stored(conn)} == {DENSE, SPARSE, GAUGE}
    drop_before(engine, DAY0 + 1)  # the block of the days dropped loses its marks
    with engine.connect() as conn:
        assert sorted(stored(conn)) == [(DENSE, 673), (SPARSE, 673), (GAUGE, 673)]


def test_a_block_is_a_utc_month_alike_in_python_numpy_and_sql(engine: Engine) -> None:
    days = [0, 30, 31, 58, 59, 20_484, 20_485, 20_512, 20_513, 21_243, 21_244, 22_279, 22_280]
    blocks = [hour_marks_.block_of(day) for day in days]
    assert blocks[:5] == [0, 0, 1, 1, 2]
    assert blocks[5:] == [672, 673, 673, 674, 697, 698, 731, 732]  # 31 Jan 2026 ... 1 Jan 2031
    for day, block in zip(days, blocks, strict=True):
        assert hour_marks_.first_day(block) <= day < hour_marks_.first_day(block + 1)
    times = np.array(days, np.int64) * DAY_US + DAY_US - 1
    assert hour_marks_.blocks_of(times).tolist() == blocks
    starts = hour_marks_.starts_of(np.array(blocks, np.int64))
    assert (starts == [hour_marks_.first_day(b) * DAY_US for b in blocks]).all()
    of_day = hour_marks_.BLOCK_OF_DAY[engine.dialect.name].format(day=":day")
    with engine.connect() as conn:
        assert [conn.execute(text(f"SELECT {of_day}"), {"day": d}).scalar() for d in days] == blocks


def test_neighbours_of_hour_boundaries_are_near_s(engine: Engine) -> None:
    """At, and a µs either side of, every hour of the days (the flagged point's hour, the
    sparse days', the gauge's and the edges of the blocks among them), as ``near`` finds
    them."""
    fill(engine)
    asked = [
        (tag, T0 + h * HOUR_US + d)
        for tag in (DENSE, SPARSE, GONE, GAUGE)
        for h in range(-1, DAYS * 24 + 2)
        for d in (-1, 0, 1)
    ]
    assert_sides_are_near(engine, asked)


def test_neighbours_across_the_end_of_a_short_month_are_near_s(engine: Engine) -> None:
    """February's block ends short of a block's most hours and March's first hour has no
    hour before it in its block: instants around them, and after the last marked hour with
    the next point days later, are answered as ``near`` finds them; for values kept as
    integers of a decimal scale and as floats (thirds have no decimal scale). Tags read for
    longer come first, so that the blocks decoded after theirs lie where their hours were."""
    start = 20_512 * DAY_US  # 2026-02-28
    longer = list(
        range(100, 100 + hour_marks_.GROUP // 2)
    )  # a group of blocks: Februaries, Marches
    halves, thirds = 200, 201
    with engine.begin() as conn:
        write_points(
            conn,
            [
                Point(tag, start - DAY_US + n * QUARTER, 1.0 + n * 0.25)
                for tag in longer
                for n in range(5 * 96)
            ],
        )
        for tag, step in ((halves, 0.5), (thirds, 1 / 3)):
            write_points(
                conn,
                [Point(tag, start + n * MINUTE + 7_000, 10.0 + n * step) for n in range(2 * 1440)]
                + [Point(tag, start + 5 * DAY_US + 12 * HOUR_US, 9_000.0)],  # newest: a row
            )
    compact(engine, settle_us=0, now=start + 5 * DAY_US)
    with engine.connect() as conn:
        scales = conn.execute(select(hour_marks.c.tag_id, hour_marks.c.scale)).all()
    assert sorted(set(scales)) == [*((tag, 2) for tag in longer), (halves, 1), (thirds, None)]
    asked = [
        (tag, start + h * HOUR_US + d)
        for tag in (*longer, halves, thirds)
        for h in range(-1, 50)
        for d in (-1, 0, 1)
    ]
    assert_sides_are_near(engine, asked)


def assert_sides_are_near(engine: Engine, asked: list[tuple[int, int]]) -> None:
    with engine.connect() as conn:
        tags, times = (np.array(column) for column in zip(*asked, strict=True))
        found = sides(conn, tags, times)
        expected = near(conn, asked)
    for n, pair in enumerate(expected):
        for side, point in zip(found, pair, strict=True):
            at = (int(side.ts[n]), float(side.value[n]), int(side.quality[n]))
            assert at == ((NO_POINT, 0.0, 0) if point is None else point[1:]), asked[n]
