"""Register values at the ends of a bill's period and the consumption between them."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from meterhub.billing.consumption import (
    NO_READINGS,
    REGISTER_DECREASED_UNEXPLAINED,
    REGISTER_RESET,
    RegisterEnd,
    register_milli,
    register_value,
    registers,
    usage,
)
from meterhub.storage.points import Point, Quality
from meterhub.storage.sides import Sides

T0 = 1_700_000_000_000_000


def reading(ts: int, value: float, quality: int = Quality.GOOD) -> Point:
    return Point(7, ts, value, quality)


def register_at(before: Point | None, after: Point | None, ts: int) -> RegisterEnd | None:
    """The register at ``ts`` from its neighbours: ``registers`` of one instant."""
    found = registers(Sides.of([(before, after)]), np.array([ts]), across_drops=True)
    return None if found.held[0] == NO_READINGS else found.end(0)


def end(value: str, estimated: bool = False) -> RegisterEnd:
    return RegisterEnd(Decimal(value), estimated)


@pytest.mark.parametrize(
    ("before", "after", "ts", "expected"),
    [
        (reading(T0, 100.0), reading(T0 + 10, 110.0), T0, end("100.000")),
        (reading(T0, 100.0), reading(T0 + 10, 110.0), T0 + 10, end("110.000")),
        (reading(T0, 100.0), reading(T0 + 10, 110.0), T0 + 5, end("105.000")),
        (reading(T0, 100.0), reading(T0 + 4, 104.0), T0 + 1, end("101.000")),
        (reading(T0, 0.0), reading(T0 + 3, 1.0), T0 + 1, end("0.333")),
        (reading(T0, 0.0), reading(T0 + 3, 2.0), T0 + 1, end("0.667")),
        (reading(T0, 100.0), None, T0 + 99, end("100.000", estimated=True)),
        (None, reading(T0, 100.0), T0 - 99, end("100.000", estimated=True)),
        (None, reading(T0, 100.0), T0, end("100.000")),
        (None, None, T0, None),
    ],
)
def test_register_at(
    before: Point | None, after: Point | None, ts: int, expected: RegisterEnd | None
) -> None:
    assert register_at(before, after, ts) == expected


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (T0, end("9999.000")),
        (T0 + 5, end("9999.000", estimated=True)),  # not 5000: the drop is not interpolated
        (T0 + 10, end("1.000")),
    ],
)
def test_register_at_holds_the_value_before_a_drop(ts: int, expected: RegisterEnd) -> None:
    drop = reading(T0 + 10, 1.0, Quality.REGISTER_DECREASED)
    assert register_at(reading(T0, 9999.0), drop, ts) == expected


def test_register_at_only_a_drop_after_is_extrapolated() -> None:
    drop = reading(T0 + 10, 1.0, Quality.REGISTER_DECREASED)
    assert register_at(None, drop, T0) == end("1.000", estimated=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1 + 0.2, "0.300"),  # 0.30000000000000004
        (1.0005, "1.001"),  # Decimal(1.0005) is 1.000499999…, its repr is 1.0005
        (2.0004999, "2.000"),
        (123456789.9876, "123456789.988"),
        (-0.0005, "-0.001"),
        (42.0, "42.000"),
    ],
)
def test_register_value_is_exact(value: float, expected: str) -> None:
    result = register_value(value)
    assert result == Decimal(expected)
    assert str(result) == expected


def test_register_at_interpolation_does_not_leak_float_error() -> None:
    # 0.1 + (0.2 - 0.1) * 0.5 is 0.15000000000000002 in floats
    result = register_at(reading(T0, 0.1), reading(T0 + 2, 0.2), T0 + 1)
    assert result == end("0.150")
    assert result is not None
    assert str(usage(end("0.000"), result).consumption) == "0.150"


@pytest.mark.parametrize(
    ("start", "stop", "resets", "consumption", "rule"),
    [
        ("100.000", "112.345", [], "12.345", None),
        ("100.000", "100.000", [], "0.000", None),
        ("0.1", "0.3", [], "0.2", None),
        ("100.000", "90.000", [], "0", REGISTER_DECREASED_UNEXPLAINED),
        ("9990", "12.3", [("9999.5", "0.7")], "21.1", REGISTER_RESET),  # 9.5 + 11.6
        # rollover then a meter exchange: 9.5 + 499.5 + 42.5
        ("9990", "42.5", [("9999.5", "0.7"), ("500.2", "0")], "551.5", REGISTER_RESET),
        ("10", "30", [("20", "5")], "35", REGISTER_RESET),  # 10 + 25, ends above the start
        ("9990", "3", [("9980", "0.5")], "2.5", REGISTER_RESET),  # first segment clamps at 0
        ("9990", "0.2", [("9999.5", "0.7")], "9.5", REGISTER_RESET),  # last segment clamps
        ("5", "5", [("5", "5")], "0", REGISTER_RESET),
    ],
)
def test_usage(
    start: str, stop: str, resets: list[tuple[str, str]], consumption: str, rule: str | None
) -> None:
    first, last = end(start), end(stop, estimated=True)
    result = usage(first, last, [(Decimal(b), Decimal(a)) for b, a in resets])
    assert result.consumption == Decimal(consumption)
    assert result.rule == rule
    assert result.start is first
    assert result.end is last


@pytest.mark.parametrize("start", ["0", "5", "9999.999"])
@pytest.mark.parametrize("stop", ["0", "4.999", "10000"])
@pytest.mark.parametrize(
    "resets", [[], [("3", "7")], [("1", "9999"), ("0", "2")], [("9999.999", "0")]]
)
def test_usage_is_never_negative(start: str, stop: str, resets: list[tuple[str, str]]) -> None:
    result = usage(end(start), end(stop), [(Decimal(b), Decimal(a)) for b, a in resets])
    assert result.consumption >= 0


def test_register_milli_is_register_value_in_thousandths() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            rng.uniform(0, 100_000, 20_000),
            np.round(rng.uniform(0, 100_000, 20_000), 4),  # half-thousandths and near them
            np.round(rng.uniform(0, 1_000, 5_000), 3) + 0.0005,
            [0.0, -0.0, -0.0005, -12.3456, 1.0005, 2.0004999, 0.1 + 0.2, 123456789.9876, 5e14],
        ]
    )
    expected = [int(register_value(v).scaleb(3)) for v in values.tolist()]
    assert register_milli(values).tolist() == expected
