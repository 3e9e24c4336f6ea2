"""The chunk codec: floats bit for bit, and columns decoded end to end."""

from __future__ import annotations

import numpy as np
import pytest

from meterhub.storage.codec import pack, unpack_floats, unpack_floats_joined, unpack_into


def test_floats_come_back_bit_for_bit() -> None:
    values = np.array([0.1, -0.0, 1e-300, 2.5e300, 5e-324, 1 / 3, -7.125])
    assert unpack_floats(pack(values)).tobytes() == values.tobytes()


def test_columns_decoded_end_to_end_are_each_column_in_turn() -> None:
    columns = [np.array([1.5, 2.25, 0.1]), np.array([7.0]), np.linspace(0, 1, 97)]
    joined = unpack_floats_joined([pack(c) for c in columns], [len(c) for c in columns])
    assert joined.tobytes() == np.concatenate(columns).tobytes()


@pytest.mark.parametrize("sizes", [[2, 1], [4, 1], [3, 2], [3, 0]])
def test_a_column_of_another_length_than_said_is_refused(sizes: list[int]) -> None:
    blobs = [pack(np.array([1.5, 2.25, 0.1])), pack(np.array([7.0]))]
    with pytest.raises(ValueError, match="does not hold"):
        unpack_floats_joined(blobs, sizes)


def test_a_blob_decoded_into_rows_says_how_many_and_refuses_part_rows() -> None:
    rows = np.arange(12, dtype=np.int64).reshape(4, 3)
    into = np.empty((6, 3), np.int64)  # room for more rows than the blob holds
    assert unpack_into(pack(rows.reshape(-1)), into) == 4
    assert np.array_equal(into[:4], rows)
    with pytest.raises(ValueError, match="does not hold"):
        unpack_into(pack(np.arange(10, dtype=np.int64)), into)  # 3 rows and a third
    with pytest.raises(ValueError, match="does not hold"):
        unpack_into(pack(np.arange(18, dtype=np.int64)), into)  # fills it: no spare row
