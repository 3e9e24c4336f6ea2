"""Time-of-use (峰谷) tariffs: consumption priced by the time of day it happened.

A TOU tariff names periods (``peak``, ``valley``, ...), each with a price per unit and the
weekly windows it covers, in the project's timezone. A window starts on each of its days at
``from`` and ends at ``to``; ``to <= from`` wraps past midnight into the next day (a Friday
22:00 to 08:00 window ends Saturday 08:00), and ``from == to`` is the whole day. The windows of
all periods together cover every minute of the week exactly once.

Optional tiers (阶梯) apply to the bill's total consumption as a surcharge per unit: each
tier's ``price`` is added for every unit between the previous tier's bound and its own
``up_to`` (so the first tier's price is usually 0). A bill charges each period's consumption
at its price, plus the surcharge, plus the fixed charge, summed exactly and rounded half-up to
cents once.

Wall-clock boundaries become instants day by day: a boundary in a spring-forward gap is the
instant the clock jumps (02:30 on a day going 02:00 → 03:00 is that day's 03:00), and one in a
fall-back overlap is its first occurrence; so a 23-hour day and a 25-hour day bill their real
hours. Pure code: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from meterhub.billing.tariffs import (
    Tariff,
    Tier,
    cents,
    is_non_negative,
    parse_decimal,
    parse_tier,
    text,
    tier_errors,
    tiered_amount,
)
from meterhub.errors import InvalidInput
from meterhub.times import from_us, to_us

DAY_MINUTES = 1440
WEEK_MINUTES = 7 * DAY_MINUTES
DAY_SETS = {
    "all": (1, 2, 3, 4, 5, 6, 7),
    "weekdays": (1, 2, 3, 4, 5),
    "weekends": (6, 7),
}
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MAX_PERIODS = 24
PEAK_VALLEY: dict[str, Any] = {
    "kind": "tou",
    "periods": [
        {
            "name": "peak",
            "price": "0.80",
            "windows": [{"days": "weekdays", "from": "08:00", "to": "22:00"}],
        },
        {
            "name": "valley",
            "price": "0.40",
            "windows": [
                {"days": "weekdays", "from": "22:00", "to": "08:00"},
                {"days": "weekends", "from": "08:00", "to": "08:00"},
            ],
        },
    ],
    "tiers": [{"up_to": "200", "price": "0"}, {"up_to": None, "price": "0.05"}],
    "fixed_charge": "5.00",
}
"""A typical 峰谷 tariff as JSON: weekdays' peak 08:00-22:00, valley the rest of the week
(a weekend window from 08:00 to 08:00 runs a whole day), a surcharge above 200 units and
a fixed charge. The API's example, and what ``bench/billing.py`` bills."""


@dataclass(frozen=True, slots=True)
class Window:
    """Minutes ``start`` (0 to 1439) to ``end`` (1 to 1440) of each ISO weekday in ``days``."""

    days: tuple[int, ...]
    start: int
    end: int

    def minutes_of_week(self) -> list[int]:
        """Every minute it covers, counted from Monday 00:00 (wrapping past Sunday)."""
        length = (self.end - self.start) % DAY_MINUTES or DAY_MINUTES
        return [
            ((day - 1) * DAY_MINUTES + self.start + m) % WEEK_MINUTES
            for day in self.days
            for m in range(length)
        ]

    def to_json(self) -> dict[str, Any]:
        named = [name for name, days in DAY_SETS.items() if days == self.days]
        return {
            "days": named[0] if named else list(self.days),
            "from": _clock(self.start),
            "to": _clock(self.end),
        }

    @property
    def label(self) -> str:
        """``weekdays 22:00-08:00``, ``Mon, Sat 00:00-24:00``."""
        named = [name for name, days in DAY_SETS.items() if days == self.days]
        days = named[0] if named else ", ".join(WEEKDAY_NAMES[d - 1][:3] for d in self.days)
        return f"{days} {_clock(self.start)}-{_clock(self.end)}"


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    price: Decimal
    windows: tuple[Window, ...]


@dataclass(frozen=True, slots=True)
class Stretch:
    """``[start, end)`` µs of the bill spent in period number ``period``."""

    start: int
    end: int
    period: int


