"""The poll log and collector cycle counts on a real SQLite and PostgreSQL database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, func, select, text

from meterhub.collector.cycles import CycleMode, CycleStats, latest_cycles, save_cycle
from meterhub.collector.health import Health, failed, succeeded
from meterhub.collector.health_store import meter_status
from meterhub.collector.poll_log import (
    PRUNE_CHUNK,
    HealthBucket,
    PollEntry,
    PollRecord,
    poll_history,
    poll_hours,
    poll_log,
    prune_poll_log,
    recent_failures,
    save_poll_log,
)
from meterhub.collector.writer import BatchWriter
from meterhub.db import metadata
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device, delete_device
from meterhub.storage import Point, points_between
from meterhub.storage.points import TimeRange
from meterhub.times import DAY_US, now_us


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as conn:
        yield conn


def meter(conn: Connection, device_id: str) -> int:
    return create_device(conn, device_id, DeviceType.ELECTRICITY, host="127.0.0.1").pk


def logged(conn: Connection) -> list[tuple[int, int, bool, str | None]]:
    """(device pk, ts, ok, error) of every logged poll."""
    query = select(poll_log.c.device_pk, poll_log.c.ts, poll_log.c.ok, poll_log.c.error)
    return [tuple(row) for row in conn.execute(query.order_by(poll_log.c.device_pk, "ts"))]


def ok(pk: int, ts: int, ms: float = 1.0, warning: str | None = None) -> PollEntry:
    return PollEntry(pk, ts, ms, True, warning)


def bad(pk: int, ts: int, ms: float = 1.0, error: str = "timed out") -> PollEntry:
    return PollEntry(pk, ts, ms, False, error)


# --- save_poll_log ------------------------------------------------------------------------


def test_save_skips_deleted_devices_and_ignores_repeats(engine: Engine) -> None:
    with engine.begin() as conn:
        kept, gone = meter(conn, "1"), meter(conn, "2")
        delete_device(conn, "2")
        save_poll_log(conn, [ok(kept, 10), bad(gone, 10), bad(kept, 20)])
    with engine.begin() as conn:  # a retried batch, and a repeat inside one batch
        save_poll_log(conn, [ok(kept, 10, ms=9.0), bad(kept, 20), ok(kept, 30), ok(kept, 30)])
        save_poll_log(conn, [bad(gone, 40)])
    with engine.connect() as conn:
        assert logged(conn) == [
            (kept, 10, True, None),
            (kept, 20, False, "timed out"),
            (kept, 30, True, None),
        ]
        durations = conn.execute(select(poll_log.c.duration_ms).where(poll_log.c.ts == 10))
        assert durations.scalars().all() == [1.0]  # the first write of a (device, ts) stays


def test_deleting_a_device_drops_its_poll_log(conn: Connection) -> None:
    one, two = meter(conn, "1"), meter(conn, "2")
    save_poll_log(conn, [ok(one, 1), ok(two, 1), bad(two, 2)])
    delete_device(conn, "2")
    assert logged(conn) == [(one, 1, True, None)]


# --- prune_poll_log -----------------------------------------------------------------------


def test_prune_deletes_only_older_rows_of_the_given_devices(conn: Connection) -> None:
    a, b, c = meter(conn, "1"), meter(conn, "2"), meter(conn, "3")
    save_poll_log(conn, [ok(pk, ts) for pk in (a, b, c) for ts in (100, 199, 200, 300)])

    assert prune_poll_log(conn, {a, b}, before_us=200) == 4

    remaining = {(pk, ts) for pk, ts, *_ in logged(conn)}
    assert remaining == {(a, 200), (a, 300), (b, 200), (b, 300)} | {
        (c, ts) for ts in (100, 199, 200, 300)
    }
    assert prune_poll_log(conn, {a, b}, before_us=200) == 0
    assert prune_poll_log(conn, [], before_us=10**18) == 0


def test_prune_covers_more_devices_than_one_statement_takes(conn: Connection) -> None:
    first, last = meter(conn, "1"), meter(conn, "2")
    save_poll_log(conn, [ok(first, 1), ok(last, 1), ok(last, 5)])
    many = [first, *range(last + 1, last + 2 * PRUNE_CHUNK), last]  # unknown pks in between

    assert prune_poll_log(conn, many, before_us=5) == 2

    assert logged(conn) == [(last, 5, True, None)]


def test_prune_folds_old_polls_into_hours_and_history_is_unchanged(conn: Connection) -> None:
    pk, other = meter(conn, "1"), meter(conn, "2")
    start = 1_790_000_000_000_000 - 1_790_000_000_000_000 % 3_600_000_000  # an hour's start
    minute = 60_000_000
    polls = [
        (bad if k % 7 == 0 else ok)(pk, start + k * minute + 17, float(k % 13) + 0.25)
        for k in range(6 * 60)
    ]
    save_poll_log(conn, [*polls, ok(other, start + 5, 99.0)])
    day = (start, start + 6 * 60 * minute)
    before = {n: poll_history(conn, pk, *day, buckets=n) for n in (1, 3, 6)}

    cut = start + 4 * 60 * minute + 30 * minute  # inside an hour: that hour is split
    assert prune_poll_log(conn, {pk}, before_us=cut) == sum(1 for p in polls if p.ts < cut)
    assert prune_poll_log(conn, {pk}, before_us=cut) == 0  # nothing folded twice

    for n, buckets in before.items():
        after = poll_history(conn, pk, *day, buckets=n)
        assert [(b.start_us, b.polls, b.failures, b.max_ms) for b in after] == [
            (b.start_us, b.polls, b.failures, b.max_ms) for b in buckets
        ]
        assert [b.mean_ms for b in after] == pytest.approx([b.mean_ms for b in buckets], 1e-12)
    folded = conn.execute(select(func.sum(poll_hours.c.polls))).scalar_one()
    assert folded == sum(1 for p in polls if p.ts < cut)
    assert poll_history(conn, other, *day, buckets=1)[0].polls == 1  # another meter kept apart


# --- poll_history -------------------------------------------------------------------------


def test_history_buckets_by_equal_width_and_leaves_out_empty_ones(conn: Connection) -> None:
    pk, other = meter(conn, "1"), meter(conn, "2")
    save_poll_log(
        conn,
        [
            ok(pk, 999, 50.0),  # before the span
            ok(pk, 1_000, 10.0),  # bucket 0: [1000, 1334)
            bad(pk, 1_333, 30.0),
            ok(pk, 1_668, 5.0),  # bucket 2: [1668, 2002), cut at 2000; bucket 1 is empty
            bad(pk, 1_999, 7.0),
            ok(pk, 2_000, 90.0),  # the end is excluded
            bad(other, 1_500, 1.0),  # another meter
        ],
    )

    assert poll_history(conn, pk, 1_000, 2_000, buckets=3) == [
        HealthBucket(start_us=1_000, polls=2, failures=1, mean_ms=20.0, max_ms=30.0),
        HealthBucket(start_us=1_668, polls=2, failures=1, mean_ms=6.0, max_ms=7.0),
    ]


def test_history_bucket_bounds_when_the_span_divides_evenly(conn: Connection) -> None:
    pk = meter(conn, "1")
    polls = {0: 1.0, 24: 3.0, 25: 5.0, 49: 7.0, 75: 2.0, 99: 6.0, 100: 100.0}
    save_poll_log(conn, [ok(pk, ts, ms) for ts, ms in polls.items()])

    assert poll_history(conn, pk, 0, 100, buckets=4) == [
        HealthBucket(0, 2, 0, 2.0, 3.0),
        HealthBucket(25, 2, 0, 6.0, 7.0),
        HealthBucket(75, 2, 0, 4.0, 6.0),
    ]
    assert poll_history(conn, pk, 0, 100, buckets=1) == [HealthBucket(0, 6, 0, 4.0, 7.0)]
    assert poll_history(conn, pk, 200, 300, buckets=10) == []


def test_history_with_real_timestamps_and_many_buckets(conn: Connection) -> None:
    pk = meter(conn, "1")
    start = 1_790_000_000_000_000
    save_poll_log(conn, [bad(pk, start + k * 60_000_000, 3000.0) for k in range(60)])

    hours = poll_history(conn, pk, start, start + 3_600_000_000, buckets=6)

    assert [b.start_us - start for b in hours] == [k * 600_000_000 for k in range(6)]
    assert {(b.polls, b.failures, b.mean_ms, b.max_ms) for b in hours} == {(10, 10, 3000.0, 3000.0)}


@pytest.mark.parametrize(("start", "end", "buckets"), [(0, 100, 0), (100, 100, 5), (100, 0, 5)])
def test_history_refuses_empty_spans(conn: Connection, start: int, end: int, buckets: int) -> None:
    with pytest.raises(ValueError, match="bucket"):
        poll_history(conn, 1, start, end, buckets)


# --- recent_failures ----------------------------------------------------------------------


def test_recent_failures_are_newest_first_without_good_polls(conn: Connection) -> None:
    pk, other = meter(conn, "1"), meter(conn, "2")
    save_poll_log(
        conn,
        [
            bad(pk, 1, 500.0, "refused"),
            ok(pk, 2, warning="register kW went backwards"),
            bad(pk, 3, 501.0, "timed out"),
            bad(pk, 4, 502.0, "not JSON"),
            bad(other, 5),
        ],
    )

    assert recent_failures(conn, pk) == [
        PollRecord(4, 502.0, "not JSON"),
        PollRecord(3, 501.0, "timed out"),
        PollRecord(1, 500.0, "refused"),
    ]
    assert recent_failures(conn, pk, limit=1) == [PollRecord(4, 502.0, "not JSON")]
    assert recent_failures(conn, 999) == []


# --- collector cycles ---------------------------------------------------------------------


def cycle(shard: int, shards: int, polls: int, mode: CycleMode = CycleMode.RUN) -> CycleStats:
    return CycleStats(shard, shards, mode, 1_000, 0.5, polls, polls, 1, polls - 1, 2, 2_000)


def test_latest_cycles_keeps_one_row_per_shard_in_shard_order(engine: Engine) -> None:
    with engine.connect() as conn:
        assert latest_cycles(conn) == []
    with engine.begin() as conn:
        for stats in (cycle(2, 3, 9), cycle(1, 2, 5), cycle(0, 2, 4)):
            save_cycle(conn, stats)
    with engine.begin() as conn:
        save_cycle(conn, cycle(0, 2, 7, CycleMode.SWEEP))
    with engine.connect() as conn:
        found = latest_cycles(conn)
    assert found == [cycle(0, 2, 7, CycleMode.SWEEP), cycle(1, 2, 5), cycle(2, 3, 9)]
    assert isinstance(found[0].mode, CycleMode)
    assert [c.shard for c in found if c.shards == 2] == [0, 1]  # shard 2 of 3 is stale


# --- the writer ---------------------------------------------------------------------------


def test_writer_stores_polls_with_readings_and_keeps_them_when_a_write_fails(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        pk = meter(conn, "1")
        tag = channel_tags(conn, pk)["A"]
    now = now_us()  # the writer prunes older than its retention on close
    first = failed(Health(), "1", at=now, duration_ms=500.0, error="timed out")
    second = succeeded(first, "1", at=now + 1, duration_ms=4.0)
    stats = cycle(0, 1, 2)

    async def write_twice() -> None:
        writer = BatchWriter(engine, batch_size=100, flush_interval=1.0, poll_log_days=7)
        writer.add(pk, first, [])
        writer.add(pk, second, [Point(tag, now + 1, 1.5)])
        writer.add_cycle(stats)
        with engine.begin() as conn:  # a write that fails: nothing of the batch is stored
            conn.execute(text("ALTER TABLE poll_log RENAME TO poll_log_away"))
        await writer.flush()
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(meter_status)).scalar() == 0
            assert latest_cycles(conn) == []
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE poll_log_away RENAME TO poll_log"))
        await writer.close()
        assert writer.points_written == 1

    asyncio.run(write_twice())
    with engine.connect() as conn:
        assert logged(conn) == [(pk, now, False, "timed out"), (pk, now + 1, True, None)]
        assert points_between(conn, tag, TimeRange()) == [Point(tag, now + 1, 1.5)]
        assert conn.execute(select(meter_status.c.polls)).scalar() == 2
        assert latest_cycles(conn) == [stats]


def test_writer_prunes_the_meters_it_saw_on_close(engine: Engine) -> None:
    now = now_us()
    with engine.begin() as conn:
        seen, unseen = meter(conn, "1"), meter(conn, "2")
        old = now - 3 * DAY_US
        save_poll_log(conn, [ok(seen, old), ok(seen, now - DAY_US), ok(unseen, old)])

    async def poll_once() -> None:
        writer = BatchWriter(engine, batch_size=100, flush_interval=1.0, poll_log_days=2)
        writer.add(seen, succeeded(Health(), "1", at=now, duration_ms=1.0), [])
        await writer.close()

    asyncio.run(poll_once())
    with engine.connect() as conn:
        assert [(pk, ts) for pk, ts, *_ in logged(conn)] == [
            (seen, now - DAY_US),
            (seen, now),
            (unseen, old),
        ]


# --- schema -------------------------------------------------------------------------------


def test_migrations_create_the_tables_as_defined(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        differences = compare_metadata(context, metadata)
        if conn.dialect.name == "sqlite":
            sql = "SELECT sql FROM sqlite_master WHERE name = 'poll_log'"
            assert "WITHOUT ROWID" in conn.execute(text(sql)).scalar_one()
    ours = [d for d in differences if "poll_log" in repr(d) or "collector_cycles" in repr(d)]
    assert ours == []
