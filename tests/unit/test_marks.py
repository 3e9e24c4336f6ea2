"""Hour marks' values round-trip to the bit, kept as integers of the least decimal scale
that holds them all, or as floats where none does."""

from __future__ import annotations

import numpy as np
import pytest

from meterhub.storage import marks
from meterhub.times import DAY_US, HOUR_US

BLOCK = 672  # January 2026
START = marks.first_day(BLOCK) * DAY_US


@pytest.mark.parametrize(
    ("values", "scale"),
    [
        ([5202.466, 5202.67, 5203.0, 5203.001], 3),
        ([0.009, 0.013, 0.018, 0.026], 3),  # each m * 0.001 is not m / 1000 to the bit
        ([1.0, 2.0, 3.0, 1e15], 0),
        ([0.5, 0.25, 0.125, 0.0625], 4),
        ([0.1 + 0.2, 1.0, 2.0, 3.0], None),  # 0.30000000000000004
        ([-0.0, 1.5, 2.5, 3.5], None),  # a zero's sign is kept only as a float
        ([1e-7, 1.0, 2.0, 3.0], None),  # more places than a scale holds
        ([2.0**60, 1.0, 2.0, 3.0], None),  # no exact integer under 2**53
        ([1.0, float("inf"), 2.0, 3.0], None),
    ],
)
def test_values_round_trip_to_the_bit(values: list[float], scale: int | None) -> None:
    hours = np.array([0, 1, 5, 6], np.int64)  # an hour without marks between
    start = START + hours * HOUR_US
    first = np.array(values)
    kept = marks.Marks(start, np.zeros(4, np.int64), start + 7, start + 900, first, first + 1)
    stored = marks.encode(kept, BLOCK)
    assert stored.scale == scale
    again = marks.decode(BLOCK, stored)
    for column, back in zip(kept, again, strict=True):
        assert column.dtype == back.dtype
        assert np.array_equal(column.view(np.int64), back.view(np.int64))
