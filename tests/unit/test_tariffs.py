"""Tariffs: tiered pricing, rounding once, validation and the JSON form."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from meterhub.billing.tariffs import Tariff, Tier
from meterhub.errors import InvalidInput

# 0-10 at 2.50, 10-20 at 3.25, above 20 at 4.10
THREE_TIERS = Tariff.tiered(
    [(Decimal(10), Decimal("2.50")), (Decimal(20), Decimal("3.25")), (None, Decimal("4.10"))]
)


@pytest.mark.parametrize(
    ("tariff", "consumption", "expected"),
    [
        (Tariff.flat(Decimal("0.55")), Decimal(0), Decimal("0.00")),
        (Tariff.flat(Decimal("0.55")), Decimal("123.456"), Decimal("67.90")),  # 67.9008
        (Tariff.flat(Decimal("0.55"), Decimal("5.00")), Decimal(100), Decimal("60.00")),
        (Tariff.flat(Decimal(0), Decimal("7.5")), Decimal(42), Decimal("7.50")),
        (THREE_TIERS, Decimal(0), Decimal("0.00")),
        (THREE_TIERS, Decimal(10), Decimal("25.00")),
        (THREE_TIERS, Decimal("10.001"), Decimal("25.00")),  # 25 + 0.00325
        (THREE_TIERS, Decimal("10.002"), Decimal("25.01")),  # 25 + 0.0065
        (THREE_TIERS, Decimal(15), Decimal("41.25")),  # 25 + 16.25
        (THREE_TIERS, Decimal(20), Decimal("57.50")),  # 25 + 32.50
        (THREE_TIERS, Decimal("25.5"), Decimal("80.05")),  # 25 + 32.50 + 5.5 * 4.10
        (THREE_TIERS, Decimal(1000), Decimal("4075.50")),  # 25 + 32.50 + 980 * 4.10
        (Tariff(THREE_TIERS.tiers, Decimal("5.00")), Decimal("25.5"), Decimal("85.05")),
        (
            Tariff.tiered([(Decimal(5), Decimal(0)), (None, Decimal("1.20"))]),
            Decimal(7),
            Decimal("2.40"),
        ),  # 5 free units
    ],
)
def test_charge(tariff: Tariff, consumption: Decimal, expected: Decimal) -> None:
    amount = tariff.charge(consumption)
    assert amount == expected
    assert amount.as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("tariff", "consumption", "expected"),
    [
        # per tier 0.005 -> 0.01 twice = 0.02; once: 0.010 -> 0.01
        (
            Tariff.tiered([(Decimal(1), Decimal("0.005")), (None, Decimal("0.005"))]),
            Decimal(2),
            Decimal("0.01"),
        ),
        # per tier 0.004 -> 0.00 and fixed 0.001 -> 0.00; once: 0.005 -> 0.01
        (Tariff.flat(Decimal("0.004"), Decimal("0.001")), Decimal(1), Decimal("0.01")),
        (
            Tariff.flat(Decimal("0.125")),
            Decimal(1),
            Decimal("0.13"),
        ),  # half-up, not half-even (0.12)
        (Tariff.flat(Decimal("0.333")), Decimal(3), Decimal("1.00")),  # 0.999
        (Tariff.flat(Decimal("2.50")), Decimal("0.001"), Decimal("0.00")),  # 0.0025
        (Tariff.flat(Decimal("2.50")), Decimal("0.002"), Decimal("0.01")),  # 0.005
    ],
)
def test_charge_rounds_half_up_once(
    tariff: Tariff, consumption: Decimal, expected: Decimal
) -> None:
    assert tariff.charge(consumption) == expected


@pytest.mark.parametrize(
    "consumption", [Decimal("-0.001"), Decimal(-5), Decimal("NaN"), Decimal("Infinity")]
)
def test_charge_refuses_negative_or_non_finite(consumption: Decimal) -> None:
    with pytest.raises(ValueError, match="consumption"):
        THREE_TIERS.charge(consumption)


@pytest.mark.parametrize(
    ("tiers", "fixed", "fields"),
    [
        ([], Decimal(0), {"tiers"}),
        (
            [(Decimal(10), Decimal(1)), (Decimal(10), Decimal(2)), (None, Decimal(3))],
            Decimal(0),
            {"tiers[1].up_to"},
        ),
        (
            [(Decimal(10), Decimal(1)), (Decimal(5), Decimal(2)), (None, Decimal(3))],
            Decimal(0),
            {"tiers[1].up_to"},
        ),
        ([(Decimal(0), Decimal(1)), (None, Decimal(2))], Decimal(0), {"tiers[0].up_to"}),
        ([(Decimal(-1), Decimal(1)), (None, Decimal(2))], Decimal(0), {"tiers[0].up_to"}),
        ([(Decimal("NaN"), Decimal(1)), (None, Decimal(2))], Decimal(0), {"tiers[0].up_to"}),
        ([(None, Decimal(1)), (None, Decimal(2))], Decimal(0), {"tiers[0].up_to"}),
        ([(Decimal(10), Decimal(1))], Decimal(0), {"tiers[0].up_to"}),
        ([(Decimal(10), Decimal(1)), (Decimal(20), Decimal(2))], Decimal(0), {"tiers[1].up_to"}),
        ([(None, Decimal("-0.01"))], Decimal(0), {"tiers[0].price"}),
        ([(None, Decimal("sNaN"))], Decimal(0), {"tiers[0].price"}),
        ([(None, Decimal(1))], Decimal("-1"), {"fixed_charge"}),
        ([(None, Decimal(1))], Decimal("Infinity"), {"fixed_charge"}),
        (
            [(Decimal(10), Decimal(-1)), (Decimal(5), Decimal(1)), (None, Decimal(2))],
            Decimal(-1),
            {"tiers[0].price", "tiers[1].up_to", "fixed_charge"},
        ),
    ],
)
def test_invalid_tariff_names_fields(
    tiers: list[tuple[Decimal | None, Decimal]], fixed: Decimal, fields: set[str]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        Tariff.tiered(tiers, fixed)
    assert set(caught.value.errors) == fields


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(InvalidInput) as caught:
        Tariff((Tier(Decimal(10), Decimal(1)),))
    assert set(caught.value.errors) == {"tiers[0].up_to"}
    with pytest.raises(InvalidInput) as caught:
        Tariff.flat(Decimal(-1))
    assert set(caught.value.errors) == {"tiers[0].price"}


def test_to_json() -> None:
    tariff = Tariff(THREE_TIERS.tiers, Decimal("5.00"))
    assert tariff.to_json() == {
        "tiers": [
            {"up_to": "10", "price": "2.50"},
            {"up_to": "20", "price": "3.25"},
            {"up_to": None, "price": "4.10"},
        ],
        "fixed_charge": "5.00",
    }
    assert Tariff.flat(Decimal("1E+1"), Decimal("2E-3")).to_json()["tiers"][0]["price"] == "10"
    assert Tariff.flat(Decimal("1E+1"), Decimal("2E-3")).to_json()["fixed_charge"] == "0.002"


@pytest.mark.parametrize(
    "tariff",
    [
        Tariff.flat(Decimal("0.55")),
        Tariff.flat(Decimal("0.1234567"), Decimal("12.5")),
        Tariff(THREE_TIERS.tiers, Decimal("5.00")),
    ],
)
def test_json_round_trip(tariff: Tariff) -> None:
    again = Tariff.from_json(json.loads(json.dumps(tariff.to_json())))
    assert again == tariff
    assert again.to_json() == tariff.to_json()


def test_from_json_fixed_charge_defaults_to_zero() -> None:
    tariff = Tariff.from_json({"tiers": [{"up_to": None, "price": "0.55"}]})
    assert tariff == Tariff.flat(Decimal("0.55"))


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        ([], {"tariff"}),
        ({}, {"tiers"}),
        ({"tiers": []}, {"tiers"}),
        ({"tiers": "flat"}, {"tiers"}),
        ({"tiers": ["x"]}, {"tiers[0]"}),
        ({"tiers": [{"up_to": None}]}, {"tiers[0].price"}),
        ({"tiers": [{"up_to": None, "price": 0.55}]}, {"tiers[0].price"}),  # float: not exact
        ({"tiers": [{"up_to": None, "price": "cheap"}]}, {"tiers[0].price"}),
        ({"tiers": [{"up_to": 10, "price": "1"}, {"price": "2"}]}, {"tiers[0].up_to"}),
        ({"tiers": [{"up_to": None, "price": "1"}], "fixed_charge": "x"}, {"fixed_charge"}),
        ({"tiers": [{"up_to": None, "price": "1"}], "fixed_charge": None}, {"fixed_charge"}),
        ({"tiers": [{"up_to": "10", "price": "-1"}]}, {"tiers[0].up_to", "tiers[0].price"}),
        ({"tiers": [{"up_to": None, "price": "NaN"}]}, {"tiers[0].price"}),
    ],
)
def test_from_json_invalid_names_fields(data: Any, fields: set[str]) -> None:
    with pytest.raises(InvalidInput) as caught:
        Tariff.from_json(data)
    assert set(caught.value.errors) == fields
