"""Time-of-use tariffs: parsing and validation, wall-clock boundaries across DST, pricing."""

from __future__ import annotations

import gc
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from meterhub.billing.consumption import registers
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tou import PEAK_VALLEY, Stretch, TouTariff, local_instant, parse_tariff
from meterhub.billing.tou_items import Plan, TouBill, tou_bills
from meterhub.errors import InvalidInput
from meterhub.storage import Point
from meterhub.storage.sides import Sides

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3_600_000_000


def peak_valley(**extra: Any) -> dict[str, Any]:
    """Peak 08:00-22:00 on weekdays at 0.80; valley the rest of the week at 0.40."""
    return {
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
                    {"days": "weekends", "from": "08:00", "to": "22:00"},
                    {"days": [6, 7], "from": "22:00", "to": "08:00"},
                ],
            },
        ],
        **extra,
    }


def all_days() -> TouTariff:
    """Peak 08:00-22:00 every day, valley 22:00-08:00."""
    data = peak_valley()
    data["periods"][0]["windows"] = [{"days": "all", "from": "08:00", "to": "22:00"}]
    data["periods"][1]["windows"] = [{"days": "all", "from": "22:00", "to": "08:00"}]
    return TouTariff.from_json(data)


def us(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


def test_json_round_trip_and_kinds() -> None:
    tariff = parse_tariff(peak_valley(fixed_charge="5.00"))
    assert isinstance(tariff, TouTariff)
    again = parse_tariff(tariff.to_json())
    assert again == tariff
    assert tariff.to_json()["periods"][1]["windows"][2]["days"] == "weekends"
    old = {"tiers": [{"up_to": None, "price": "0.5"}], "fixed_charge": "1"}
    assert parse_tariff(old) == Tariff.flat(Decimal("0.5"), Decimal(1))
    assert parse_tariff({**old, "kind": "tiered"}) == parse_tariff(old)


def _without(data: dict[str, Any], period: int, window: int) -> dict[str, Any]:
    del data["periods"][period]["windows"][window]
    return data


def _set(data: dict[str, Any], path: tuple[Any, ...], value: object) -> dict[str, Any]:
    place: Any = data
    for key in path[:-1]:
        place = place[key]
    place[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            _set(peak_valley(), ("periods", 1, "windows", 0, "from"), "25:00"),
            "periods[1].windows[0].from",
        ),
        (
            _set(peak_valley(), ("periods", 0, "windows", 0, "to"), "8am"),
            "periods[0].windows[0].to",
        ),
        (
            _set(peak_valley(), ("periods", 1, "windows", 2, "days"), [0, 6]),
            "periods[1].windows[2].days",
        ),
        (
            _set(peak_valley(), ("periods", 1, "windows", 2, "days"), "weekend"),
            "periods[1].windows[2].days",
        ),
        (_set(peak_valley(), ("periods", 1, "name"), "peak"), "periods[1].name"),
        (_set(peak_valley(), ("periods", 0, "price"), "-0.1"), "periods[0].price"),
        (_set(peak_valley(), ("periods", 0, "price"), 0.8), "periods[0].price"),
        (_set(peak_valley(), ("periods", 0, "windows"), []), "periods[0].windows"),
        (
            _set(peak_valley(), ("periods", 1, "windows", 1, "from"), "07:00"),
            "periods[1].windows[1]",
        ),
        (_without(peak_valley(), 1, 2), "periods"),
        (_set(peak_valley(), ("periods",), []), "periods"),
        (peak_valley(tiers=[{"up_to": "10", "price": "0"}]), "tiers[0].up_to"),
        (peak_valley(fixed_charge="x"), "fixed_charge"),
        (peak_valley(kind="peak"), "kind"),
    ],
)
def test_bad_definitions_name_their_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_tariff(data)
    assert field in caught.value.errors


def test_an_overlap_and_a_gap_say_where() -> None:
    overlap = _set(peak_valley(), ("periods", 1, "windows", 1, "from"), "07:00")
    with pytest.raises(InvalidInput) as caught:
        parse_tariff(overlap)
    assert caught.value.errors["periods[1].windows[1]"] == [
        "overlaps periods[1].windows[0] at Saturday 07:00"
    ]
    with pytest.raises(InvalidInput) as caught:
        parse_tariff(_without(peak_valley(), 1, 2))
    assert caught.value.errors == {"periods": ["no period covers Monday 00:00"]}


def test_one_period_all_week_and_24_00() -> None:
    window = {"from": "00:00", "to": "24:00"}
    data = {"kind": "tou", "periods": [{"name": "all", "price": "1", "windows": [window]}]}
    tariff = TouTariff.from_json(data)
    assert tariff.changes == ()
    assert [(s.start, s.end, s.period) for s in tariff.stretches(0, HOUR, BERLIN)] == [(0, HOUR, 0)]
    assert tariff.to_json()["periods"][0]["windows"] == [{"days": "all", **window}]


def _hours(tariff: TouTariff, start: str, end: str) -> list[tuple[str, float]]:
    return [
        (tariff.periods[s.period].name, (s.end - s.start) / HOUR)
        for s in tariff.stretches(us(start), us(end), BERLIN)
    ]


def test_stretches_of_a_week_end() -> None:
    tariff = TouTariff.from_json(peak_valley())
    # Friday 2026-03-06 12:00 to Monday 09:30 (CET): peak to 22:00, valley the whole weekend
    # (Friday's 22:00-08:00 runs into Saturday's windows), peak from Monday 08:00.
    found = _hours(tariff, "2026-03-06T12:00:00+01:00", "2026-03-09T09:30:00+01:00")
    assert found == [("peak", 10), ("valley", 58), ("peak", 1.5)]