@dataclass(frozen=True, slots=True)
class TouTariff:
    """Periods, optional surcharge tiers on the total, and a fixed charge per bill.

    Every instance is valid: construction raises ``InvalidInput`` naming the bad fields.
    """

    periods: tuple[Period, ...]
    tiers: tuple[Tier, ...] = ()
    fixed_charge: Decimal = Decimal(0)
    changes: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)
    """(minute of the week, period) where the period changes, in order."""

    def __post_init__(self) -> None:
        errors = _period_errors(self.periods)
        if self.tiers:
            errors.update(tier_errors(self.tiers))
        if not is_non_negative(self.fixed_charge):
            errors["fixed_charge"] = "must be a finite decimal >= 0"
        if not errors:
            week = _week(self.periods, errors)
        if errors:
            raise InvalidInput(errors)
        found = tuple((m, p) for m, p in enumerate(week) if p != week[m - 1])
        object.__setattr__(self, "changes", found)

    def stretches(self, start: int, end: int, zone: tzinfo) -> list[Stretch]:
        """The stretches of ``[start, end)`` (µs) in each period, in order, in ``zone``."""
        if not self.changes:
            return [Stretch(start, end, 0)]
        week_before = from_us(start, zone).date() - timedelta(days=7)  # holds a change
        instants = self._instants(week_before, from_us(end, zone).date(), zone)
        found: list[Stretch] = []
        at, current = start, instants[0][1]
        for instant, period in instants:
            if instant <= start:
                current = period
            elif instant < end and period != current:
                found.append(Stretch(at, instant, current))
                at, current = instant, period
        found.append(Stretch(at, end, current))
        return found

    def _instants(self, first: date, last: date, zone: tzinfo) -> list[tuple[int, int]]:
        """(µs, period) of each change of period on the days ``first`` to ``last``."""
        found = []
        for offset in range((last - first).days + 1):
            day = first + timedelta(days=offset)
            for minute, period in self.changes:
                if minute // DAY_MINUTES == day.weekday():
                    found.append((local_instant(day, minute % DAY_MINUTES, zone), period))
        return found

    def amounts(self, consumption: Sequence[Decimal]) -> tuple[list[Decimal], Decimal, Decimal]:
        """For each period's consumption: its exact amount; the tier surcharge on the total;
        and the bill's charge (all of it with the fixed charge, rounded half-up once)."""
        each = [used * period.price for used, period in zip(consumption, self.periods, strict=True)]
        surcharge = tiered_amount(self.tiers, sum(consumption, Decimal(0)))
        return each, surcharge, cents(sum(each, Decimal(0)) + surcharge + self.fixed_charge)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "tou",
            "periods": [
                {
                    "name": p.name,
                    "price": text(p.price),
                    "windows": [w.to_json() for w in p.windows],
                }
                for p in self.periods
            ],
            "tiers": Tariff(self.tiers).to_json()["tiers"] if self.tiers else [],
            "fixed_charge": text(self.fixed_charge),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TouTariff:
        """The inverse of ``to_json``; ``tiers`` and ``fixed_charge`` may be omitted."""
        raw_periods = data.get("periods")
        if not isinstance(raw_periods, list) or not raw_periods:
            raise InvalidInput.field("periods", "must be a non-empty list")
        if len(raw_periods) > MAX_PERIODS:
            raise InvalidInput.field("periods", f"at most {MAX_PERIODS} periods")
        errors: dict[str, str] = {}
        periods = [_parse_period(raw, f"periods[{i}]", errors) for i, raw in enumerate(raw_periods)]
        raw_tiers = data.get("tiers") or []
        if not isinstance(raw_tiers, list):
            errors["tiers"] = "must be a list"
            raw_tiers = []
        tiers = [parse_tier(raw, f"tiers[{i}]", errors) for i, raw in enumerate(raw_tiers)]
        fixed = parse_decimal(data.get("fixed_charge", "0"), "fixed_charge", errors)
        if errors:
            raise InvalidInput(errors)
        return cls(tuple(periods), tuple(tiers), fixed)


AnyTariff = Tariff | TouTariff


def parse_tariff(data: object) -> AnyTariff:
    """A tariff from its JSON: ``kind`` ``"tou"``, else tiers (``"tiered"`` or no kind)."""
    if not isinstance(data, Mapping):
        raise InvalidInput.field("tariff", "must be an object")
    kind = data.get("kind", "tiered")
    if kind == "tou":
        return TouTariff.from_json(data)
    if kind != "tiered":
        raise InvalidInput.field("kind", 'must be "tiered" or "tou"')
    return Tariff.from_json({k: v for k, v in data.items() if k != "kind"})


