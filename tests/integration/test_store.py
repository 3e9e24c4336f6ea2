"""The time-series store and the device registry on a real SQLite and PostgreSQL database."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from alembic import command
from psycopg.errors import UniqueViolation
from sqlalchemy import Connection, Engine, select, text

from meterhub.errors import InvalidInput, NotFound
from meterhub.migrations import alembic_config, upgrade
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import (
    channel_tags,
    create_device,
    delete_device,
    get_device,
    set_enabled,
)
from meterhub.registry.sources import create_source
from meterhub.registry.tables import tags
from meterhub.registry.tags import _MANY_KEYS, NewTag
from meterhub.storage import (
    Estimate,
    Method,
    Point,
    Quality,
    TimeRange,
    aligned_rows,
    interpolate,
    latest,
    points_between,
    value_at,
    write_points,
)
from meterhub.storage.points import POINT_COLUMNS, PointColumns, latest_by_keys, write_columns
from meterhub.storage.tables import points

HOST = "10.0.0.1"


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as conn:
        yield conn


def stored(conn: Connection) -> list[Point]:
    rows = conn.execute(select(*POINT_COLUMNS).order_by(points.c.tag_id, points.c.ts))
    return [Point(*row) for row in rows]


def shuffled(batch: list[Point]) -> list[Point]:
    """The same points in a fixed, non-chronological order."""
    return random.Random(1).sample(batch, len(batch))


# --- write_points -------------------------------------------------------------------------


def test_write_same_point_twice_keeps_newest_value_and_quality(engine: Engine) -> None:
    with engine.begin() as conn:
        assert write_points(conn, [Point(1, 100, 1.0), Point(1, 200, 2.0)]) == 2
    with engine.begin() as conn:
        assert write_points(conn, [Point(1, 100, 5.0, Quality.REGISTER_DECREASED)]) == 1
    with engine.connect() as conn:
        assert stored(conn) == [Point(1, 100, 5.0, Quality.REGISTER_DECREASED), Point(1, 200, 2.0)]


def test_duplicate_within_one_batch_keeps_the_later_one(conn: Connection) -> None:
    write_points(conn, [Point(1, 100, 1.0), Point(1, 100, 2.0, Quality.REGISTER_DECREASED)])
    assert stored(conn) == [Point(1, 100, 2.0, Quality.REGISTER_DECREASED)]


def test_retried_batch_does_not_double_count(engine: Engine) -> None:
    batch = [Point(tag, ts, float(tag * ts)) for tag in (1, 2) for ts in range(1, 6)]
    for _ in range(2):
        with engine.begin() as conn:
            assert write_points(conn, batch) == 10
    with engine.connect() as conn:
        assert stored(conn) == batch


def test_batch_mixing_new_and_rewritten_points_in_one_transaction(conn: Connection) -> None:
    """PostgreSQL copies a batch straight in, and upserts it when it rewrites a stored point:
    the transaction stays usable and later batches in it are written too."""
    write_points(conn, [Point(1, 100, 1.0), Point(2, 100, 1.0)])
    assert write_points(conn, [Point(1, 100, 7.0), Point(1, 300, 3.0), Point(2, 50, 0.5)]) == 3
    assert write_points(conn, [Point(2, 400, 4.0)]) == 1
    assert stored(conn) == [
        Point(1, 100, 7.0),
        Point(1, 300, 3.0),
        Point(2, 50, 0.5),
        Point(2, 100, 1.0),
        Point(2, 400, 4.0),
    ]
    assert latest(conn, [1, 2]) == {1: Point(1, 300, 3.0), 2: Point(2, 400, 4.0)}


def test_large_shuffled_batch_keeps_the_last_of_each_repeat(conn: Connection) -> None:
    """More rows than one SQLite statement holds (and a remainder of odd size), in no
    order, each (tag, ts) twice: the later of each is stored, and each tag's latest."""
    first = [Point(tag, ts, float(ts)) for tag in (1, 2, 3) for ts in range(701)]
    second = [Point(tag, ts, ts + 0.5, Quality.REGISTER_DECREASED) for tag, ts, _, _ in first]
    assert write_points(conn, shuffled(first) + shuffled(second)) == len(first)
    assert stored(conn) == second
    assert latest(conn, [1, 2, 3]) == {tag: second[701 * tag - 1] for tag in (1, 2, 3)}


def test_an_older_point_leaves_the_latest_alone(engine: Engine) -> None:
    with engine.begin() as conn:
        write_points(conn, [Point(1, 200, 2.0), Point(2, 50, 5.0)])
    with engine.begin() as conn:
        write_points(conn, [Point(1, 100, 1.0), Point(2, 60, 6.0)])
    with engine.connect() as conn:
        assert latest(conn, [1, 2]) == {1: Point(1, 200, 2.0), 2: Point(2, 60, 6.0)}


