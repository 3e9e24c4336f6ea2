"""Compaction changes no answer: random histories read the same before and after it.

Each example stores the same random history (jittered times, gaps, register drops) under
three pairs of tags, writes the same late and repeated points into each, and compacts the
second and third pair, some days before the late writes and some after; the third pair's
hourly rollups and hour marks are then dropped, so its reads decode every chunk. Every read
the product makes (history in all its forms, daily consumption, neighbours as billing reads
them, flagged drops, channels side by side, latest values) must then answer the same for all
three pairs.
``make test`` tries 8 histories (``METERHUB_PROPERTY_EXAMPLES``); ``make fuzz`` 100.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, delete, func, select, update

from meterhub.storage import Point, TimeRange, aligned_rows, latest, write_points
from meterhub.storage.compactor import compact, compact_day, reclaim
from meterhub.storage.daily import daily_consumption
from meterhub.storage.history import History, HistoryQuery, read_history
from meterhub.storage.series import drops, near
from meterhub.storage.sides import NO_POINT, sides
from meterhub.storage.tables import chunks, hour_marks, points, rollups
from meterhub.times import DAY_US, HOUR_US

DAY0 = 20_454  # 2026-01-01, as a UTC day number
T0 = DAY0 * DAY_US
SPAN = 4 * DAY_US
MINUTE = 60_000_000
ZONES = [ZoneInfo("UTC"), ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")]

_tags = itertools.count(1000, 2)


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[int, float, int]]:
    """(offset µs, register value, quality) in time order: jittered minutes with gaps, a
    register rising with drops (flagged) and occasional repeated values."""
    n = draw(st.integers(1, 400))
    step = draw(st.sampled_from([MINUTE, 15 * MINUTE, 97 * MINUTE]))
    jitter = draw(st.sampled_from([0, 500_000, 20_000_000]))
    ts = draw(st.integers(0, SPAN // 2))
    value = draw(st.floats(0, 1e6))
    rng = random.Random(draw(st.integers(0, 2**32)))
    out = []
    for _ in range(n):
        ts += step * (1 if rng.random() > 0.05 else rng.randint(2, 300)) + rng.randint(0, jitter)
        if ts >= SPAN:
            break
        dropped = rng.random() < 0.03
        value = rng.uniform(0, value) if dropped else value + round(rng.expovariate(1.0), 3)
        out.append((ts, value, 1 if dropped else 0))
    return out


@st.composite
def late_writes(draw: st.DrawFn, history: list[tuple[int, float, int]]) -> list[tuple[int, float]]:
    """Late points (new times in old days) and rewrites of stored times with new values."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    out = []
    for _ in range(draw(st.integers(0, 20))):
        rewrite = history and rng.random() < 0.5
        ts = rng.choice(history)[0] if rewrite else rng.randrange(0, SPAN)
        out.append((ts, rng.uniform(0, 2e6)))
    return out


def queries(seed: int, offsets: list[int], stored: list[float]) -> list[HistoryQuery]:
    """History queries of every form, with bounds on, between and beyond stored points."""
    rng = random.Random(seed)
    marks = [*offsets, 0, SPAN, -DAY_US, 2 * SPAN]
    out = [HistoryQuery(), HistoryQuery(stepwise=True)]
    for _ in range(12):
        a, b = sorted(T0 + rng.choice(marks) + rng.choice([0, 0, 1, -1, 7 * MINUTE]) for _ in "ab")
        values = (*rng.sample(stored, min(2, len(stored))), 1.0)
        out += [
            HistoryQuery(start=a, end=b),
            HistoryQuery(start=a),
            HistoryQuery(end=b, actual=True),
            HistoryQuery(start=a, end=b, max_count=rng.choice([1, 3, 4, 9, 40])),
            HistoryQuery(start=a, end=b, stepwise=True, max_count=rng.choice([5, 100])),
            HistoryQuery(start=a, end=b, step=rng.choice([MINUTE, 3_600_000_000, DAY_US])),
            HistoryQuery(start=a, end=b, step=13 * MINUTE, stepwise=True, max_count=50),
            HistoryQuery(start=a, end=b, values=values),
            HistoryQuery(values=values),
        ]
    return out


def plain(history: History) -> tuple[bool, list[tuple[int, float, int]]]:
    return history.excess, [(p.ts, p.value, p.quality) for p in history.points]


