"""Crontab parsing and fire times, across DST changes, checked against a brute-force scan."""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from meterhub.billing.cron import Cron, fires_between, next_fire, upcoming
from meterhub.errors import InvalidInput

MOSCOW = ZoneInfo("Europe/Moscow")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # DST shifts by 30 minutes
APIA = ZoneInfo("Pacific/Apia")  # skipped 2011-12-30 entirely
ZULU = ZoneInfo("UTC")


def cron(minute: object = "*", hour: object = "*", day: object = "*", month: object = "*") -> Cron:
    return Cron.parse({"minute": minute, "hour": hour, "day": day, "month": month})


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, 0, micro, tzinfo=UTC)


FULL = {
    "minute": frozenset(range(60)),
    "hour": frozenset(range(24)),
    "day": frozenset(range(1, 32)),
    "month": frozenset(range(1, 13)),
}


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("minute", "*", FULL["minute"]),
        ("day", "*", FULL["day"]),
        ("minute", "5", {5}),
        ("minute", 5, {5}),
        ("minute", "05", {5}),
        ("hour", "1-5", {1, 2, 3, 4, 5}),
        ("day", "1,15", {1, 15}),
        ("minute", "*/15", {0, 15, 30, 45}),
        ("day", "1-31/2", set(range(1, 32, 2))),
        ("hour", "3-10/3", {3, 6, 9}),
        ("minute", "1,10-12,*/20", {0, 1, 10, 11, 12, 20, 40}),
        ("month", "*/5", {1, 6, 11}),
        ("hour", "7-7", {7}),
        ("minute", "*/100", {0}),
        ("month", " 12 ", {12}),
        ("minute", "59", {59}),
        ("hour", "0,23", {0, 23}),
    ],
)
def test_parse_field(field: str, text: object, expected: set[int]) -> None:
    fields: dict[str, object] = {"minute": "*", "hour": "*", "day": "*", "month": "*"}
    fields[field] = text
    parsed = Cron.parse(fields)
    for name, values in FULL.items():
        assert getattr(parsed, name) == (expected if name == field else values)


def test_parse_keeps_stripped_source_and_is_hashable() -> None:
    parsed = Cron.parse({"month": " */3", "day": 1, "hour": "0 ", "minute": "0,30"})
    assert parsed.source == {"minute": "0,30", "hour": "0", "day": "1", "month": "*/3"}
    assert hash(parsed) == hash(cron("0,30", "0", "1", "*/3"))


@pytest.mark.parametrize(
    ("day", "month"),
    [
        ("29", "2"),  # leap years only
        ("30,31", "2,3"),
        ("30,31", "2,4"),  # April 30
        ("31", "*"),
        ("28-31", "2"),
        ("31", "1-2"),
        ("1-31/2", "2"),
    ],
)
def test_parse_accepts_day_month_combinations_that_fire(day: str, month: str) -> None:
    parsed = cron("0", "0", day, month)
    assert parsed.source["day"] == day


WRONG = "is not one of *, N, N-M, */S, N-M/S"