def local_instant(day: date, minute: int, zone: tzinfo) -> int:
    """µs of wall-clock ``minute`` of ``day`` in ``zone``: the first occurrence of an
    ambiguous time, the instant the clock jumps for one in a gap."""
    wall = datetime.combine(day, time(minute // 60, minute % 60))
    first = to_us(wall.replace(tzinfo=zone, fold=0), zone)
    if from_us(first, zone).replace(tzinfo=None) == wall:
        return first
    other = to_us(wall.replace(tzinfo=zone, fold=1), zone)
    low, high = sorted((first, other))  # the jump lies between the two readings of the gap
    while high - low > 1_000_000:
        middle = (low + high) // 2_000_000 * 1_000_000
        if from_us(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high


def _period_errors(periods: Sequence[Period]) -> dict[str, str]:
    errors: dict[str, str] = {}
    seen: set[str] = set()
    for i, period in enumerate(periods):
        if not period.name.strip():
            errors[f"periods[{i}].name"] = "must not be empty"
        elif period.name in seen:
            errors[f"periods[{i}].name"] = f"{period.name!r} is named twice"
        seen.add(period.name)
        if not is_non_negative(period.price):
            errors[f"periods[{i}].price"] = "must be a finite decimal >= 0"
        if not period.windows:
            errors[f"periods[{i}].windows"] = "must be a non-empty list"
    return errors


def _week(periods: Sequence[Period], errors: dict[str, str]) -> list[int]:
    """The period of each minute of the week; an overlap or a gap is recorded in ``errors``."""
    week = [-1] * WEEK_MINUTES
    owner: list[str] = [""] * WEEK_MINUTES
    for i, period in enumerate(periods):
        for j, window in enumerate(period.windows):
            name = f"periods[{i}].windows[{j}]"
            for minute in window.minutes_of_week():
                if week[minute] >= 0:
                    errors.setdefault(name, f"overlaps {owner[minute]} at {_when(minute)}")
                    continue
                week[minute], owner[minute] = i, name
    if -1 in week:
        errors.setdefault("periods", f"no period covers {_when(week.index(-1))}")
    return week


def _when(minute: int) -> str:
    return f"{WEEKDAY_NAMES[minute // DAY_MINUTES]} {_clock(minute % DAY_MINUTES)}"


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _parse_period(raw: object, name: str, errors: dict[str, str]) -> Period:
    if not isinstance(raw, Mapping):
        errors[name] = "must be an object"
        return Period("", Decimal(0), ())
    label = raw.get("name")
    if not isinstance(label, str) or not 1 <= len(label) <= 32:
        errors[f"{name}.name"] = "must be a string of 1 to 32 characters"
        label = ""
    price = parse_decimal(raw.get("price"), f"{name}.price", errors)
    raw_windows = raw.get("windows")
    if not isinstance(raw_windows, list) or not raw_windows:
        errors[f"{name}.windows"] = "must be a non-empty list"
        raw_windows = []
    windows = [_parse_window(w, f"{name}.windows[{j}]", errors) for j, w in enumerate(raw_windows)]
    return Period(label, price, tuple(windows))


def _parse_window(raw: object, name: str, errors: dict[str, str]) -> Window:
    if not isinstance(raw, Mapping):
        errors[name] = "must be an object"
        return Window((), 0, DAY_MINUTES)
    days = _parse_days(raw.get("days", "all"), f"{name}.days", errors)
    start = _parse_clock(raw.get("from"), f"{name}.from", errors, last=False)
    end = _parse_clock(raw.get("to"), f"{name}.to", errors, last=True)
    return Window(days, start, end)


def _parse_days(raw: object, name: str, errors: dict[str, str]) -> tuple[int, ...]:
    if isinstance(raw, str) and raw in DAY_SETS:
        return DAY_SETS[raw]
    if (
        isinstance(raw, list)
        and raw
        and all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7 for d in raw)
        and len(set(raw)) == len(raw)
    ):
        return tuple(sorted(raw))
    errors[name] = 'must be "all", "weekdays", "weekends" or a list of ISO weekdays 1-7'
    return ()


def _parse_clock(raw: object, name: str, errors: dict[str, str], *, last: bool) -> int:
    """Minutes of ``HH:MM`` (``24:00`` only as an end)."""
    if isinstance(raw, str) and len(raw) == 5 and raw[2] == ":" and raw.replace(":", "").isdigit():
        hours, minutes = int(raw[:2]), int(raw[3:])
        if (hours < 24 and minutes < 60) or (last and raw == "24:00"):
            return hours * 60 + minutes
    errors[name] = "must be a time HH:MM" + (" (00:00 to 24:00)" if last else " (00:00 to 23:59)")
    return 0