def answers(
    conn: Connection, register: int, other: int, seed: int, history: list[tuple[int, float, int]]
) -> list[object]:
    """Everything the product reads of the two tags, without their ids."""
    offsets = [ts for ts, _, _ in history]
    stored = [value for _, value, _ in history]
    found: list[object] = [
        plain(read_history(conn, register, q)) for q in queries(seed, offsets, stored)
    ]
    for zone in ZONES:
        found.append(daily_consumption(conn, register, date(2025, 12, 30), date(2026, 1, 7), zone))
    instants = [T0 + o + d for o in offsets[::7] for d in (-1, 0, 1)] + [T0 - 1, T0 + 2 * SPAN]
    instants += range(T0, T0 + SPAN + 1, 5 * HOUR_US)  # where hour marks answer
    found.append(
        [
            tuple(None if p is None else p[1:] for p in sides)
            for sides in near(conn, [(register, ts) for ts in instants])
        ]
    )
    many = sides(conn, np.full(len(instants), register), np.array(instants, np.int64))
    found.append(
        [
            tuple(
                None
                if side.ts[n] == NO_POINT
                else (int(side.ts[n]), float(side.value[n]), int(side.quality[n]))
                for side in many
            )
            for n in range(len(instants))
        ]
    )
    found.append(drops(conn, [register], TimeRange()).get(register))
    found.append(drops(conn, [register], TimeRange(T0 + DAY_US, T0 + 3 * DAY_US)).get(register))
    found.append(list(aligned_rows(conn, [register, other], TimeRange(), chunk=37)))
    found.append(list(aligned_rows(conn, [other, register], TimeRange(T0 + DAY_US, None))))
    found.append({tag - register: p[1:] for tag, p in latest(conn, [register, other]).items()})
    return found


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        yield conn