def crontab(**changes: object) -> dict[str, object]:
    """An every-minute crontab with ``changes``; a field changed to ``...`` is left out."""
    fields: dict[str, object] = {"minute": "*", "hour": "*", "day": "*", "month": "*"} | changes
    return {name: value for name, value in fields.items() if value is not ...}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (crontab(minute=...), {"crontab.minute": "required"}),
        ({}, {f"crontab.{name}": "required" for name in ("minute", "hour", "day", "month")}),
        (crontab(minute="60"), {"crontab.minute": "60 is outside 0-59"}),
        (crontab(hour="24"), {"crontab.hour": "24 is outside 0-23"}),
        (crontab(day="0"), {"crontab.day": "0 is outside 1-31"}),
        (crontab(day="32"), {"crontab.day": "32 is outside 1-31"}),
        (crontab(month="13"), {"crontab.month": "13 is outside 1-12"}),
        (crontab(month="0-3"), {"crontab.month": "0 is outside 1-12"}),
        (crontab(hour="1-31/2"), {"crontab.hour": "31 is outside 0-23"}),
        (crontab(minute=""), {"crontab.minute": "must not be empty"}),
        (crontab(minute="  "), {"crontab.minute": "must not be empty"}),
        (crontab(minute="1,,2"), {"crontab.minute": f"'' {WRONG}"}),
        (crontab(minute="1,"), {"crontab.minute": f"'' {WRONG}"}),
        (crontab(minute="1-"), {"crontab.minute": f"'1-' {WRONG}"}),
        (crontab(minute="a"), {"crontab.minute": f"'a' {WRONG}"}),
        (crontab(minute="*/"), {"crontab.minute": f"'*/' {WRONG}"}),
        (crontab(minute="5/2"), {"crontab.minute": f"'5/2' {WRONG}"}),
        (crontab(minute="-1"), {"crontab.minute": f"'-1' {WRONG}"}),
        (crontab(minute=-1), {"crontab.minute": f"'-1' {WRONG}"}),
        (crontab(minute="1 2"), {"crontab.minute": f"'1 2' {WRONG}"}),
        (crontab(minute="*-5"), {"crontab.minute": f"'*-5' {WRONG}"}),
        (crontab(minute="\u0663"), {"crontab.minute": WRONG}),  # Arabic-Indic digit three
        (crontab(minute="*/0"), {"crontab.minute": "step must be at least 1"}),
        (crontab(minute="1-5/0"), {"crontab.minute": "step must be at least 1"}),
        (crontab(hour="5-1"), {"crontab.hour": "range 5-1 is reversed"}),
        (crontab(minute=True), {"crontab.minute": "must be a string or an integer"}),
        (crontab(minute=None), {"crontab.minute": "must be a string or an integer"}),
        (crontab(minute=1.5), {"crontab.minute": "must be a string or an integer"}),
        (crontab(minute=["1"]), {"crontab.minute": "must be a string or an integer"}),
        (crontab(weekday="1"), {"crontab.weekday": "unknown field"}),
        (
            crontab(minute="60", hour="x", month=..., weekday="1"),
            {
                "crontab.minute": "60 is outside",
                "crontab.hour": WRONG,
                "crontab.month": "required",
                "crontab.weekday": "unknown field",
            },
        ),
        (crontab(day="31", month="2"), {"crontab.day": "never fires: no month 2 has a day 31"}),
        (crontab(day="30,31", month="2"), {"crontab.day": "no month 2 has a day 30,31"}),
        (crontab(day="31", month="4,6,9,11"), {"crontab.day": "never fires"}),
        (crontab(day="30-31", month="2"), {"crontab.day": "never fires"}),
        (crontab(day="31", month="2", hour="99"), {"crontab.day": "never", "crontab.hour": "99"}),
    ],
)
def test_parse_rejects(fields: dict[str, object], expected: dict[str, str]) -> None:
    with pytest.raises(InvalidInput) as caught:
        Cron.parse(fields)
    assert set(caught.value.errors) == set(expected)
    for name, message in expected.items():
        assert message in caught.value.errors[name][0]


def test_zoneinfo_fold_zero_maps_gap_forward_and_repeat_to_first() -> None:
    """The rule the fire times rely on: ``fold=0`` reads a wall time with the earlier offset."""
    assert datetime(2026, 3, 8, 2, 30, tzinfo=NEW_YORK).astimezone(UTC) == utc(2026, 3, 8, 7, 30)
    assert datetime(2026, 3, 29, 2, 30, tzinfo=BERLIN).astimezone(UTC) == utc(2026, 3, 29, 1, 30)
    assert datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK).astimezone(UTC) == utc(2026, 11, 1, 5, 30)
    assert datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN).astimezone(UTC) == utc(2026, 10, 25, 0, 30)


HOURLY_30 = cron("30")
DAILY_0230 = cron("30", "2")
DAILY_0130 = cron("30", "1")
MONTHLY_1ST_0100 = cron("0", "1", "1")
EVERY_15 = cron("*/15")
DAY_31 = cron("0", "0", "31")
LEAP_DAY = cron("0", "0", "29", "2")


