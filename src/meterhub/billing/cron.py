"""Crontab schedules ``{month, day, hour, minute}`` and their fire times in a time zone.

A schedule matches wall-clock minutes in the zone; each matching wall time fires at the instant
``wall.replace(tzinfo=zone)`` (``fold=0``):

- a wall time inside a DST gap (it never shows on the clock) fires at the wall time shifted
  forward by the gap length, e.g. 02:30 on a spring-forward day fires at 03:30 of the new offset;
  when that instant is also a fire on its own (say, hourly at :30) it fires once;
- a wall time that shows twice on a fall-back day fires once, at its first occurrence.

Pure: no clock and no I/O; every function takes the moment it starts from.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice, takewhile
from zoneinfo import ZoneInfo

from meterhub.errors import InvalidInput

FIELDS = {"minute": (0, 59), "hour": (0, 23), "day": (1, 31), "month": (1, 12)}

# The most days each month can have (February 29 in leap years).
_LONGEST_MONTH = {month: calendar.monthrange(2000, month)[1] for month in range(1, 13)}
# The longest wait between two fires of a schedule that can fire: Feb 29 skips 2100, 2096 → 2104.
_HORIZON_YEARS = 8
_TERM = re.compile(
    r"(?:(?P<star>\*)|(?P<first>\d+)(?:-(?P<last>\d+))?)(?:/(?P<step>\d+))?", re.ASCII
)
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Cron:
    """The values each field matches, and the field strings they were parsed from."""

    minute: frozenset[int]
    hour: frozenset[int]
    day: frozenset[int]
    month: frozenset[int]
    source: dict[str, str] = field(hash=False)

    @classmethod
    def parse(cls, fields: Mapping[str, object]) -> Cron:
        """Parse the four fields; every problem is reported in one ``InvalidInput``.

        A field is a comma list of ``*``, ``N``, ``N-M``, ``*/S`` or ``N-M/S``; an int is read
        as its string. Errors name ``crontab.<field>``.
        """
        errors = {f"crontab.{key}": "unknown field" for key in fields if key not in FIELDS}
        source: dict[str, str] = {}
        values: dict[str, frozenset[int]] = {}
        for name in FIELDS:
            if name not in fields:
                errors[f"crontab.{name}"] = "required"
                continue
            try:
                source[name], values[name] = _parse_field(name, fields[name])
            except ValueError as exc:
                errors[f"crontab.{name}"] = str(exc)
        if "day" in values and "month" in values:
            never = _never_fires(values["day"], values["month"])
            if never:
                errors["crontab.day"] = never
        if errors:
            raise InvalidInput(errors)
        return cls(values["minute"], values["hour"], values["day"], values["month"], source)


def _parse_field(name: str, value: object) -> tuple[str, frozenset[int]]:
    """The stripped text of one field and the values it matches; ``ValueError`` says why not."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a string or an integer")
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    low, high = FIELDS[name]
    values: set[int] = set()
    for term in text.split(","):
        values.update(_parse_term(term, low, high))
    return text, frozenset(values)


def _parse_term(term: str, low: int, high: int) -> range:
    """The values of one list item, e.g. ``1-31/2``, within ``low``-``high``."""
    match = _TERM.fullmatch(term)
    if match is None or (match["step"] and match["first"] and not match["last"]):
        raise ValueError(f"{term!r} is not one of *, N, N-M, */S, N-M/S")
    first, last = low, high
    if not match["star"]:
        first = int(match["first"])
        last = int(match["last"] or first)
        for number in (first, last):
            if not low <= number <= high:
                raise ValueError(f"{number} is outside {low}-{high}")
        if first > last:
            raise ValueError(f"range {first}-{last} is reversed")
    step = int(match["step"] or 1)
    if step < 1:
        raise ValueError("step must be at least 1")
    return range(first, last + 1, step)


def _never_fires(days: frozenset[int], months: frozenset[int]) -> str | None:
    """Why no day in ``days`` exists in any month of ``months``, or ``None`` if one does."""
    if min(days) <= max(_LONGEST_MONTH[month] for month in months):
        return None
    return f"never fires: no month {_listed(months)} has a day {_listed(days)}"


def _listed(values: frozenset[int]) -> str:
    return ",".join(str(value) for value in sorted(values))


def next_fire(cron: Cron, after: datetime, zone: ZoneInfo) -> datetime:
    """The first fire strictly after ``after`` (aware, any zone), in UTC."""
    if after.utcoffset() is None:
        raise ValueError("after must be timezone-aware")
    after = after.astimezone(UTC)
    best: datetime | None = None
    wall = _start_wall(after, zone)
    while True:
        wall = _next_wall(cron, wall)
        # Wall times map to instants in order, except those in a DST gap, which map up to one
        # gap length later; a wall time at or past the best fire's own can only map later.
        if best is not None and wall >= _wall(best, zone):
            return best
        fire = wall.replace(tzinfo=zone).astimezone(UTC)
        if fire > after and (best is None or fire < best):
            best = fire
        wall += _MINUTE


def fires_between(
    cron: Cron, start: datetime, end: datetime, zone: ZoneInfo, limit: int = 10_000
) -> list[datetime]:
    """Every fire ``t`` with ``start < t <= end``, in UTC and ascending, at most ``limit``."""
    return list(islice(takewhile(lambda fire: fire <= end, _fires(cron, start, zone)), limit))


def upcoming(cron: Cron, after: datetime, zone: ZoneInfo, count: int) -> list[datetime]:
    """The next ``count`` fires after ``after``, in UTC."""
    return list(islice(_fires(cron, after, zone), count))


def _fires(cron: Cron, after: datetime, zone: ZoneInfo) -> Iterator[datetime]:
    while True:
        after = next_fire(cron, after, zone)
        yield after


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _start_wall(after: datetime, zone: ZoneInfo) -> datetime:
    """The earliest wall minute that can fire after ``after``.

    Usually the wall time of ``after``; but a DST gap in the day before maps its wall times
    forward, so start from ``after`` read with the offset of a day earlier if that is lower.
    """
    before_gap = _wall(after - _DAY, zone) + _DAY
    return min(_wall(after, zone), before_gap).replace(second=0, microsecond=0)


def _next_wall(cron: Cron, wall: datetime) -> datetime:
    """The first wall minute at or after ``wall`` (naive, whole minute) that ``cron`` matches."""
    horizon = wall.year + _HORIZON_YEARS
    while wall.year <= horizon:
        if wall.month not in cron.month:
            month = _above(cron.month, wall.month)
            wall = datetime(wall.year, month, 1) if month else datetime(wall.year + 1, 1, 1)
        elif wall.day not in cron.day:
            day = _above(cron.day, wall.day)
            if day is not None and day <= calendar.monthrange(wall.year, wall.month)[1]:
                wall = datetime(wall.year, wall.month, day)
            else:
                wall = (datetime(wall.year, wall.month, 1) + timedelta(days=32)).replace(day=1)
        elif wall.hour not in cron.hour:
            hour = _above(cron.hour, wall.hour)
            midnight = wall.replace(hour=0, minute=0)
            wall = midnight + (timedelta(hours=hour) if hour is not None else _DAY)
        elif wall.minute not in cron.minute:
            minute = _above(cron.minute, wall.minute)
            hour_start = wall.replace(minute=0)
            wall = hour_start + (timedelta(minutes=minute) if minute is not None else _HOUR)
        else:
            return wall
    raise ValueError(f"{cron.source} never fires")


def _above(values: frozenset[int], current: int) -> int | None:
    """The smallest value above ``current``, if any."""
    return min((value for value in values if value > current), default=None)
