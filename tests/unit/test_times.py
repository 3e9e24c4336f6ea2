"""Microsecond timestamps and their ISO 8601 forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from meterhub.times import from_us, iso, parse_iso, to_us

MOSCOW = ZoneInfo("Europe/Moscow")
NEW_YORK = ZoneInfo("America/New_York")


def us(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> int:
    """µs of a UTC date-time, computed independently of the code under test."""
    moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2026-11-21T05:10:32Z", MOSCOW, us(2026, 11, 21, 5, 10, 32)),
        ("2026-11-21T05:10:32.5Z", NEW_YORK, us(2026, 11, 21, 5, 10, 32, 500_000)),
        ("2026-11-21T05:10:32.123456Z", UTC, us(2026, 11, 21, 5, 10, 32, 123_456)),
        ("2026-11-21T05:10:32.123+00:00", UTC, us(2026, 11, 21, 5, 10, 32, 123_000)),
        ("2026-11-21T05:10:32+03:00", NEW_YORK, us(2026, 11, 21, 2, 10, 32)),
        ("2026-11-21T05:10:32-05:30", MOSCOW, us(2026, 11, 21, 10, 40, 32)),
        ("2026-11-21T05:10:32", MOSCOW, us(2026, 11, 21, 2, 10, 32)),
        ("2026-11-21 05:10", MOSCOW, us(2026, 11, 21, 2, 10)),
        ("2026-11-21", MOSCOW, us(2026, 11, 20, 21)),
        ("2026-11-21", UTC, us(2026, 11, 21)),
        ("2026-07-01T12:00:00", NEW_YORK, us(2026, 7, 1, 16)),  # EDT, UTC-4
        ("2026-01-15T12:00:00", NEW_YORK, us(2026, 1, 15, 17)),  # EST, UTC-5
        ("  2026-11-21T05:10:32Z\n", UTC, us(2026, 11, 21, 5, 10, 32)),
        ("1969-12-31T23:59:59.999999Z", MOSCOW, -1),
        ("1900-01-01T00:00:00+00:00", UTC, us(1900, 1, 1)),
    ],
)
def test_parse_iso(text: str, zone: tzinfo, expected: int) -> None:
    assert parse_iso(text, zone) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "yesterday",
        "2026-13-01",
        "2026-11-31",
        "2026-11-21T25:00",
        "2026-11-21T05:10:32+25:00",
        "21.11.2026",
        "1700000000",
        "2026-11-21T05:10:32 garbage",
    ],
)
def test_parse_iso_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_iso(text, UTC)


@pytest.mark.parametrize(
    ("moment", "zone", "text"),
    [
        (0, UTC, "1970-01-01T00:00:00+00:00"),
        (-1, UTC, "1969-12-31T23:59:59.999999+00:00"),
        (-1_500_000, UTC, "1969-12-31T23:59:58.500000+00:00"),
        (us(2026, 11, 21, 5, 10, 32, 123_456), MOSCOW, "2026-11-21T08:10:32.123456+03:00"),
        (us(2026, 7, 1, 16), NEW_YORK, "2026-07-01T12:00:00-04:00"),
        (us(2026, 11, 1, 5, 30), NEW_YORK, "2026-11-01T01:30:00-04:00"),  # before fall-back
        (us(2026, 11, 1, 6, 30), NEW_YORK, "2026-11-01T01:30:00-05:00"),  # after: same wall time
    ],
)
def test_iso(moment: int, zone: tzinfo, text: str) -> None:
    assert iso(moment, zone) == text


@pytest.mark.parametrize("zone", [UTC, MOSCOW, NEW_YORK])
@pytest.mark.parametrize(
    "moment",
    [
        0,
        1,
        -1,
        999_999,
        -999_999,
        1_000_000,
        -1_000_001,
        us(2026, 11, 21, 5, 10, 32, 123_456),
        us(2026, 3, 8, 7, 0, 0, 1),  # New York's spring-forward instant
        us(2026, 11, 1, 6, 30, 0, 999_999),  # the repeated hour in New York
        us(1969, 7, 20, 20, 17, 40, 654_321),
        us(1900, 1, 1, 0, 0, 0, 7),
    ],
)
def test_round_trip(moment: int, zone: tzinfo) -> None:
    moment_dt = from_us(moment, zone)
    # via UTC: an aware datetime in a repeated hour never equals one of another zone (PEP 495)
    utc = moment_dt.astimezone(UTC)
    assert utc == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=moment)
    assert moment_dt.tzinfo is zone
    assert to_us(moment_dt, zone) == moment
    assert parse_iso(iso(moment, zone), zone) == moment
    assert parse_iso(iso(moment, zone), UTC) == moment  # the offset is written out


@pytest.mark.parametrize(
    ("naive", "zone", "expected"),
    [
        (datetime(2026, 7, 1, 12), NEW_YORK, us(2026, 7, 1, 16)),
        (datetime(2026, 7, 1, 12), MOSCOW, us(2026, 7, 1, 9)),
        (datetime(1969, 12, 31, 23, 59, 59, 999_999), UTC, -1),
    ],
)
def test_to_us_reads_naive_in_zone(naive: datetime, zone: tzinfo, expected: int) -> None:
    assert to_us(naive, zone) == expected