@pytest.mark.parametrize(
    ("schedule", "zone", "after", "expected"),
    [
        # UTC
        (EVERY_15, ZULU, utc(2026, 1, 1, 0, 7), utc(2026, 1, 1, 0, 15)),
        (EVERY_15, ZULU, utc(2026, 1, 1, 0, 15), utc(2026, 1, 1, 0, 30)),  # strictly after
        (EVERY_15, ZULU, utc(2026, 1, 1, 0, 14, 999_999), utc(2026, 1, 1, 0, 15)),
        (EVERY_15, ZULU, utc(2026, 1, 1, 23, 50), utc(2026, 1, 2)),
        (HOURLY_30, ZULU, utc(2026, 12, 31, 23, 30), utc(2027, 1, 1, 0, 30)),
        (cron("0", "3-10/3"), ZULU, utc(2026, 1, 1, 9), utc(2026, 1, 2, 3)),
        (cron("0", "0", "1", "1,7"), ZULU, utc(2026, 1, 1), utc(2026, 7, 1)),
        (DAY_31, ZULU, utc(2026, 3, 31), utc(2026, 5, 31)),  # skips April
        (DAY_31, ZULU, utc(2026, 8, 31), utc(2026, 10, 31)),  # skips September
        (DAY_31, ZULU, utc(2026, 12, 31), utc(2027, 1, 31)),
        (LEAP_DAY, ZULU, utc(2025, 3, 1), utc(2028, 2, 29)),
        (LEAP_DAY, ZULU, utc(2028, 2, 29), utc(2032, 2, 29)),
        (LEAP_DAY, ZULU, utc(2096, 3, 1), utc(2104, 2, 29)),  # 2100 is no leap year
        (cron("0"), ZULU, datetime(2026, 1, 1, 3, tzinfo=MOSCOW), utc(2026, 1, 1, 1)),
        # Moscow, UTC+3 all year
        (MONTHLY_1ST_0100, MOSCOW, utc(2026, 1, 15), utc(2026, 1, 31, 22)),
        (HOURLY_30, MOSCOW, utc(2026, 3, 29), utc(2026, 3, 29, 0, 30)),
        (DAILY_0230, MOSCOW, utc(2026, 3, 29), utc(2026, 3, 29, 23, 30)),
        # New York, spring forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC)
        (HOURLY_30, NEW_YORK, utc(2026, 3, 8, 6), utc(2026, 3, 8, 6, 30)),  # 01:30 EST
        (HOURLY_30, NEW_YORK, utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 30)),  # 02:30 -> 03:30
        (HOURLY_30, NEW_YORK, utc(2026, 3, 8, 7, 30), utc(2026, 3, 8, 8, 30)),  # 04:30 EDT
        (DAILY_0230, NEW_YORK, utc(2026, 3, 7, 12), utc(2026, 3, 8, 7, 30)),  # at 03:30 EDT
        (DAILY_0230, NEW_YORK, utc(2026, 3, 8, 7, 10), utc(2026, 3, 8, 7, 30)),  # after 03:10
        (DAILY_0230, NEW_YORK, utc(2026, 3, 8, 7, 30), utc(2026, 3, 9, 6, 30)),
        (EVERY_15, NEW_YORK, utc(2026, 3, 8, 6, 50), utc(2026, 3, 8, 7)),  # 03:00 EDT
        (EVERY_15, NEW_YORK, utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 15)),
        # New York, fall back 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC)
        (HOURLY_30, NEW_YORK, utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 30)),  # 01:30 EDT
        (HOURLY_30, NEW_YORK, utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 7, 30)),  # 02:30 EST
        (HOURLY_30, NEW_YORK, utc(2026, 11, 1, 6), utc(2026, 11, 1, 7, 30)),  # in the repeat
        (DAILY_0130, NEW_YORK, utc(2026, 10, 31, 12), utc(2026, 11, 1, 5, 30)),
        (DAILY_0130, NEW_YORK, utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)),
        (MONTHLY_1ST_0100, NEW_YORK, utc(2026, 10, 15), utc(2026, 11, 1, 5)),  # 01:00 EDT
        (MONTHLY_1ST_0100, NEW_YORK, utc(2026, 11, 1, 5), utc(2026, 12, 1, 6)),  # 01:00 EST
        # Berlin, spring forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC)
        (HOURLY_30, BERLIN, utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30)),  # 03:30 CEST
        (HOURLY_30, BERLIN, utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 30)),
        (DAILY_0230, BERLIN, utc(2026, 3, 28, 12), utc(2026, 3, 29, 1, 30)),
        (MONTHLY_1ST_0100, BERLIN, utc(2026, 3, 15), utc(2026, 3, 31, 23)),
        # Berlin, fall back 2026-10-25 03:00 CEST -> 02:00 CET (01:00 UTC)
        (HOURLY_30, BERLIN, utc(2026, 10, 25), utc(2026, 10, 25, 0, 30)),  # 02:30 CEST
        (HOURLY_30, BERLIN, utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 30)),  # 03:30 CET
        (DAILY_0230, BERLIN, utc(2026, 10, 24, 12), utc(2026, 10, 25, 0, 30)),
        (DAILY_0230, BERLIN, utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)),
        # Lord Howe, 2026-10-04 02:00 +10:30 -> 02:30 +11: 02:15 fires at 02:45
        (cron("15", "2"), LORD_HOWE, utc(2026, 10, 3, 12), utc(2026, 10, 3, 15, 45)),
        # ... and after 02:09 (+10:30), the gap's 02:14 fires at 02:44, later than 02:42 (+11)
        (cron("*/7", "1-3"), LORD_HOWE, utc(2026, 10, 3, 15, 39), utc(2026, 10, 3, 15, 42)),
        # Apia skipped 2011-12-30: its noon fires at 2011-12-31 12:00 +14
        (cron("0", "12", "30", "12"), APIA, utc(2011, 12, 29), utc(2011, 12, 30, 22)),
        (cron("0", "12", "30", "12"), APIA, utc(2011, 12, 30, 16), utc(2011, 12, 30, 22)),
    ],
)
def test_next_fire(schedule: Cron, zone: ZoneInfo, after: datetime, expected: datetime) -> None:
    fire = next_fire(schedule, after, zone)
    assert fire == expected
    assert fire.tzinfo is UTC


