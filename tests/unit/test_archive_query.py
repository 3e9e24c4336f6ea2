"""``archive_query``: the /counter-archive/ query string to a counter id and a µs span."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from meterhub.api.counter import archive_query
from meterhub.errors import InvalidInput
from meterhub.storage import TimeRange

ZONE = ZoneInfo("Europe/Moscow")  # UTC+3 all year


def at(year: int, month: int, day: int, *hms_us: int, offset_hours: int = 3) -> int:
    """µs of a wall-clock time at a fixed UTC offset (Moscow's by default)."""
    hour, minute, second, micro = (*hms_us, 0, 0, 0, 0)[:4]
    moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    moment -= timedelta(hours=offset_hours)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


ID = ("counter_id", "44")
JAN1, JAN2, JAN5, JAN10 = (at(2026, 1, day) for day in (1, 2, 5, 10))
SEED = at(2023, 8, 12, 15, 16, 3, 218_952)
SEED_TEXT = "2023-08-12 15:16:03.218952"


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        pytest.param([ID], (44, TimeRange()), id="id-only"),
        pytest.param([("counter_id", "0")], (0, TimeRange()), id="id-zero"),
        pytest.param(
            [("counter_id", "9223372036854775807")], (2**63 - 1, TimeRange()), id="id-max"
        ),
        pytest.param([ID, ("timestamp", "2026-01-01")], (44, TimeRange(JAN1, JAN1)), id="exact"),
        pytest.param([ID, ("timestamp__gte", "2026-01-01")], (44, TimeRange(JAN1)), id="gte"),
        pytest.param([ID, ("timestamp__gt", "2026-01-01")], (44, TimeRange(JAN1 + 1)), id="gt"),
        pytest.param([ID, ("timestamp__lte", "2026-01-01")], (44, TimeRange(None, JAN1)), id="lte"),
        pytest.param(
            [ID, ("timestamp__lt", "2026-01-01")], (44, TimeRange(None, JAN1 - 1)), id="lt"
        ),
        pytest.param(
            [
                ("timestamp__gte", "2026-01-01T00:00:00"),
                ("timestamp__gt", "2026-01-02T00:00:00"),
                ("timestamp__lte", "2026-01-10T00:00:00"),
                ("timestamp__lt", "2026-01-05T00:00:00"),
                ID,
            ],
            (44, TimeRange(JAN2 + 1, JAN5 - 1)),
            id="tightest",
        ),
        pytest.param(
            [
                ID,
                ("timestamp__lt", "2026-01-05"),
                ("timestamp__lte", "2026-01-10"),
                ("timestamp__gt", "2026-01-02"),
                ("timestamp__gte", "2026-01-01"),
            ],
            (44, TimeRange(JAN2 + 1, JAN5 - 1)),
            id="tightest-reversed",
        ),
        pytest.param(
            [ID, ("timestamp__lte", "2026-01-10"), ("timestamp", "2026-01-02")],
            (44, TimeRange(JAN2, JAN2)),
            id="exact-within-bound",
        ),
        pytest.param(
            [ID, (f"timestamp<{SEED_TEXT}", "")], (44, TimeRange(None, SEED - 1)), id="seed-lt"
        ),
        pytest.param([ID, ("timestamp<", SEED_TEXT)], (44, TimeRange(None, SEED)), id="seed-lte"),
        pytest.param([ID, (f"timestamp>{SEED_TEXT}", "")], (44, TimeRange(SEED + 1)), id="seed-gt"),
        pytest.param([ID, ("timestamp>", SEED_TEXT)], (44, TimeRange(SEED)), id="seed-gte"),
        pytest.param(
            [ID, (f"timestamp>={SEED_TEXT}", "")], (44, TimeRange(SEED)), id="seed-gte-in-key"
        ),
        pytest.param(
            [ID, ("timestamp__gte", "2026-01-01T00:00:00 05:00")],
            (44, TimeRange(at(2026, 1, 1, offset_hours=5))),
            id="plus-as-space",
        ),
        pytest.param(
            [ID, ("timestamp__gte", "2026-01-01T00:00:00+05:00")],
            (44, TimeRange(at(2026, 1, 1, offset_hours=5))),
            id="plus",
        ),
        pytest.param(
            [ID, ("timestamp<2026-01-01T00:00:00 05:00", "")],
            (44, TimeRange(None, at(2026, 1, 1, offset_hours=5) - 1)),
            id="seed-plus-as-space",
        ),
        pytest.param(
            [ID, ("timestamp__lte", "2026-01-01T00:00:00-05:00")],
            (44, TimeRange(None, at(2026, 1, 1, offset_hours=-5))),
            id="minus",
        ),
        pytest.param(
            [ID, ("timestamp", "2026-01-01T00:00:00Z")],
            (44, TimeRange(at(2026, 1, 1, offset_hours=0), at(2026, 1, 1, offset_hours=0))),
            id="zulu",
        ),
    ],
)
def test_archive_query(items: list[tuple[str, str]], expected: tuple[int, TimeRange]) -> None:
    assert archive_query(items, ZONE) == expected


@pytest.mark.parametrize(
    ("items", "fields"),
    [
        pytest.param([], {"counter_id"}, id="nothing"),
        pytest.param([("timestamp__gte", "2026-01-01")], {"counter_id"}, id="missing-id"),
        pytest.param([("counter_id", "abc")], {"counter_id"}, id="id-abc"),
        pytest.param([("counter_id", "")], {"counter_id"}, id="id-empty"),
        pytest.param([("counter_id", "-1")], {"counter_id"}, id="id-negative"),
        pytest.param([("counter_id", "1.5")], {"counter_id"}, id="id-float"),
        pytest.param([("counter_id", "9223372036854775808")], {"counter_id"}, id="id-too-big"),
        pytest.param([ID, ("timestamp__gte", "yesterday")], {"timestamp__gte"}, id="bad-gte"),
        pytest.param([ID, ("timestamp", "")], {"timestamp"}, id="empty-time"),
        pytest.param([ID, ("timestamp__lt", "2026-13-01")], {"timestamp__lt"}, id="bad-month"),
        pytest.param([ID, ("timestamp<", "soon")], {"timestamp__lte"}, id="bad-seed-form"),
        pytest.param([ID, ("timestamp__between", "x")], {"timestamp__between"}, id="unknown"),
        pytest.param([ID, ("limit", "10")], {"limit"}, id="unknown-limit"),
        pytest.param(
            [("counter_id", "x"), ("timestamp__lt", "nope"), ("foo", "1")],
            {"counter_id", "timestamp__lt", "foo"},
            id="several",
        ),
        pytest.param(
            [("timestamp__gt", "bad"), ("timestamp__lte", "worse")],
            {"counter_id", "timestamp__gt", "timestamp__lte"},
            id="several-without-id",
        ),
    ],
)
def test_archive_query_rejects(items: list[tuple[str, str]], fields: set[str]) -> None:
    with pytest.raises(InvalidInput) as caught:
        archive_query(items, ZONE)
    assert set(caught.value.errors) == fields
    assert all(caught.value.errors[field] for field in fields)
    for field in fields:
        assert field in str(caught.value)