def test_copy_without_savepoint_refuses_a_rewrite_then_upserts(engine: Engine) -> None:
    """``rewrite=False`` (PostgreSQL: a plain COPY) fails the transaction on a stored point;
    written again with ``rewrite=True`` it upserts. SQLite upserts either way."""
    with engine.begin() as conn:
        write_points(conn, [Point(1, 100, 1.0)])
    batch = PointColumns.of([Point(1, 100, 7.0), Point(1, 200, 8.0)])
    with engine.connect() as conn:
        conn.begin()
        if conn.dialect.name == "postgresql":
            with pytest.raises(UniqueViolation):
                write_columns(conn, batch, rewrite=False)
            conn.rollback()
            conn.begin()
            assert write_columns(conn, batch, rewrite=True) == 2
        else:
            assert write_columns(conn, batch, rewrite=False) == 2
        conn.commit()
    with engine.connect() as conn:
        assert stored(conn) == [Point(1, 100, 7.0), Point(1, 200, 8.0)]
        assert latest(conn, [1]) == {1: Point(1, 200, 8.0)}


def test_empty_batch_writes_nothing(conn: Connection) -> None:
    assert write_points(conn, []) == 0
    assert stored(conn) == []


# --- latest -------------------------------------------------------------------------------


def test_latest_of_many_tags_picks_max_ts_and_omits_tags_without_points(
    conn: Connection,
) -> None:
    batch = [Point(tag, tag * 1_000 + k, tag + k / 10) for tag in range(1, 301) for k in range(5)]
    write_points(conn, shuffled(batch))
    write_points(conn, [Point(999, 1, 1.0)])  # not asked for

    got = latest(conn, [*range(1, 301), *range(400, 410)])

    assert got == {tag: Point(tag, tag * 1_000 + 4, tag + 0.4) for tag in range(1, 301)}


def test_latest_keeps_quality_and_of_no_tags_is_empty(conn: Connection) -> None:
    write_points(conn, [Point(7, 1, 3.0), Point(7, 2, 2.0, Quality.REGISTER_DECREASED)])
    assert latest(conn, [7]) == {7: Point(7, 2, 2.0, Quality.REGISTER_DECREASED)}
    assert latest(conn, []) == {}


# --- points_between -----------------------------------------------------------------------

SERIES = [Point(1, ts, ts / 10) for ts in (10, 20, 30, 40, 50)]


@pytest.mark.parametrize(
    ("span", "limit", "expected_ts"),
    [
        (TimeRange(), None, [10, 20, 30, 40, 50]),
        (TimeRange(20, None), None, [20, 30, 40, 50]),
        (TimeRange(None, 30), None, [10, 20, 30]),
        (TimeRange(20, 40), None, [20, 30, 40]),
        (TimeRange(21, 39), None, [30]),
        (TimeRange(30, 30), None, [30]),
        (TimeRange(41, 49), None, []),
        (TimeRange(60, None), None, []),
        (TimeRange(20, None), 2, [20, 30]),
        (TimeRange(), 10, [10, 20, 30, 40, 50]),
        (TimeRange(), 0, []),
    ],
)
def test_points_between(
    conn: Connection, span: TimeRange, limit: int | None, expected_ts: list[int]
) -> None:
    write_points(conn, [*reversed(SERIES), Point(2, 20, 9.0), Point(2, 35, 9.0)])
    got = points_between(conn, 1, span, limit=limit)
    assert got == [p for p in SERIES if p.ts in expected_ts]


# --- value_at / interpolate ---------------------------------------------------------------

A, B, C = Point(1, 100, 10.0), Point(1, 200, 20.0), Point(1, 300, 50.0)


@pytest.mark.parametrize(
    ("ts", "value", "method"),
    [
        (100, 10.0, Method.EXACT),
        (200, 20.0, Method.EXACT),
        (300, 50.0, Method.EXACT),
        (150, 15.0, Method.INTERPOLATED),
        (125, 12.5, Method.INTERPOLATED),
        (225, 27.5, Method.INTERPOLATED),
        (99, 10.0, Method.EXTRAPOLATED),
        (-5_000, 10.0, Method.EXTRAPOLATED),
        (301, 50.0, Method.EXTRAPOLATED),
    ],
)
def test_value_at(conn: Connection, ts: int, value: float, method: Method) -> None:
    write_points(conn, [C, A, B, Point(2, 150, 99.0)])
    got = value_at(conn, 1, ts)
    assert got is not None
    assert (got.ts, got.method) == (ts, method)
    assert got.value == pytest.approx(value)


def test_value_at_without_points_is_none(conn: Connection) -> None:
    write_points(conn, [Point(2, 150, 99.0)])
    assert value_at(conn, 1, 150) is None