def test_next_fire_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire(HOURLY_30, datetime(2026, 1, 1), ZULU)


def test_next_fire_gives_up_on_a_schedule_that_never_fires() -> None:
    """``Cron.parse`` rejects such schedules; one built directly must not loop forever."""
    never = Cron(frozenset({0}), frozenset({0}), frozenset({31}), frozenset({2}), {})
    with pytest.raises(ValueError, match="never fires"):
        next_fire(never, utc(2026, 1, 1), ZULU)


@pytest.mark.parametrize("zone", [ZULU, MOSCOW, NEW_YORK, BERLIN, LORD_HOWE])
def test_fires_between_a_year_of_monthly_fires(zone: ZoneInfo) -> None:
    start = datetime(2025, 12, 31, 12, tzinfo=zone)
    fires = fires_between(cron("0", "0", "1"), start, start + timedelta(days=365), zone)
    assert [fire.astimezone(zone).replace(tzinfo=None) for fire in fires] == [
        datetime(2026, month, 1) for month in range(1, 13)
    ]


def test_fires_between_excludes_start_and_includes_end() -> None:
    fires = fires_between(cron("0"), utc(2026, 1, 1), utc(2026, 1, 1, 3), ZULU)
    assert fires == [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)]


MIN = timedelta(minutes=1)
MICRO = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("schedule", "zone", "start", "expected_gaps"),
    [
        # 24 real hours from midnight UTC: gaps between consecutive fires, as a tally
        (HOURLY_30, NEW_YORK, utc(2026, 3, 8), {60 * MIN: 23}),
        (HOURLY_30, NEW_YORK, utc(2026, 11, 1), {60 * MIN: 21, 120 * MIN: 1}),  # no 01:30 EST
        (HOURLY_30, BERLIN, utc(2026, 3, 29), {60 * MIN: 23}),
        (HOURLY_30, BERLIN, utc(2026, 10, 25), {60 * MIN: 21, 120 * MIN: 1}),  # no 02:30 CET
        (EVERY_15, NEW_YORK, utc(2026, 3, 8), {15 * MIN: 95}),
        (EVERY_15, NEW_YORK, utc(2026, 11, 1), {15 * MIN: 90, 75 * MIN: 1}),  # 01:45 -> 02:00 EST
        (EVERY_15, LORD_HOWE, utc(2026, 10, 3), {15 * MIN: 95}),
        (EVERY_15, LORD_HOWE, utc(2026, 4, 4), {15 * MIN: 92, 45 * MIN: 1}),  # 01:45 -> 02:00
        (DAILY_0230, NEW_YORK, utc(2026, 3, 7, 12), {}),
        (DAILY_0130, NEW_YORK, utc(2026, 10, 31, 12), {}),
    ],
)
def test_fires_between_across_dst_loses_or_doubles_nothing(
    schedule: Cron, zone: ZoneInfo, start: datetime, expected_gaps: dict[timedelta, int]
) -> None:
    fires = fires_between(schedule, start, start + timedelta(days=1), zone)
    assert fires == sorted(set(fires))
    assert Counter(b - a for a, b in pairwise(fires)) == expected_gaps
    assert len(fires) == sum(expected_gaps.values()) + 1


