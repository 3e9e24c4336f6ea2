"""History queries (``read_history``) on a real SQLite and PostgreSQL database.

Expectations come from hand-worked literals and from ``reference``, a naive plain-Python
reading of the documented rules over the same points.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine

from meterhub.errors import InvalidInput
from meterhub.storage import Point, write_points
from meterhub.storage import history as history_module
from meterhub.storage.history import HARD_CAP, History, HistoryQuery, read_history

TAG, OTHER, EMPTY = 1, 2, 3


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as conn:
        yield conn


def store(conn: Connection, series: list[Point]) -> None:
    """``series`` plus points of another tag between and around them, which must never leak."""
    noise = {ts + d for ts in (p.ts for p in series) for d in (-1, 1)}
    write_points(conn, [*series, *(Point(OTHER, ts, 1e9, 9) for ts in noise)])


def check(got: History, expected: History, query: HistoryQuery | None = None) -> None:
    """Equal but for rounding of interpolated values; ``query`` explains a failure."""
    assert got.excess == expected.excess, query
    assert [(p.tag_id, p.ts, p.quality) for p in got.points] == [
        (p.tag_id, p.ts, p.quality) for p in expected.points
    ], query
    assert [p.value for p in got.points] == pytest.approx([p.value for p in expected.points])


def points(*rows: tuple[int, float, int]) -> list[Point]:
    return [Point(TAG, ts, value, quality) for ts, value, quality in rows]


# --- the reference: the rules of meterhub.storage.history, naively ---------------------------


def ref_value(series: list[Point], ts: int, stepwise: bool) -> Point | None:
    before = [p for p in series if p.ts <= ts]
    after = [p for p in series if p.ts >= ts]
    if not before:
        return None
    b = before[-1]
    if stepwise or b.ts == ts:
        return Point(TAG, ts, b.value, b.quality)
    if not after:
        return None
    a = after[0]
    value = b.value + (a.value - b.value) * (ts - b.ts) / (a.ts - b.ts)
    return Point(TAG, ts, value, max(b.quality, a.quality))


def ref_thin(inside: list[Point], keep: int) -> list[Point]:
    buckets = max(1, keep // 4)
    first, last = inside[0].ts, inside[-1].ts
    width = -(-(last - first + 1) // buckets)
    groups: dict[int, list[Point]] = defaultdict(list)
    for p in inside:
        groups[(p.ts - first) // width].append(p)
    picked: set[Point] = set()
    for g in groups.values():
        lowest = min(g, key=lambda p: (p.value, p.ts))
        highest = min(g, key=lambda p: (-p.value, p.ts))
        picked |= {g[0], g[-1], lowest, highest}
    return sorted(picked, key=lambda p: p.ts)[:keep]


def reference(series: list[Point], q: HistoryQuery, cap: int = HARD_CAP) -> History:
    if q.step is not None:
        assert q.start is not None
        assert q.end is not None
        grid = range(q.start, q.end + 1, q.step)
        kept = grid if q.max_count is None else grid[: q.max_count]
        found = [ref_value(series, ts, q.stepwise) for ts in kept]
        return History([p for p in found if p is not None], len(kept) < len(grid))
    matching = [p for p in series if q.values is None or p.value in q.values]
    if q.start is None and q.end is None:
        return History(matching[-1:], False)
    lo = -math.inf if q.start is None else q.start
    hi = math.inf if q.end is None else q.end
    if lo > hi:
        return History([], False)
    inside = [p for p in matching if lo <= p.ts <= hi]
    keep = cap if q.max_count is None else min(q.max_count, cap)
    excess = len(inside) > keep
    if excess:
        inside = ref_thin(inside, keep) if q.max_count is not None else inside[:keep]
    if q.actual or q.values is not None:
        return History(inside, excess)
    stored = {p.ts for p in series}
    at_bounds = [
        ref_value(series, bound, q.stepwise)
        for bound in dict.fromkeys((q.start, q.end))  # start == end is one bound
        if bound is not None and bound not in stored
    ]
    extra = [p for p in at_bounds if p is not None][: keep - len(inside)]
    return History(sorted(inside + extra, key=lambda p: p.ts), excess)


# --- rule 1: latest ---------------------------------------------------------------------------

SERIES = points((100, 10.0, 0), (200, 20.0, 1), (300, 50.0, 0), (400, 40.0, 0))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (HistoryQuery(), points((400, 40.0, 0))),
        (HistoryQuery(actual=True, max_count=1, stepwise=True), points((400, 40.0, 0))),
        (HistoryQuery(values=(10.0, 20.0)), points((200, 20.0, 1))),
        (HistoryQuery(values=(99.0,)), []),
        (HistoryQuery(values=()), []),
    ],
)
def test_latest(conn: Connection, query: HistoryQuery, expected: list[Point]) -> None:
    store(conn, SERIES)
    check(read_history(conn, TAG, query), History(expected, False))
    check(reference(SERIES, query), History(expected, False))


def test_latest_of_tag_without_points_is_empty(conn: Connection) -> None:
    store(conn, SERIES)
    assert read_history(conn, EMPTY, HistoryQuery()) == History([], False)


# --- rule 2: a period, with values at its bounds ----------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # interpolated at both bounds, quality the higher of the neighbours'
        (HistoryQuery(150, 350), [(150, 15.0, 1), (200, 20.0, 1), (300, 50.0, 0), (350, 45.0, 0)]),
        (HistoryQuery(210, 290), [(210, 23.0, 1), (290, 47.0, 1)]),
        (HistoryQuery(250, 250), [(250, 35.0, 1)]),
        # stored points on the bounds: kept once, nothing added
        (HistoryQuery(100, 300), [(100, 10.0, 0), (200, 20.0, 1), (300, 50.0, 0)]),
        (HistoryQuery(200, 200), [(200, 20.0, 1)]),
        # a bound without a neighbour on one side gets nothing
        (HistoryQuery(50, 250), [(100, 10.0, 0), (200, 20.0, 1), (250, 35.0, 1)]),
        (HistoryQuery(350, 450), [(350, 45.0, 0), (400, 40.0, 0)]),
        (HistoryQuery(0, 50), []),
        (HistoryQuery(450, 500), []),
        # an open side
        (HistoryQuery(None, 250), [(100, 10.0, 0), (200, 20.0, 1), (250, 35.0, 1)]),
        (HistoryQuery(250, None), [(250, 35.0, 1), (300, 50.0, 0), (400, 40.0, 0)]),
        (HistoryQuery(300, 200), []),
        (HistoryQuery(350, 150), []),
        (HistoryQuery(350, 150, stepwise=True), []),
        # actual: stored points only
        (HistoryQuery(150, 350, actual=True), [(200, 20.0, 1), (300, 50.0, 0)]),
        (HistoryQuery(210, 290, actual=True), []),
        # stepwise: the last value held, which needs a point before the bound only
        (
            HistoryQuery(150, 350, stepwise=True),
            [(150, 10.0, 0), (200, 20.0, 1), (300, 50.0, 0), (350, 50.0, 0)],
        ),
        (HistoryQuery(210, 290, stepwise=True), [(210, 20.0, 1), (290, 20.0, 1)]),
        (
            HistoryQuery(50, 250, stepwise=True),
            [(100, 10.0, 0), (200, 20.0, 1), (250, 20.0, 1)],
        ),
        (HistoryQuery(350, 450, stepwise=True), [(350, 50.0, 0), (400, 40.0, 0), (450, 40.0, 0)]),
        # values: matching stored points only, never bound values
        (HistoryQuery(150, 450, values=(40.0, 20.0, 7.0)), [(200, 20.0, 1), (400, 40.0, 0)]),
        (HistoryQuery(150, 350, values=(40.0,)), []),
        (HistoryQuery(None, 450, values=(10.0,), stepwise=True), [(100, 10.0, 0)]),
    ],
)
def test_period(
    conn: Connection, query: HistoryQuery, expected: list[tuple[int, float, int]]
) -> None:
    store(conn, SERIES)
    check(read_history(conn, TAG, query), History(points(*expected), False))
    check(reference(SERIES, query), History(points(*expected), False))


# --- rule 3: a grid -------------------------------------------------------------------------

IRREGULAR = points((100, 10.0, 0), (130, 16.0, 1), (200, 30.0, 0), (500, 0.0, 2), (510, 5.0, 0))
LINEAR = [(100, 10.0, 0), (150, 20.0, 1), (200, 30.0, 0), (250, 25.0, 2), (300, 20.0, 2)]
LINEAR += [(350, 15.0, 2), (400, 10.0, 2), (450, 5.0, 2), (500, 0.0, 2)]
STEPWISE = [(100, 10.0, 0), (150, 16.0, 1), *((ts, 30.0, 0) for ts in range(200, 500, 50))]
STEPWISE += [(500, 0.0, 2), (550, 5.0, 0), (600, 5.0, 0)]


@pytest.mark.parametrize(
    ("query", "expected", "excess"),
    [
        (HistoryQuery(50, 600, step=50), LINEAR, False),
        (HistoryQuery(50, 649, step=50), LINEAR, False),
        (HistoryQuery(50, 600, step=50, stepwise=True), STEPWISE, False),
        (HistoryQuery(50, 600, step=50, max_count=12), LINEAR, False),
        (HistoryQuery(50, 600, step=50, max_count=4), LINEAR[:3], True),
        (HistoryQuery(50, 600, step=50, max_count=1), [], True),
        (HistoryQuery(50, 600, step=50, max_count=5, stepwise=True), STEPWISE[:4], True),
        (HistoryQuery(130, 140, step=100), [(130, 16.0, 1)], False),
        (HistoryQuery(560, 900, step=7), [], False),
        (
            HistoryQuery(560, 900, step=7, stepwise=True),
            [(ts, 5.0, 0) for ts in range(560, 901, 7)],
            False,
        ),
        (HistoryQuery(600, 50, step=50), [], False),
    ],
)
def test_grid(
    conn: Connection,
    query: HistoryQuery,
    expected: list[tuple[int, float, int]],
    excess: bool,
) -> None:
    store(conn, IRREGULAR)
    check(read_history(conn, TAG, query), History(points(*expected), excess))
    check(reference(IRREGULAR, query), History(points(*expected), excess))


# --- rule 4: max_count thins the stored points ---------------------------------------------

# 0 and 110 lie outside [5, 105] and give both bounds a value; inside, each half has a
# distinct first, last, lowest and highest point; the lowest (1) and highest (9) values tie
ZIGZAG = points(
    (0, 0.0, 0),
    *((ts, v, 0) for ts, v in zip(range(10, 101, 10), [5, 9, 1, 6, 4, 5, 1, 9, 6, 4], strict=True)),
    (110, 0.0, 0),
)


@pytest.mark.parametrize(
    ("max_count", "expected_ts", "excess"),
    [
        (13, [5, *range(10, 101, 10), 105], False),
        (12, [5, *range(10, 101, 10), 105], False),
        (11, [5, *range(10, 101, 10)], False),
        (10, list(range(10, 101, 10)), False),
        (9, [5, 10, 20, 30, 50, 60, 70, 80, 100], True),
        (8, [10, 20, 30, 50, 60, 70, 80, 100], True),
        (4, [10, 20, 30, 100], True),
        (3, [10, 20, 30], True),
        (1, [10], True),
    ],
)
def test_thinning_buckets_and_bound_values_that_fit(
    conn: Connection, max_count: int, expected_ts: list[int], excess: bool
) -> None:
    store(conn, ZIGZAG)
    query = HistoryQuery(5, 105, max_count=max_count)
    got = read_history(conn, TAG, query)
    assert ([p.ts for p in got.points], got.excess) == (expected_ts, excess)
    check(got, reference(ZIGZAG, query))


def sine(n: int, seed: int) -> list[Point]:
    """``n`` points of a sine wave (6 periods, amplitude 100) at irregular instants."""
    rng = random.Random(seed)
    instants = sorted(rng.sample(range(n * 20), n))
    span = instants[-1]
    return [
        Point(TAG, ts, 100 * math.sin(12 * math.pi * ts / span), rng.choice([0, 0, 1]))
        for ts in instants
    ]


@pytest.mark.parametrize("max_count", [4, 7, 50, 101, 400, 2999])
def test_thinning_keeps_extremes_ends_and_shape(conn: Connection, max_count: int) -> None:
    series = sine(3000, seed=max_count)
    store(conn, series)
    query = HistoryQuery(series[0].ts - 5, series[-1].ts + 5, max_count=max_count)
    got = read_history(conn, TAG, query)

    assert got.excess is True
    assert len(got.points) <= max_count
    assert set(got.points) <= set(series)
    extremes = {min(series, key=lambda p: p.value), max(series, key=lambda p: p.value)}
    assert {series[0], series[-1], *extremes} <= set(got.points)
    assert got == reference(series, query)
    if max_count >= 400:  # the thinned curve follows the wave within 3 % of its amplitude
        kept_ts, kept_values = [p.ts for p in got.points], [p.value for p in got.points]
        worst = max(abs(polyline_at(p.ts, kept_ts, kept_values) - p.value) for p in series)
        assert worst < 3


def polyline_at(ts: int, xs: list[int], ys: list[float]) -> float:
    """Piecewise-linear value at ``ts`` through (xs, ys), xs sorted and spanning ``ts``."""
    i = next(k for k in range(1, len(xs)) if xs[k] >= ts)
    return ys[i - 1] + (ys[i] - ys[i - 1]) * (ts - xs[i - 1]) / (xs[i] - xs[i - 1])


@pytest.mark.parametrize("max_count", [30, 31, 1000])
def test_max_count_not_below_the_count_returns_every_point(
    conn: Connection, max_count: int
) -> None:
    series = sine(30, seed=1)
    store(conn, series)
    query = HistoryQuery(series[0].ts, series[-1].ts, max_count=max_count)
    assert read_history(conn, TAG, query) == History(series, False)


def test_values_filter_applies_before_thinning(conn: Connection) -> None:
    series = [Point(TAG, ts, float(ts % 7), 0) for ts in range(1, 400)]
    store(conn, series)
    query = HistoryQuery(10, 300, max_count=20, values=(1.0, 3.0, 6.0))
    got = read_history(conn, TAG, query)
    assert got.excess is True
    assert {p.value for p in got.points} == {1.0, 3.0, 6.0}
    assert got == reference(series, query)


# --- rule 5: the hard cap ---------------------------------------------------------------------


@pytest.fixture
def cap_10(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(history_module, "HARD_CAP", 10)
    return 10


@pytest.mark.parametrize(
    ("query", "expected_ts", "excess"),
    [
        (HistoryQuery(5, 1000), list(range(10, 110, 10)), True),
        (HistoryQuery(5, 1000, actual=True), list(range(10, 110, 10)), True),
        (HistoryQuery(None, 1000), list(range(10, 110, 10)), True),
        (HistoryQuery(95, 185), [95, *range(100, 190, 10)], False),
        (HistoryQuery(95, 195), list(range(100, 200, 10)), False),
        (HistoryQuery(95, 205), list(range(100, 200, 10)), True),
        (HistoryQuery(5, 1000, max_count=20), [10, 140, 150, 270, 280], True),
        (HistoryQuery(5, 95, step=10), list(range(15, 96, 10)), False),
    ],
)
def test_hard_cap(
    conn: Connection, cap_10: int, query: HistoryQuery, expected_ts: list[int], excess: bool
) -> None:
    series = points(*((ts, float(ts), 0) for ts in range(10, 260, 10)))  # 25 points
    series += points((270, -1.0, 0), (280, 1000.0, 0))
    store(conn, series)
    got = read_history(conn, TAG, query)
    assert ([p.ts for p in got.points], got.excess) == (expected_ts, excess)
    check(got, reference(series, query, cap=cap_10))


def test_grid_of_the_hard_cap_is_allowed_and_one_more_refused(
    conn: Connection, cap_10: int
) -> None:
    store(conn, points((0, 0.0, 0), (100, 100.0, 0)))
    assert len(read_history(conn, TAG, HistoryQuery(0, 90, step=10)).points) == cap_10
    with pytest.raises(InvalidInput) as caught:
        read_history(conn, TAG, HistoryQuery(0, 100, step=10))
    assert set(caught.value.errors) == {"timeStep"}


# --- rule 6: refused queries ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        (HistoryQuery(0, 100, step=10, values=(1.0,)), {"value"}),
        (HistoryQuery(0, 100, step=0), {"timeStep"}),
        (HistoryQuery(0, 100, step=-10), {"timeStep"}),
        (HistoryQuery(None, 100, step=10), {"timeStep"}),
        (HistoryQuery(0, None, step=10), {"timeStep"}),
        (HistoryQuery(step=10), {"timeStep"}),
        (HistoryQuery(0, HARD_CAP, step=1), {"timeStep"}),
        (HistoryQuery(0, 100, max_count=0), {"maxCount"}),
        (HistoryQuery(max_count=-1), {"maxCount"}),
        (HistoryQuery(0, 100, step=0, values=(), max_count=0), {"value", "timeStep", "maxCount"}),
    ],
)
def test_invalid_query_names_the_field(
    conn: Connection, query: HistoryQuery, fields: set[str]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        read_history(conn, TAG, query)
    assert set(caught.value.errors) == fields


# --- everything at once: random queries against the reference --------------------------------


def random_series(rng: random.Random, n: int) -> list[Point]:
    """Irregular instants with gaps, few distinct values (ties, filter hits), mixed quality."""
    ts, series = 0, []
    for _ in range(n):
        ts += rng.choice([1, 2, 3, 7, 10, 10, 50, 900])
        series.append(Point(TAG, ts, float(rng.randint(-5, 5)), rng.choice([0, 0, 0, 1, 2])))
    return series


def random_query(rng: random.Random, series: list[Point]) -> HistoryQuery:
    def instant() -> int:
        if rng.random() < 0.3:
            return rng.choice(series).ts
        return rng.randint(series[0].ts - 100, series[-1].ts + 100)

    start, end = sorted((instant(), instant()))
    max_count = rng.choice([None, None, rng.randint(1, 40), rng.randint(1, 400)])
    stepwise = rng.random() < 0.5
    if rng.random() < 0.3:
        step = rng.randint(1, max(1, (end - start) // 50))
        return HistoryQuery(start, end, step=step, max_count=max_count, stepwise=stepwise)
    sides = [(start, end), (start, end), (start, end), (None, end), (start, None), (None, None)]
    return HistoryQuery(
        *rng.choice(sides),
        actual=rng.random() < 0.2,
        max_count=max_count,
        values=rng.choice([None, None, tuple(float(v) for v in rng.sample(range(-6, 6), 3))]),
        stepwise=stepwise,
    )


def test_random_queries_match_the_reference(conn: Connection) -> None:
    rng = random.Random(2024)
    series = random_series(rng, 1500)
    store(conn, series)
    for _ in range(300):
        query = random_query(rng, series)
        check(read_history(conn, TAG, query), reference(series, query), query)