@pytest.mark.parametrize(
    ("before", "after", "ts", "expected"),
    [
        (None, None, 5, None),
        (A, None, 400, Estimate(400, 10.0, Method.EXTRAPOLATED)),
        (None, A, 0, Estimate(0, 10.0, Method.EXTRAPOLATED)),
        (A, A, 100, Estimate(100, 10.0, Method.EXACT)),
        (A, B, 100, Estimate(100, 10.0, Method.EXACT)),
        (A, B, 200, Estimate(200, 20.0, Method.EXACT)),
        (A, B, 150, Estimate(150, 15.0, Method.INTERPOLATED)),
        (A, B, 125, Estimate(125, 12.5, Method.INTERPOLATED)),
        (B, A._replace(ts=300), 275, Estimate(275, 12.5, Method.INTERPOLATED)),
    ],
)
def test_interpolate_rule(
    before: Point | None, after: Point | None, ts: int, expected: Estimate | None
) -> None:
    assert interpolate(before, after, ts) == expected


# --- aligned_rows -------------------------------------------------------------------------


def test_aligned_rows_follow_the_lead_tag(conn: Connection) -> None:
    write_points(
        conn,
        [
            *(Point(1, ts, ts * 1.0) for ts in (30, 10, 20)),
            *(Point(2, ts, ts * 2.0) for ts in (10, 25, 30)),
            Point(3, 20, -1.0),
        ],
    )
    assert list(aligned_rows(conn, [1, 2, 3], TimeRange())) == [
        (10, [10.0, 20.0, None]),
        (20, [20.0, None, -1.0]),
        (30, [30.0, 60.0, None]),
    ]
    assert list(aligned_rows(conn, [2, 1], TimeRange())) == [
        (10, [20.0, 10.0]),
        (25, [50.0, None]),
        (30, [60.0, 30.0]),
    ]


@pytest.mark.parametrize(
    ("span", "expected_ts"),
    [
        (TimeRange(), list(range(1, 11))),
        (TimeRange(3, 7), [3, 4, 5, 6, 7]),
        (TimeRange(None, 4), [1, 2, 3, 4]),
        (TimeRange(8, None), [8, 9, 10]),
        (TimeRange(4, 6), [4, 5, 6]),
        (TimeRange(11, None), []),
    ],
)
@pytest.mark.parametrize("chunk", [1, 3, 5, 10, 11])
def test_aligned_rows_in_chunks(
    conn: Connection, chunk: int, span: TimeRange, expected_ts: list[int]
) -> None:
    write_points(
        conn, shuffled([Point(tag, ts, tag * ts) for tag in (1, 2) for ts in range(1, 11)])
    )
    got = list(aligned_rows(conn, [1, 2], span, chunk=chunk))
    assert got == [(ts, [ts * 1.0, ts * 2.0]) for ts in expected_ts]


# --- registry -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device_type", "channels"),
    [(DeviceType.ELECTRICITY, {"A": "44.A", "kW": "44.kW"}), (DeviceType.WATER, {"V": "44.V"})],
)
def test_create_device_creates_its_channel_tags(
    conn: Connection, device_type: DeviceType, channels: dict[str, str]
) -> None:
    device = create_device(conn, "44", device_type, host=HOST, port=9001)
    assert (device.device_id, device.type, device.host, device.port) == (
        "44",
        device_type,
        HOST,
        9001,
    )
    assert device.enabled is True
    assert get_device(conn, "44") == device
    ids = channel_tags(conn, device.pk)
    keys = {row.id: row.key for row in conn.execute(select(tags.c.id, tags.c.key))}
    assert {name: keys[tag_id] for name, tag_id in ids.items()} == channels


@pytest.mark.parametrize(
    ("device_id", "host", "port", "bad_fields"),
    [
        ("44", HOST, 9002, {"device_id"}),
        ("45", HOST, 9001, {"port"}),
        ("44", HOST, 9001, {"device_id", "port"}),
        ("45", HOST, 8999, {"port"}),
        ("45", HOST, 65001, {"port"}),
        ("45", HOST, 0, {"port"}),
        ("44", HOST, -1, {"device_id", "port"}),
    ],
)
def test_create_device_refuses_taken_id_address_or_bad_port(
    conn: Connection, device_id: str, host: str, port: int, bad_fields: set[str]
) -> None:
    create_device(conn, "44", DeviceType.ELECTRICITY, host=HOST, port=9001)
    with pytest.raises(InvalidInput) as caught:
        create_device(conn, device_id, DeviceType.ELECTRICITY, host=host, port=port)
    assert set(caught.value.errors) == bad_fields
    assert get_device(conn, "44").port == 9001
    assert {t for (t,) in conn.execute(select(tags.c.key))} == {"44.A", "44.kW"}