def test_spring_forward_day_has_a_nine_hour_night() -> None:
    # Berlin, Sunday 29 March 2026: 02:00 CET jumps to 03:00 CEST (a 23-hour day).
    found = _hours(all_days(), "2026-03-28T22:00:00+01:00", "2026-03-29T22:00:00+02:00")
    assert found == [("valley", 9), ("peak", 14)]


def test_fall_back_day_has_an_eleven_hour_night() -> None:
    # Berlin, Sunday 25 October 2026: 03:00 CEST falls back to 02:00 CET (a 25-hour day).
    found = _hours(all_days(), "2026-10-24T22:00:00+02:00", "2026-10-25T22:00:00+01:00")
    assert found == [("valley", 11), ("peak", 14)]


def test_wall_times_in_a_gap_or_an_overlap() -> None:
    assert local_instant(date(2026, 3, 29), 2 * 60 + 30, BERLIN) == us("2026-03-29T03:00:00+02:00")
    assert local_instant(date(2026, 10, 25), 2 * 60 + 30, BERLIN) == us("2026-10-25T02:30:00+02:00")
    assert local_instant(date(2026, 10, 26), 2 * 60 + 30, BERLIN) == us("2026-10-26T02:30:00+01:00")


def test_a_boundary_in_the_gap_starts_when_the_clock_jumps() -> None:
    data = peak_valley()
    data["periods"][0]["windows"] = [{"days": "all", "from": "02:30", "to": "22:00"}]
    data["periods"][1]["windows"] = [{"days": "all", "from": "22:00", "to": "02:30"}]
    tariff = TouTariff.from_json(data)
    found = _hours(tariff, "2026-03-29T00:00:00+01:00", "2026-03-29T12:00:00+02:00")
    assert found == [("valley", 2), ("peak", 9)]  # 00:00-02:00 CET, then 03:00-12:00 CEST


def test_amounts_add_period_prices_tier_surcharges_and_fixed_charge_rounded_once() -> None:
    tiers = [{"up_to": "200", "price": "0"}, {"up_to": None, "price": "0.05"}]
    tariff = TouTariff.from_json(peak_valley(tiers=tiers, fixed_charge="5.00"))
    each, surcharge, charge = tariff.amounts([Decimal("150.125"), Decimal("100.004")])
    # 150.125 * 0.80 = 120.1; 100.004 * 0.40 = 40.0016; 50.129 above 200 * 0.05 = 2.50645
    assert each == [Decimal("120.10000"), Decimal("40.00160")]
    assert surcharge == Decimal("2.50645")
    assert charge == Decimal("167.61")  # 167.60805 + 5 -> half-up once


def held_from_the_next() -> list[TouBill]:
    """A valley-then-peak bill (UTC hours 0-10-20) whose first boundary precedes its first
    reading, priced."""
    stretches = [Stretch(0, 10 * HOUR, 1), Stretch(10 * HOUR, 20 * HOUR, 0)]
    sides = Sides.of(
        [
            (None, Point(1, 5 * HOUR, 105.0)),
            (Point(1, 5 * HOUR, 105.0), Point(1, 15 * HOUR, 115.0)),
            (Point(1, 15 * HOUR, 115.0), Point(1, 25 * HOUR, 125.0)),
        ]
    )
    ends = registers(sides, np.array([0, 10 * HOUR, 20 * HOUR]), across_drops=True)
    return tou_bills(all_days(), Plan(stretches), ends, sides, [0], [[]], ZoneInfo("UTC"))


def test_a_boundary_before_the_first_reading_is_held_from_the_next() -> None:
    ((start, end, _, charge, _, estimated, items),) = held_from_the_next()
    # valley 105 (held) -> 110 = 5 * 0.40; peak 110 -> 120 = 10 * 0.80
    assert [(i[1], i[4], i[5], i[6], i[7]) for i in items] == [
        ("peak", Decimal("10.000"), "0.80", Decimal("8.00"), False),
        ("valley", Decimal("5.000"), "0.40", Decimal("2.00"), True),
    ]
    assert items[1][8] == (
        "no reading before 1970-01-01T00:00:00+00:00: held from the next, at "
        "1970-01-01T05:00:00+00:00"
    )
    assert (start, end, charge, estimated) == (
        Decimal("105.000"),
        Decimal("120.000"),
        Decimal("10.00"),
        True,
    )


def test_priced_bills_are_left_untracked_by_the_garbage_collector() -> None:
    """A run holds a batch's priced bills and items until it writes them: the collector
    stops tracking them, so its full collections do not walk them all. A pass untracks a tuple
    whose contents are untracked when it meets it, which may be before its contents: a bill
    is three tuples deep."""
    bills = held_from_the_next()
    for _ in range(3):
        gc.collect()
    held = [part for bill in bills for part in (bill, bill[6], *bill[6])]
    assert not [part for part in held if gc.is_tracked(part)]


def test_the_example_tariff_is_valid_and_round_trips() -> None:
    """``PEAK_VALLEY``, the API's example and the bench's tariff: 44 boundaries in October."""
    tariff = TouTariff.from_json(PEAK_VALLEY)
    assert tariff.to_json() == PEAK_VALLEY
    october = (us("2026-10-01T00:00:00+02:00"), us("2026-11-01T00:00:00+01:00"))
    assert len(tariff.stretches(*october, BERLIN)) == 45
