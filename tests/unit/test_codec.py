"""The chunk codec: floats bit for bit, and columns decoded end to end."""

from __future__ import annotations

import numpy as np
import pytest

from meterhub.storage.codec import pack, unpack_each_into, unpack_floats, unpack_floats_joined


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


def test_blobs_are_decoded_each_at_its_place_and_a_longer_one_is_refused() -> None:
    into = np.full(10, -1, np.int64)  # places [0, 4), [4, 5), [5, 9), and a spare value
    blobs = [pack(np.arange(3, dtype=np.int64)), None, pack(np.arange(10, 14, dtype=np.int64))]
    assert unpack_each_into(blobs, into, [4, 5, 9]).tolist() == [3, 0, 4]
    assert into.tolist() == [0, 1, 2, -1, -1, 10, 11, 12, 13, -1]
    with pytest.raises(ValueError, match="does not hold"):
        unpack_each_into([pack(np.arange(5, dtype=np.int64))], into, [4])  # more than its place