@pytest.mark.parametrize("limit", [0, 1, 100])
def test_fires_between_honours_limit(limit: int) -> None:
    fires = fires_between(cron(), utc(2026, 1, 1), utc(2026, 1, 2), ZULU, limit=limit)
    assert fires == [utc(2026, 1, 1) + n * MIN for n in range(1, limit + 1)]


def test_fires_between_an_empty_interval() -> None:
    assert fires_between(cron(), utc(2026, 1, 2), utc(2026, 1, 1), ZULU) == []


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, []),
        (
            4,
            [
                utc(2026, 3, 8, 5, 30),
                utc(2026, 3, 8, 6, 30),
                utc(2026, 3, 8, 7, 30),
                utc(2026, 3, 8, 8, 30),
            ],
        ),
    ],
)
def test_upcoming(count: int, expected: list[datetime]) -> None:
    assert upcoming(HOURLY_30, utc(2026, 3, 8, 5), NEW_YORK, count) == expected


def reference_fires(schedule: Cron, zone: ZoneInfo, first: date, days: int) -> list[datetime]:
    """Brute force: every wall minute of ``days`` days that matches, read with ``fold=0``."""
    fires: set[datetime] = set()
    wall = datetime(first.year, first.month, first.day)
    for _ in range(days * 24 * 60):
        if (
            wall.minute in schedule.minute
            and wall.hour in schedule.hour
            and wall.day in schedule.day
            and wall.month in schedule.month
        ):
            fires.add(wall.replace(tzinfo=zone).astimezone(UTC))
        wall += MIN
    return sorted(fires)


WINDOWS = [  # ten days each, around a DST change (Moscow: none)
    (NEW_YORK, date(2026, 3, 3)),
    (NEW_YORK, date(2026, 10, 27)),
    (BERLIN, date(2026, 3, 24)),
    (BERLIN, date(2026, 10, 20)),
    (MOSCOW, date(2026, 3, 24)),
    (LORD_HOWE, date(2026, 3, 31)),
    (LORD_HOWE, date(2026, 9, 29)),
    (APIA, date(2011, 12, 25)),
]


@pytest.mark.parametrize(("zone", "first"), WINDOWS)
@pytest.mark.parametrize(
    ("minute", "hour"),
    [("30", "*"), ("*/15", "*"), ("0,30", "2"), ("45", "1"), ("*/7", "1-3"), ("0", "*/5")],
)
def test_next_fire_matches_brute_force(minute: str, hour: str, zone: ZoneInfo, first: date) -> None:
    schedule = cron(minute, hour)
    reference = reference_fires(schedule, zone, first, 10)
    # Query the middle eight days, so the answer always lies inside the scanned window.
    start = datetime(first.year, first.month, first.day, tzinfo=zone) + timedelta(days=1)
    afters = [start + n * 13 * MIN for n in range(8 * 24 * 60 // 13)]
    afters += [fire - delta for fire in reference[2:-30] for delta in (MICRO, 0 * MICRO)]
    for after in afters:
        expected = reference[bisect_right(reference, after)]
        assert next_fire(schedule, after, zone) == expected, after