@pytest.mark.parametrize(
    ("device_id", "host", "port"),
    [("45", "10.0.0.2", 9001), ("45", HOST, 9000), ("45", HOST, 65000), ("45", None, None)],
)
def test_create_device_accepts_free_address_and_port_bounds(
    conn: Connection, device_id: str, host: str | None, port: int | None
) -> None:
    create_device(conn, "44", DeviceType.ELECTRICITY, host=HOST, port=9001)
    assert create_device(conn, device_id, DeviceType.WATER, host=host, port=port).port == port


def test_deleted_device_keeps_its_history_and_gets_it_back(conn: Connection) -> None:
    first = create_device(conn, "44", DeviceType.ELECTRICITY, host=HOST, port=9001)
    ids = channel_tags(conn, first.pk)
    write_points(conn, [Point(ids["kW"], 10, 1.5), Point(ids["A"], 10, 3.0)])

    delete_device(conn, "44")
    with pytest.raises(NotFound):
        get_device(conn, "44")
    detached = conn.execute(select(tags.c.id, tags.c.device_pk).order_by(tags.c.id)).all()
    assert [tuple(r) for r in detached] == [(tag_id, None) for tag_id in sorted(ids.values())]

    # the address is free again, and the same id comes back with the same tags and history
    again = create_device(conn, "44", DeviceType.ELECTRICITY, host=HOST, port=9001)
    assert channel_tags(conn, again.pk) == ids
    assert points_between(conn, ids["kW"], TimeRange()) == [Point(ids["kW"], 10, 1.5)]


@pytest.mark.parametrize("action", [get_device, delete_device])
def test_unknown_device_is_not_found(
    conn: Connection, action: Callable[[Connection, str], object]
) -> None:
    create_device(conn, "44", DeviceType.ELECTRICITY, host=HOST, port=9001)
    with pytest.raises(NotFound, match="nope"):
        action(conn, "nope")


def test_set_enabled(conn: Connection) -> None:
    create_device(conn, "44", DeviceType.ELECTRICITY, host=HOST, port=9001)
    assert set_enabled(conn, "44", False).enabled is False
    assert get_device(conn, "44").enabled is False
    with pytest.raises(NotFound):
        set_enabled(conn, "nope", True)


def test_flagged_drops_of_more_tags_than_a_statement_may_bind(conn: Connection) -> None:
    """A billing run in one piece asks for the drops of every device's register: 40,000
    tags (80,000 ids) are more than PostgreSQL's 65,535 bound parameters of a statement."""
    from meterhub.storage import Point, TimeRange, write_points
    from meterhub.storage.series import drops

    write_points(conn, [Point(39_999, 1_000, 5.0), Point(39_999, 2_000, 1.0, quality=1)])
    found = drops(conn, list(range(1, 40_001)), TimeRange(None, 3_000))
    assert found == {39_999: [(2_000, 5.0, 1.0)]}


def test_the_upgrade_puts_latest_values_held_nowhere_else_back_in_the_rows(
    engine: Engine, database_url: str
) -> None:
    """Before migration 0016 compaction could move a tag's newest row into a chunk, leaving
    it in ``latest_points`` alone: the upgrade writes it back as a row (its chunk keeps it
    too: a row wins over its chunk at the same time, with the same value)."""
    command.downgrade(alembic_config(database_url), "0015")
    with engine.begin() as conn:
        write_points(conn, [Point(1, 100, 1.0), Point(2, 300, 3.0)])
        conn.execute(text("INSERT INTO latest_points VALUES (1, 200, 2.0, 0), (2, 300, 3.0, 0)"))
    upgrade(database_url)
    with engine.connect() as conn:
        assert stored(conn) == [Point(1, 100, 1.0), Point(1, 200, 2.0), Point(2, 300, 3.0)]
        assert latest(conn, [1, 2]) == {1: Point(1, 200, 2.0), 2: Point(2, 300, 3.0)}


def test_latest_values_of_many_tags_by_their_keys(engine: Engine) -> None:
    """From ``_MANY_KEYS`` keys on, PostgreSQL joins them its own way: same rows."""
    count = _MANY_KEYS + 10
    with engine.begin() as conn:
        create_source(
            conn, "fleet", "fleet", tag_specs=[NewTag(f"t{n}", None, None) for n in range(count)]
        )
        ids: dict[str, int] = dict(conn.execute(select(tags.c.key, tags.c.id)).all())
        write_points(conn, [Point(ids[f"t{n}"], 1_000 + n, float(n)) for n in range(0, count, 2)])
    with engine.connect() as conn:
        for keys in ([f"t{n}" for n in range(count)], ["t0", "t1", "nope"]):
            found = {row[0]: row[1:5] for row in latest_by_keys(conn, keys)}
            assert set(found) == set(keys) - {"nope"}
            for key, row in found.items():
                n = int(key[1:])
                expected = (1_000 + n, float(n), 0) if n % 2 == 0 else (None, None, None)
                assert row == (ids[key], *expected)