@settings(
    max_examples=int(os.environ.get("METERHUB_PROPERTY_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), history=histories(), seed=st.integers(0, 2**32))
def test_every_answer_is_the_same_after_compaction(
    conn: Connection, data: st.DataObject, history: list[tuple[int, float, int]], seed: int
) -> None:
    late = data.draw(late_writes(history))
    plain_tags, packed_tags, unrolled_tags = (next(_tags), next(_tags), next(_tags))
    everything = (plain_tags, packed_tags, unrolled_tags)
    for register in everything:
        other = register + 1
        batch = [Point(register, T0 + ts, value, quality) for ts, value, quality in history]
        batch += [Point(other, T0 + ts, -value, 0) for ts, value, _ in history[::2]]
        write_points(conn, batch)
    conn.commit()
    early = data.draw(st.sets(st.integers(DAY0, DAY0 + 3)), label="days compacted first")
    for day in sorted(early):
        for tag in (packed_tags, packed_tags + 1, unrolled_tags, unrolled_tags + 1):
            compact_day(conn, tag, day)
    conn.commit()
    for register in everything:
        write_points(conn, [Point(register, T0 + ts, value) for ts, value in late])
        write_points(conn, [Point(register + 1, T0 + ts, value) for ts, value in late[::3]])
    conn.commit()
    for day in range(DAY0, DAY0 + 4):
        if data.draw(st.booleans(), label=f"compact day {day} again"):
            for tag in (packed_tags, packed_tags + 1, unrolled_tags, unrolled_tags + 1):
                compact_day(conn, tag, day)
    unrolled = [unrolled_tags, unrolled_tags + 1]
    conn.execute(delete(rollups).where(rollups.c.tag_id.in_(unrolled)))
    conn.execute(delete(hour_marks).where(hour_marks.c.tag_id.in_(unrolled)))
    fresh = update(chunks).where(chunks.c.tag_id.in_(unrolled)).values(stamp=chunks.c.stamp + 1)
    conn.execute(fresh)  # nothing cached of them applies
    conn.commit()
    expected = answers(conn, plain_tags, plain_tags + 1, seed, history)
    for tags in (packed_tags, unrolled_tags):
        found = answers(conn, tags, tags + 1, seed, history)
        assert [n for n, (a, b) in enumerate(zip(found, expected, strict=True)) if a != b] == []
        assert found == expected
    conn.rollback()


def test_compact_moves_closed_days_only(engine: Engine) -> None:
    now = T0 + 5 * DAY_US + 3_600_000_000
    with engine.begin() as conn:
        write_points(conn, [Point(7, T0 + d * DAY_US + 5, float(d)) for d in range(6)])
    moved = compact(engine, settle_us=2 * DAY_US, now=now)
    assert moved == 3  # days 0, 1 and 2 ended more than two days ago; 3 ended 1 h short of it
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(chunks)).scalar() == 3
        left = conn.execute(select(points.c.ts).order_by(points.c.ts)).scalars().all()
        assert left == [T0 + d * DAY_US + 5 for d in (3, 4, 5)]
        assert read_history(conn, 7, HistoryQuery(start=T0, end=now, actual=True)).points == [
            Point(7, T0 + d * DAY_US + 5, float(d)) for d in range(6)
        ]
    assert compact(engine, settle_us=2 * DAY_US, now=now) == 0


def test_a_tags_newest_point_stays_in_the_row_table(engine: Engine) -> None:
    """Compaction moves every row but a tag's newest, which answers its latest value; a
    later point frees it, and the next pass moves it into its day's chunk."""
    first = [Point(1, T0 + n * 3_600_000_000, float(n)) for n in range(48)]
    with engine.begin() as conn:
        write_points(conn, first)
    compact(engine, settle_us=0, now=T0 + 5 * DAY_US)
    with engine.connect() as conn:
        assert conn.execute(select(points.c.ts)).scalars().all() == [first[-1].ts]
        assert conn.execute(select(chunks.c.day)).scalars().all() == [DAY0, DAY0 + 1]
        assert latest(conn, [1]) == {1: first[-1]}
    later = Point(1, T0 + 3 * DAY_US, 99.0)
    with engine.begin() as conn:
        write_points(conn, [later])
    compact(engine, settle_us=0, now=T0 + 5 * DAY_US)
    with engine.connect() as conn:
        assert conn.execute(select(points.c.ts)).scalars().all() == [later.ts]
        assert latest(conn, [1]) == {1: later}
        assert list(aligned_rows(conn, [1], TimeRange())) == [
            (p.ts, [p.value]) for p in [*first, later]
        ]


def test_reclaiming_shrinks_the_row_table_to_the_newest_rows(engine: Engine) -> None:
    """A whole history compacted leaves each tag's newest row, written last; reclaiming
    the space rewrites the row table around them instead of keeping its empty pages."""
    batch = [Point(tag, T0 + n * 10_000_000, float(n)) for tag in (1, 2) for n in range(25_000)]
    with engine.begin() as conn:
        write_points(conn, batch)
    compact(engine, settle_us=0, now=T0 + 5 * DAY_US)
    reclaim(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            size = "SELECT pg_relation_size('points')"
        else:
            size = "SELECT sum(pgsize) FROM dbstat WHERE name = 'points'"
        assert conn.exec_driver_sql(size).scalar_one() <= 8192
        assert latest(conn, [1, 2]) == {tag: batch[tag * 25_000 - 1] for tag in (1, 2)}


def test_deleting_tags_deletes_their_chunks(engine: Engine) -> None:
    from meterhub.storage import delete_points

    with engine.begin() as conn:
        write_points(conn, [Point(tag, ts, 1.0) for tag in (8, 9) for ts in (T0 + 5, T0 + DAY_US)])
        for tag in (8, 9):
            compact_day(conn, tag, DAY0)
        delete_points(conn, [8])
        assert conn.execute(select(chunks.c.tag_id)).scalars().all() == [9]
        assert latest(conn, [8, 9]) == {9: Point(9, T0 + DAY_US, 1.0)}


@pytest.mark.parametrize("times", ["own", "lent", "regular"])
def test_sides_of_tags_asked_on_different_days_are_near_s(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, times: str
) -> None:
    """Each tag asked on days of its own (read as (tag, day) pairs, not every tag on every
    day), a few tags a statement: the same neighbours as ``near``, inside chunks, at their
    ends and in rows; with times of each tag's own, and with every tag read at the same
    instants: irregular ones (one chunk lends them to the others) and regular ones (each
    chunk keeps its own copy); either way decoded once for many chunks."""
    monkeypatch.setattr("meterhub.storage.sides.SIDES_TAGS", 3)
    tags = range(500, 510)

    def when(tag: int, n: int) -> int:
        jitter = 0 if times == "regular" else random.Random(n).randrange(500_000_000)
        return T0 + n * 15 * MINUTE + jitter + (tag if times == "own" else 0)

    with engine.begin() as conn:
        write_points(
            conn, [Point(tag, when(tag, n), n / 7 + tag) for tag in tags for n in range(960)]
        )
    compact(engine, settle_us=0, now=T0 + 9 * DAY_US)
    with engine.begin() as conn:
        write_points(conn, [Point(503, T0 + 4 * DAY_US + 3 * MINUTE, 99.0)])  # a late row
    asked = [
        (tag, T0 + (tag - 500) * DAY_US + offset)
        for tag in tags
        for offset in (0, 7 * MINUTE, 15 * MINUTE + tag, 20 * 3_600_000_000, DAY_US - 1)
    ]
    asked.reverse()  # answers land where each instant was asked, whatever the order
    with engine.connect() as conn:
        lent = conn.execute(select(chunks.c.tag_id).where(chunks.c.ts_tag.is_not(None))).all()
        assert bool(lent) == (times == "lent")
        found = sides(conn, np.array([t for t, _ in asked]), np.array([ts for _, ts in asked]))
        expected = near(conn, asked)
    for n, pair in enumerate(expected):
        for side, point in zip(found, pair, strict=True):
            at = (int(side.ts[n]), float(side.value[n]), int(side.quality[n]))
            assert at == ((NO_POINT, 0.0, 0) if point is None else point[1:])
